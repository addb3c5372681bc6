"""The optional image proxy (CURATION_IMAGE_PROXY) over real sockets: a fake image origin on 127.0.0.1, Fil
pointing every image of its pages, embeds, archive, items JSON, websocket and desk at signed /img/ URLs,
and serving only real raster images; and, in Chromium, a live page that asks nothing of any other origin."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from playwright.async_api import Browser, Request, Route
from websockets.asyncio.client import connect

from curation.config import Settings
from curation.models import Author, Card, Entry, ItemKind, Media
from curation.web.images import ImageProxy, sniff
from tests.browser_util import until_true
from tests.conftest import RunningFil, make_entry, recent, start_fil, start_tags
from tests.test_browser import WAIT_MS, browser  # noqa: F401 - fixture
from tests.upstreams import FakeUpstream

SLUG = "stage-1"
SECRET = "image-proxy-test-secret"
WAIT = 20.0
CAP = 64 * 1024
SOURCES = """\
events:
  - slug: stage-1
    title: Stage 1
    sources:
      - id: newsroom
        kind: push
        secret_env: IMAGES_SECRET
        role: editorial
"""


def png(width: int = 3, height: int = 2) -> bytes:
    """A real (tiny, red) PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png()
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\xff\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture
async def origin() -> AsyncIterator[FakeUpstream]:
    """The images' origin: real raster images, and what the proxy must refuse."""
    async with FakeUpstream() as server:
        server.add("/photo.png", PNG, content_type="image/png")
        server.add("/inline.png", PNG, content_type="image/png")
        server.add("/poster.png", PNG, content_type="image/png")
        server.add("/card.png", PNG, content_type="image/png")
        server.add("/avatar.gif", GIF, content_type="image/gif")
        server.add("/face.gif", GIF, content_type="image/gif")
        server.add("/logo.svg", SVG, content_type="image/svg+xml")
        server.add("/page.html", "<!doctype html><p>hello</p>", content_type="text/html; charset=utf-8")
        server.add("/lie.png", "<!doctype html><script>1</script>", content_type="image/png")
        server.add("/huge.png", PNG + b"\x00" * (CAP * 2), content_type="image/png")
        server.add("/slow.png", PNG, content_type="image/png", delay=0.3)
        yield server


async def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> RunningFil:
    monkeypatch.setenv("IMAGES_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(SOURCES)
    values: dict[str, object] = {"image_proxy": True, "image_max_bytes": CAP}
    values.update(settings)
    return await start_fil(tmp_path / "sources.yaml", tmp_path / "data", **values)


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await start(tmp_path, monkeypatch)
    yield running
    await running.stop()


def pictured(origin: FakeUpstream, key: str, *, minutes_ago: float = 1) -> Entry:
    """An entry with every kind of image a page shows: avatar, body image, image media, video poster, card."""
    made = make_entry(key, title=f"Pictured {key}", url=f"https://news.example/{key}", published=recent(minutes_ago))
    return Entry(
        key=made.key,
        kind=ItemKind.POST,
        url=made.url,
        title=made.title,
        text=None,
        html=f'<p>Look <img src="{origin.url("/inline.png")}?k={key}&amp;x=1" alt="a &gt; b"></p>',
        content_hash=made.content_hash,
        author=Author(name="Rider", avatar=origin.url("/avatar.gif")),
        media=(
            Media(type="image", url=origin.url("/photo.png"), alt="The finish"),
            Media(type="video", url="https://video.example/clip.mp4", thumbnail=origin.url("/poster.png")),
        ),
        published_at=made.published_at,
        card=Card(kind="link", url="https://news.example/more", title="More", image=origin.url("/card.png")),
    )


async def add(fil: RunningFil, *entries: Entry) -> None:
    event = fil.fil.config.event(SLUG)
    assert event is not None
    await fil.fil.store.ingest(event, fil.fil.config.sources["newsroom"], list(entries))


def proxy_of(fil: RunningFil) -> ImageProxy:
    proxy: ImageProxy = fil.server.config.app.state.images
    return proxy


async def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, await response.read()


def image_sources(html: str) -> list[str]:
    return [attrs["src"] for tag, attrs in start_tags(html) if tag == "img"]


ORIGINALS = {
    "/avatar.gif": GIF,
    "/photo.png": PNG,
    "/poster.png": PNG,
    "/card.png": PNG,
    "/inline.png": PNG,
}


async def test_every_image_of_page_embed_and_archive_loads_through_fil(fil: RunningFil, origin: FakeUpstream) -> None:
    await add(fil, pictured(origin, "one"))
    _, _, page = await get(f"{fil.base}/events/{SLUG}")
    html = page.decode()
    sources = image_sources(html)
    assert len(sources) == 5  # avatar, body image, image media, video poster, card image
    assert all(src.startswith("/img/") for src in sources), sources
    timeline = html.split('id="timeline"')[1].split("</section>")[0]
    assert origin.base_url not in timeline  # only inside the signed paths, percent-encoded
    assert 'data-img="proxy"' in html
    for src in sources:
        status, headers, body = await get(
            fil.base + src, Referer="https://reader.example/", Cookie="session=reader-secret"
        )
        assert status == 200, body
        path = next(p for p in ORIGINALS if quote(p, safe="") in src)
        assert body == ORIGINALS[path]
        assert headers["content-type"] == ("image/gif" if path.endswith(".gif") else "image/png")
        assert headers["cache-control"] == "public, max-age=86400, immutable"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"] == "default-src 'none'"
        assert "set-cookie" not in headers
    # nothing of the reader reaches the origin: no Referer, no cookie, Fil's own user agent
    for request in origin.requests:
        assert "referer" not in request.headers and "cookie" not in request.headers, request.headers
        assert request.headers["user-agent"].startswith("Fil/")
        assert request.headers["accept"].startswith("image/")

    # a browser that kept the image revalidates with its ETag
    status, headers, body = await get(fil.base + sources[0])
    assert (await get(fil.base + sources[0], **{"If-None-Match": headers["etag"]}))[0] == 304
    # asked again (by thousands of readers), the images come from memory
    hits = len(origin.requests)
    for src in sources:
        assert (await get(fil.base + src))[0] == 200
    assert len(origin.requests) == hits

    _, _, embed = await get(f"{fil.base}/embed/{SLUG}")
    assert sorted(image_sources(embed.decode())) == sorted(sources)
    assert 'data-img="proxy"' in embed.decode()

    # the archive file is read elsewhere: the same signed paths, on Fil's absolute URL
    _, _, archive = await get(f"{fil.base}/events/{SLUG}/archive.html")
    archived = image_sources(archive.decode())
    assert len(archived) == 5 and all(src.startswith(f"{fil.base}/img/") for src in archived), archived
    for src in archived:
        assert (await get(src))[0] == 200


async def test_item_json_keeps_the_originals_and_adds_signed_paths(fil: RunningFil, origin: FakeUpstream) -> None:
    await add(fil, pictured(origin, "one", minutes_ago=5))
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "hello"
        await add(fil, pictured(origin, "two"))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if message["type"] == "upsert":
                break
    live = message["item"]
    _, _, raw = await get(f"{fil.base}/api/events/{SLUG}/items")
    listed = json.loads(raw)["items"]
    headers = {"Authorization": f"Bearer {await fil.token()}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{fil.base}/api/events/{SLUG}/desk") as response:
            desk = (await response.json())["items"]
    for item in (live, *listed, *desk):
        # the contract's fields are the origin's URLs; `proxied` maps each to its signed path
        assert item["author"]["avatar"] == origin.url("/avatar.gif")
        assert item["media"][0]["url"] == origin.url("/photo.png")
        inline = origin.url("/inline.png") + f"?k={item['title'].split()[-1]}&x=1"
        assert set(item["proxied"]) == {
            origin.url("/avatar.gif"),
            origin.url("/photo.png"),
            origin.url("/poster.png"),
            origin.url("/card.png"),
            inline,
        }
        assert "https://video.example/clip.mp4" not in item["proxied"]  # a video is no image
        for original, path in item["proxied"].items():
            assert path.startswith("/img/") and path.endswith("?url=" + quote(original, safe=""))
    status, headers_, body = await get(fil.base + live["proxied"][origin.url("/avatar.gif")])
    assert (status, body) == (200, GIF)


async def test_only_real_raster_images_are_served(fil: RunningFil, origin: FakeUpstream) -> None:
    proxy = proxy_of(fil)
    cases = {
        "/logo.svg": (502, "SVG is refused"),
        "/page.html": (502, "not an image (text/html)"),
        "/lie.png": (502, "not a PNG, JPEG, GIF, WebP or AVIF image"),
        "/huge.png": (502, f"larger than {CAP} bytes"),
        "/missing.png": (404, "upstream failed"),
    }
    for path, (status, words) in cases.items():
        got, headers, body = await get(fil.base + proxy.path(origin.url(path)))
        assert got == status, (path, body)
        text = body.decode()
        assert words in text and origin.url(path) in text, text  # says what is wrong, and with which URL
        assert headers["x-content-type-options"] == "nosniff"
        assert not headers["content-type"].startswith("image/")


async def test_fil_is_no_open_proxy(fil: RunningFil, origin: FakeUpstream) -> None:
    proxy = proxy_of(fil)
    wanted = origin.url("/photo.png")
    good = proxy.path(wanted)
    signature = good.split("/")[2].split("?")[0]
    forged = "A" * len(signature)
    for path in (
        f"/img/{forged}?url={quote(wanted, safe='')}",  # a made-up signature
        f"/img/{signature}?url={quote(origin.url('/card.png'), safe='')}",  # another URL under a real signature
        f"/img/{signature}",  # no URL at all
        f"/img/{signature}x?url={quote(wanted, safe='')}",
    ):
        status, headers, body = await get(fil.base + path)
        assert status == 403, (path, body)
        assert b"bad signature" in body
        assert headers["cache-control"] == "no-store"
    assert origin.requests == []
    # a signature made under another server's key is worthless here
    other = ImageProxy(SimpleNamespace(settings=Settings(image_proxy=True), auth=SimpleNamespace(key=b"k" * 32)))  # type: ignore[arg-type]
    assert (await get(fil.base + other.path(wanted)))[0] == 403
    assert (await get(fil.base + good))[0] == 200


async def test_one_upstream_fetch_however_many_readers_ask_at_once(fil: RunningFil, origin: FakeUpstream) -> None:
    url = fil.base + proxy_of(fil).path(origin.url("/slow.png"))
    async with aiohttp.ClientSession() as session:

        async def one() -> tuple[int, bytes]:
            async with session.get(url) as response:
                return response.status, await response.read()

        answers = await asyncio.gather(*(one() for _ in range(20)))
    assert answers == [(200, PNG)] * 20
    assert origin.hits("/slow.png") == 1


async def test_a_private_address_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: FakeUpstream
) -> None:
    running = await start(tmp_path, monkeypatch, allow_private_hosts=False)
    try:
        await add(running, pictured(origin, "one"))
        _, _, page = await get(f"{running.base}/events/{SLUG}")
        avatar = next(src for src in image_sources(page.decode()) if "avatar.gif" in src)
        status, _, body = await get(running.base + avatar)
        assert status == 403
        assert b"refused" in body and b"loopback" in body and origin.url("/avatar.gif").encode() in body
        assert origin.requests == []
    finally:
        await running.stop()


async def test_with_the_proxy_off_pages_keep_the_original_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: FakeUpstream
) -> None:
    running = await start(tmp_path, monkeypatch, image_proxy=False)
    try:
        await add(running, pictured(origin, "one"))
        _, _, page = await get(f"{running.base}/events/{SLUG}")
        sources = image_sources(page.decode())
        assert len(sources) == 5 and all(src.startswith(origin.base_url) for src in sources), sources
        assert 'data-img="proxy"' not in page.decode()
        _, _, raw = await get(f"{running.base}/api/events/{SLUG}/items")
        assert "proxied" not in json.loads(raw)["items"][0]
        signed = ImageProxy(running.fil)
        signed.enabled = True
        status, _, body = await get(running.base + signed.path(origin.url("/photo.png")))
        assert status == 404 and b"off" in body
        assert origin.requests == []
    finally:
        await running.stop()


def test_sniffing_knows_the_raster_formats_only() -> None:
    assert sniff(PNG) == "image/png"
    assert sniff(GIF) == "image/gif"
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00") == "image/jpeg"
    assert sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf") == "image/avif"
    assert sniff(b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf") == "image/avif"
    assert sniff(b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41") is None  # an MP4 video
    assert sniff(SVG) is None
    assert sniff(b"<!doctype html>") is None
    assert sniff(b"") is None


def test_html_images_are_rewritten_by_a_parser_not_a_pattern() -> None:
    stub: Any = SimpleNamespace(settings=Settings(image_proxy=True), auth=SimpleNamespace(key=b"k" * 32))
    proxy = ImageProxy(stub)
    fragment = (
        '<p><a href="https://x.example/" title="&lt;img src=&quot;https://evil.example/a.png&quot;&gt;">'
        'l</a><img alt="a &gt; b" src="https://img.example/a.png?x=1&amp;y=2" class="emoji"></p>'
    )
    rewritten = proxy.html(fragment)
    assert rewritten is not None
    (img,) = [attrs for tag, attrs in start_tags(rewritten) if tag == "img"]
    assert img["src"] == proxy.path("https://img.example/a.png?x=1&y=2")
    assert img["alt"] == "a > b" and img["class"] == "emoji"
    # text that only looks like an image, inside an attribute, is left as it was
    (link,) = [attrs for tag, attrs in start_tags(rewritten) if tag == "a"]
    assert link["title"] == '<img src="https://evil.example/a.png">'
    assert proxy.item_json({"html": fragment})["proxied"] == {
        "https://img.example/a.png?x=1&y=2": proxy.path("https://img.example/a.png?x=1&y=2")
    }


@pytest.mark.browser
async def test_a_live_page_asks_nothing_of_other_origins(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
    origin: FakeUpstream,
) -> None:
    await add(fil, pictured(origin, "old", minutes_ago=10))
    context = await browser.new_context(viewport={"width": 1280, "height": 4000})
    elsewhere: list[str] = []
    seen: list[str] = []

    async def record(route: Route, request: Request) -> None:
        seen.append(request.url)
        if request.url.startswith(fil.base + "/"):
            await route.continue_()
        else:
            elsewhere.append(request.url)
            await route.abort()

    await context.route("**/*", record)
    page = await context.new_page()
    await page.goto(f"{fil.base}/events/{SLUG}")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    await add(fil, pictured(origin, "new"))
    await until_true(page, "document.querySelectorAll('#timeline article').length === 2")
    # every image, the server-rendered ones and those live.js built from the websocket, is drawn
    await until_true(
        page, "Array.from(document.querySelectorAll('#timeline img')).every(i => i.complete && i.naturalWidth > 0)"
    )
    sources: list[str] = await page.eval_on_selector_all("#timeline img", "els => els.map(e => e.src)")
    assert len(sources) == 10
    assert all(src.startswith(f"{fil.base}/img/") for src in sources), sources
    assert elsewhere == [], elsewhere
    assert any("/img/" in url for url in seen)
    await context.close()

"""Embedding over real HTTP: /embed.js, the framed page /embed/{slug} and its options, oEmbed, CORS, no cookies."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from curation.collectors.push import sign
from tests.conftest import RunningFil, start_fil, start_tags

SLUG = "stage-1"
PUBLIC_URL = "https://live.example.org"
SECRETS = {"wire": "embed-wire-secret", "riders": "embed-riders-secret"}
SOURCES = f"""\
events:
  - slug: {SLUG}
    title: "Stage 1 <live>"
    timezone: Europe/Paris
    sources:
      - id: wire
        kind: push
        secret_env: EMBED_WIRE_SECRET
        role: editorial
      - id: riders
        kind: push
        secret_env: EMBED_RIDERS_SECRET
        role: athlete
  - slug: secret-plans
    title: "Not yet"
    status: draft
    sources:
      - id: draft-wire
        kind: push
        secret_env: EMBED_WIRE_SECRET
        role: editorial
"""


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("EMBED_WIRE_SECRET", SECRETS["wire"])
    monkeypatch.setenv("EMBED_RIDERS_SECRET", SECRETS["riders"])
    (tmp_path / "sources.yaml").write_text(SOURCES)
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data", public_url=PUBLIC_URL)
    yield running
    await running.stop()


async def push(fil: RunningFil, source: str, *stories: tuple[str, int]) -> None:
    """Each story is (id, minute of 12:xx on 2026-07-12); the id doubles as its text."""
    items = [
        {
            "id": key,
            "url": f"https://news.example/{key}",
            "text": f"Story {key}",
            "published_at": f"2026-07-12T12:{minute:02d}:00Z",
        }
        for key, minute in stories
    ]
    body = json.dumps({"items": items}).encode()
    ts = int(time.time())
    headers = {"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRETS[source], ts, body)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fil.base}/api/ingest/{source}", data=body, headers=headers) as response:
            assert response.status == 202, await response.text()


async def fetch(
    fil: RunningFil, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{fil.base}{path}", headers=headers, allow_redirects=False) as response:
            return response.status, response.headers, await response.text()


async def embed(fil: RunningFil, query: str = "") -> tuple[int, Any, str]:
    return await fetch(fil, f"/embed/{SLUG}{'?' + query if query else ''}")


def texts(html: str) -> list[str]:
    """The stories of a rendered timeline, in display order."""
    return [a["data-id"] for tag, a in start_tags(html) if tag == "article"]


def timeline_attrs(html: str) -> dict[str, str]:
    return next(a for tag, a in start_tags(html) if a.get("id") == "timeline")


@pytest.fixture
async def stories(fil: RunningFil) -> dict[str, str]:
    """Four newsroom stories and two rider posts; maps the pushed key to the item id readers see."""
    await push(fil, "wire", ("w1", 1), ("w2", 2), ("w3", 4), ("w4", 6))
    await push(fil, "riders", ("r1", 3), ("r2", 5))
    _, _, body = await fetch(fil, f"/api/events/{SLUG}/items")
    return {item["text"].removeprefix("Story "): item["id"] for item in json.loads(body)["items"]}


async def test_embed_js_is_a_cacheable_script_without_cookies(fil: RunningFil) -> None:
    status, headers, body = await fetch(fil, "/embed.js")
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert "Set-Cookie" not in headers
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"  # loadable by pages that require CORP
    assert "data-event" in body and "fil:height" in body


async def test_the_embed_page_is_frameable_anywhere_and_renders_the_timeline(
    fil: RunningFil, stories: dict[str, str]
) -> None:
    status, headers, html = await embed(fil)
    assert status == 200
    assert "Set-Cookie" not in headers
    assert "frame-ancestors *" in headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in headers
    assert texts(html) == [stories[k] for k in ("w4", "r2", "w3", "r1", "w2", "w1")]
    attrs = timeline_attrs(html)
    head = await fil.fil.store.head(SLUG)
    assert attrs["data-slug"] == SLUG and attrs["data-seq"] == str(head) and attrs["data-order"] == "newest"
    assert attrs["data-lang"] == "en" and attrs["data-tz"] == "Europe/Paris"
    assert attrs["data-roles"] == "" and attrs["data-limit"] == "20"
    tags = start_tags(html)
    scripts = [a for tag, a in tags if tag == "script"]
    # no inline script: every script is a file of Fil's own, or the strings as inert JSON data
    assert sorted(a.get("src", a.get("type")) for a in scripts) == [
        "application/json",
        f"{fil.base}/static/embed-frame.js",
        f"{fil.base}/static/live.js",
    ]
    assert not any(name.startswith("on") for _, a in tags for name in a)
    base = next(a for tag, a in tags if tag == "base")
    # links open a new tab; a path keeps them on Fil's origin whatever a proxy in front shows as host and scheme
    assert base == {"href": f"/events/{SLUG}", "target": "_blank"}
    assert "Stage 1 &lt;live&gt;" in html  # the title is escaped
    assert ("html", {"lang": "en", "class": "theme-auto"}) in tags


async def test_roles_and_limit_apply_to_the_first_render(fil: RunningFil, stories: dict[str, str]) -> None:
    _, _, html = await embed(fil, "roles=athlete")
    assert texts(html) == [stories["r2"], stories["r1"]]
    assert timeline_attrs(html)["data-roles"] == "athlete"
    _, _, html = await embed(fil, "limit=2")
    assert texts(html) == [stories["w4"], stories["r2"]] and timeline_attrs(html)["data-limit"] == "2"
    _, _, html = await embed(fil, "roles=athlete,editorial&limit=3")
    assert texts(html) == [stories["w4"], stories["r2"], stories["w3"]]
    assert timeline_attrs(html)["data-roles"] == "athlete,editorial"
    # a role with no item yet: an empty timeline that fills itself live
    _, _, html = await embed(fil, "roles=journalist")
    assert texts(html) == [] and 'id="empty"' in html


async def test_roles_filter_reaches_past_the_first_store_page(fil: RunningFil) -> None:
    # 210 newsroom stories push the two rider posts below the first 200 items
    await push(fil, "riders", ("r1", 0), ("r2", 0))
    for start in range(0, 210, 100):
        await push(fil, "wire", *((f"w{n}", 1 + n % 58) for n in range(start, min(start + 100, 210))))
    _, _, html = await embed(fil, "roles=athlete")
    assert len(texts(html)) == 2


async def test_language_theme_and_accent(fil: RunningFil, stories: dict[str, str]) -> None:
    _, _, html = await embed(fil, "lang=fr&theme=dark&accent=%230A7")
    tags = start_tags(html)
    assert ("html", {"lang": "fr", "class": "theme-dark"}) in tags
    assert timeline_attrs(html)["data-lang"] == "fr"
    assert "Rédaction" in html and "Suivre tout le direct" in html
    assert "<style>:root { --embed-accent: #0a7; }</style>" in html
    # anything but en or fr is ignored: the event's language
    _, _, html = await embed(fil, "lang=de")
    assert ("html", {"lang": "en", "class": "theme-auto"}) in start_tags(html)
    for accent in ("rgb(0, 119, 170)", "hsl(210deg 50% 40% / 0.8)", "rebeccapurple", "#11223344"):
        status, _, html = await embed(fil, urllib.parse.urlencode({"accent": accent}))
        assert status == 200 and f"--embed-accent: {accent.lower()};" in html, accent


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"accent": "red;} body{display:none"}, "accent"),
        ({"accent": "</style><script>alert(1)</script>"}, "accent"),
        ({"accent": "url(https://evil.example/x.png)"}, "accent"),
        ({"accent": "expression(alert(1))"}, "accent"),
        ({"accent": "var(--fg)"}, "accent"),
        ({"accent": "#12345"}, "accent"),
        ({"accent": "rgb(1,2,3);color:red"}, "accent"),
        ({"accent": "rgb(1,2)"}, "accent"),
        ({"accent": "notacolour"}, "accent"),
        ({"accent": "#" + "a" * 100}, "accent"),
        ({"theme": "neon"}, "theme"),
        ({"limit": "0"}, "limit"),
        ({"limit": "9999"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"roles": "athlete,ninja"}, "roles"),
    ],
)
async def test_hostile_options_get_a_clear_error(fil: RunningFil, query: dict[str, str], named: str) -> None:
    status, headers, body = await embed(fil, urllib.parse.urlencode(query))
    assert status == 400 and body.startswith(f"{named}: "), body
    assert headers["Content-Type"].startswith("text/plain")  # nothing of it is ever markup or style
    assert "frame-ancestors *" in headers["Content-Security-Policy"]  # the partner sees it in the frame


async def test_unknown_and_draft_events_are_not_found(fil: RunningFil) -> None:
    for slug in ("nope", "secret-plans"):
        status, headers, _ = await fetch(fil, f"/embed/{slug}")
        assert status == 404 and "Set-Cookie" not in headers


async def oembed(fil: RunningFil, **params: str) -> tuple[int, Any, Any]:
    status, headers, body = await fetch(fil, "/oembed?" + urllib.parse.urlencode(params))
    return status, headers, json.loads(body)


async def test_oembed_answers_a_rich_response_for_an_event_page(fil: RunningFil) -> None:
    status, headers, doc = await oembed(fil, url=f"{PUBLIC_URL}/events/{SLUG}", format="json")
    assert status == 200 and "Set-Cookie" not in headers
    assert headers["Content-Type"].startswith("application/json")
    assert {k: doc[k] for k in ("type", "version", "title", "provider_name", "provider_url")} == {
        "type": "rich",
        "version": "1.0",
        "title": "Stage 1 <live>",
        "provider_name": "Fil",
        "provider_url": f"{PUBLIC_URL}/",
    }
    assert (doc["width"], doc["height"]) == (600, 600)
    (frame,) = [a for tag, a in start_tags(doc["html"]) if tag == "iframe"]
    assert frame["src"] == f"{PUBLIC_URL}/embed/{SLUG}" and frame["title"] == "Stage 1 <live>"
    assert (frame["width"], frame["height"]) == ("600", "600")
    # the consumer's maximum wins; a permalink or a role filter still names the event
    status, _, doc = await oembed(fil, url=f"{PUBLIC_URL}/events/{SLUG}?roles=athlete#item-x", maxwidth="320")
    assert status == 200 and (doc["width"], doc["height"]) == (320, 600)
    (frame,) = [a for tag, a in start_tags(doc["html"]) if tag == "iframe"]
    assert frame["src"] == f"{PUBLIC_URL}/embed/{SLUG}?roles=athlete" and frame["width"] == "320"
    _, _, doc = await oembed(fil, url=f"{PUBLIC_URL}/events/{SLUG}/", maxwidth="900", maxheight="250")
    assert (doc["width"], doc["height"]) == (600, 250)
    # the host this request reached names the server too; the snippet still points at the public URL
    status, _, doc = await oembed(fil, url=f"{fil.base}/events/{SLUG}")
    assert status == 200
    (frame,) = [a for tag, a in start_tags(doc["html"]) if tag == "iframe"]
    assert frame["src"] == f"{PUBLIC_URL}/embed/{SLUG}"
    assert (await fetch(fil, frame["src"].removeprefix(PUBLIC_URL)))[0] == 200


async def test_oembed_without_a_public_url_points_at_the_host_asked(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(f"events:\n  - slug: {SLUG}\n    title: Stage 1\n")
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    try:
        port = running.base.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            query = urllib.parse.urlencode({"url": f"http://{host}/events/{SLUG}"})
            status, _, body = await fetch(running, f"/oembed?{query}", headers={"Host": host})
            (frame,) = [a for tag, a in start_tags(json.loads(body)["html"]) if tag == "iframe"]
            assert status == 200 and frame["src"] == f"http://{host}/embed/{SLUG}", host
        # another host than the one asked is still not this server
        query = urllib.parse.urlencode({"url": f"http://localhost:{port}/events/{SLUG}"})
        assert (await fetch(running, f"/oembed?{query}"))[0] == 404
    finally:
        await running.stop()


async def test_oembed_refuses_what_it_cannot_answer(fil: RunningFil) -> None:
    assert (await oembed(fil, url=f"{PUBLIC_URL}/events/{SLUG}", format="xml"))[0] == 501
    for url in (
        f"https://elsewhere.example/events/{SLUG}",
        f"http://live.example.org:8080/events/{SLUG}",
        f"{PUBLIC_URL}/events/nope",
        f"{PUBLIC_URL}/events/secret-plans",
        f"{PUBLIC_URL}/events/{SLUG}/feed.atom",
        f"{PUBLIC_URL}/embed/{SLUG}",
        f"javascript://{PUBLIC_URL.removeprefix('https://')}/events/{SLUG}",
        "not a url at all",
        "http://[::1/events/x",
    ):
        status, headers, doc = await oembed(fil, url=url)
        assert status == 404 and "url" in doc["error"], url
        assert "Set-Cookie" not in headers
    status, _, doc = await oembed(fil, url=f"{PUBLIC_URL}/events/{SLUG}", maxwidth="wide")
    assert status == 400 and doc["error"].startswith("maxwidth")
    status, _, doc = await oembed(fil, format="json")
    assert status == 400 and doc["error"].startswith("url")


async def test_the_event_page_advertises_its_oembed(fil: RunningFil) -> None:
    status, _, html = await fetch(fil, f"/events/{SLUG}")
    assert status == 200
    (link,) = [a for tag, a in start_tags(html) if tag == "link" and a.get("type") == "application/json+oembed"]
    assert link["rel"] == "alternate" and link["title"] == "Stage 1 <live>"
    assert link["href"].startswith(f"{PUBLIC_URL}/oembed?")
    status, _, body = await fetch(fil, link["href"].removeprefix(PUBLIC_URL))
    doc = json.loads(body)
    assert status == 200 and doc["type"] == "rich" and f'src="{PUBLIC_URL}/embed/{SLUG}"' in doc["html"]


async def test_public_reads_answer_any_origin_and_editor_routes_none(fil: RunningFil, stories: dict[str, str]) -> None:
    partner = {"Origin": "https://partner.example"}
    for path in ("/api/events", f"/api/events/{SLUG}/items", f"/oembed?url={PUBLIC_URL}/events/{SLUG}"):
        status, headers, _ = await fetch(fil, path, headers=partner)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*", path
        assert "Access-Control-Allow-Credentials" not in headers
        assert "Set-Cookie" not in headers
    # a conditional request from a script is preflighted: allowed, for reading only
    status, headers, _ = await fetch(
        fil,
        f"/api/events/{SLUG}/items",
        method="OPTIONS",
        headers={**partner, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "if-none-match"},
    )
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    assert "If-None-Match" in headers["Access-Control-Allow-Headers"]
    assert headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    # editor routes: no CORS at all, with or without a valid token, preflight included
    token = {"Authorization": f"Bearer {await fil.token()}"}
    for path in (f"/api/events/{SLUG}/queue", "/api/sources", f"/api/events/{SLUG}/desk"):
        status, headers, _ = await fetch(fil, path, headers={**partner, **token})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers, path
    status, headers, _ = await fetch(
        fil,
        f"/api/events/{SLUG}/posts",
        method="OPTIONS",
        headers={**partner, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert status != 204 and "Access-Control-Allow-Origin" not in headers


async def test_reader_socket_takes_any_origin_the_desk_socket_only_its_own(fil: RunningFil) -> None:
    async with connect(
        f"{fil.ws_base}/api/events/{SLUG}/live", additional_headers={"Origin": "https://partner.example"}
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
    token = {"Authorization": f"Bearer {await fil.token()}"}
    desk = f"{fil.ws_base}/api/events/{SLUG}/desk/live"
    # a page of another site must not open a desk socket, even if the browser had credentials to send
    async with connect(desk, additional_headers={**token, "Origin": "https://evil.example"}) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    for origin in (fil.base, PUBLIC_URL):
        async with connect(desk, additional_headers={**token, "Origin": origin}) as ws:
            assert json.loads(await ws.recv())["type"] == "hello", origin

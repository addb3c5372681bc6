"""Pasting a post URL: each platform read from a fake on 127.0.0.1, stored with its own author, seen by readers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from curation.collectors.fetch import Fetcher
from curation.config import Settings
from curation.paste import PasteError, parse, resolve
from tests.conftest import RunningFil, start_fil
from tests.fake_mastodon import FakeMastodon, mastodon  # noqa: F401
from tests.test_live_e2e import next_message
from tests.upstreams import FakeUpstream, upstream  # noqa: F401

SLUG = "stage-1"
FIXTURES = Path(__file__).parent / "fixtures"
THREAD = (FIXTURES / "bluesky" / "getPostThread_recordWithMedia.json").read_bytes()
BSKY_DID = "did:plc:kvwvcn5iqfooopmyzvb4qzba"
BSKY_RKEY = "3kaheyt6vpc22"
YOUTUBE = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
X_POST = "https://x.com/Interior/status/507185938620219395"
REMOTE_STATUS = "110446223051565765"  # status_remote_cw_gifv_emoji_edited.json: public, by halcy@icosahedron.website
PRIVATE_STATUS = "110447003454258227"  # status_local_image.json: followers-only, so the instance answers 404


@pytest_asyncio.fixture
async def fil(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("PASTE_WIRE_SECRET", "paste-secret")
    (tmp_path / "sources.yaml").write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: PASTE_WIRE_SECRET\n        role: other\n"
    )
    running = await start_fil(
        tmp_path / "sources.yaml",
        tmp_path / "data",
        bluesky_appview=upstream.base_url,
        youtube_oembed=upstream.url("/youtube/oembed"),
        x_oembed=upstream.url("/x/oembed"),
    )
    yield running
    await running.stop()


async def paste(fil: RunningFil, url: str, token: str | None = "auto") -> tuple[int, Any]:
    if token == "auto":
        token = await fil.token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{fil.base}/api/events/{SLUG}/paste", json={"url": url}) as response:
            return response.status, json.loads(await response.text())


def serve_thread(upstream: FakeUpstream) -> None:  # noqa: F811
    upstream.add("/xrpc/app.bsky.feed.getPostThread", THREAD, content_type="application/json; charset=utf-8")
    upstream.add(
        "/xrpc/com.atproto.identity.resolveHandle",
        json.dumps({"did": BSKY_DID}),
        content_type="application/json; charset=utf-8",
    )


# -- recognising URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "platform", "key"),
    [
        ("https://mastodon.social/@halcy/110447003454258227", "mastodon", "https://mastodon.social/@halcy/110447003454258227"),
        ("https://Mastodon.Social/users/halcy/statuses/1104?x=1", "mastodon", "https://mastodon.social/@halcy/1104"),
        ("https://bsky.app/profile/Test.Marshal.dev/post/3kaheyt6vpc22", "bluesky", "https://bsky.app/profile/test.marshal.dev/post/3kaheyt6vpc22"),
        ("https://youtu.be/dQw4w9WgXcQ?si=abc", "youtube", YOUTUBE),
        ("https://m.youtube.com/watch?v=dQw4w9WgXcQ&t=42", "youtube", YOUTUBE),
        ("https://www.youtube.com/shorts/dQw4w9WgXcQ", "youtube", YOUTUBE),
        ("https://twitter.com/Interior/status/507185938620219395?s=20", "x", X_POST),
    ],
)  # fmt: skip
def test_post_urls_of_each_platform_are_recognised_with_one_canonical_key(url: str, platform: str, key: str) -> None:
    target = parse(url)
    assert (target.platform, target.key) == (platform, key)


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example/2026/07/12/stage-1",
        "https://www.youtube.com/@RickAstleyYT",
        "https://x.com/Interior",
        "https://bsky.app/profile/test.marshal.dev",
        "javascript:alert(1)",
        "ftp://mastodon.social/@halcy/1",
        "",
    ],
)
def test_anything_else_is_refused_with_the_list_of_supported_platforms(url: str) -> None:
    with pytest.raises(PasteError) as caught:
        parse(url)
    assert caught.value.status == 400


# -- each platform, end to end -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_pasted_mastodon_post_reaches_readers_credited_to_its_author(
    fil: RunningFil,
    mastodon: FakeMastodon,  # noqa: F811
) -> None:
    mastodon.load("status_remote_cw_gifv_emoji_edited.json")
    url = f"{mastodon.base_url}/@halcy@icosahedron.website/{REMOTE_STATUS}"
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        assert (await next_message(ws))["type"] == "hello"
        status, body = await paste(fil, url)
        assert status == 201, body
        item = (await next_message(ws, "upsert"))["item"]
    assert item["id"] == body["item"]["id"]
    assert item["author"]["handle"] == "@halcy@icosahedron.website"
    assert item["author"]["name"].startswith("halcy")
    assert item["url"] == "https://icosahedron.website/@halcy/110446222386355655"
    assert item["source"] == {"id": "desk", "kind": "desk", "label": "Pasted"}
    assert item["kind"] == "post" and item["content_warning"]
    assert item["media"] and item["media"][0]["type"] == "video"
    assert [r.path for r in mastodon.calls(f"/api/v1/statuses/{REMOTE_STATUS}")] == [
        f"/api/v1/statuses/{REMOTE_STATUS}"
    ]


@pytest.mark.asyncio
async def test_pasting_the_same_url_twice_gives_the_same_item(
    fil: RunningFil,
    mastodon: FakeMastodon,  # noqa: F811
) -> None:
    mastodon.load("status_remote_cw_gifv_emoji_edited.json")
    first = await paste(fil, f"{mastodon.base_url}/@halcy@icosahedron.website/{REMOTE_STATUS}")
    again = await paste(fil, f"{mastodon.base_url}/@halcy@icosahedron.website/{REMOTE_STATUS}/")
    assert (first[0], again[0]) == (201, 200)
    assert again[1]["item"]["id"] == first[1]["item"]["id"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/api/events/{SLUG}/items") as response:
            items = (await response.json())["items"]
    assert [i["id"] for i in items] == [first[1]["item"]["id"]]


@pytest.mark.asyncio
async def test_a_pasted_bluesky_post_is_read_from_the_appview_by_handle(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    serve_thread(upstream)
    status, body = await paste(fil, f"https://bsky.app/profile/test.marshal.dev/post/{BSKY_RKEY}")
    assert status == 201, body
    item = body["item"]
    assert item["author"]["handle"] == "@test.marshal.dev" and item["author"]["name"] == "Python SDK"
    assert item["url"] == f"https://bsky.app/profile/test.marshal.dev/post/{BSKY_RKEY}"
    assert item["media"] and item["media"][0]["type"] == "image"
    assert upstream.last("/xrpc/com.atproto.identity.resolveHandle").query == "handle=test.marshal.dev"
    asked = parse_qs(upstream.last("/xrpc/app.bsky.feed.getPostThread").query)
    assert asked["uri"] == [f"at://{BSKY_DID}/app.bsky.feed.post/{BSKY_RKEY}"] and asked["depth"] == ["0"]


@pytest.mark.asyncio
async def test_a_pasted_youtube_video_is_a_privacy_enhanced_player_link_never_the_oembed_iframe(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add(
        "/youtube/oembed", (FIXTURES / "oembed" / "youtube_video.json").read_bytes(), content_type="application/json"
    )
    status, body = await paste(fil, "https://youtu.be/dQw4w9WgXcQ")
    assert status == 201, body
    item = body["item"]
    assert item["title"] == "Rick Astley - Never Gonna Give You Up (Official Music Video)"
    assert item["author"]["name"] == "Rick Astley" and item["author"]["url"] == "https://www.youtube.com/@RickAstleyYT"
    assert item["media"][0]["url"] == "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
    assert item["media"][0]["thumbnail"] == "https://i.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg"
    assert "iframe" not in json.dumps(item)
    assert "format=json" in upstream.last("/youtube/oembed").query


@pytest.mark.asyncio
async def test_a_pasted_x_post_is_its_blockquote_text_with_links_and_no_script(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/x/oembed", (FIXTURES / "oembed" / "x_post.json").read_bytes(), content_type="application/json")
    status, body = await paste(fil, "https://twitter.com/Interior/status/507185938620219395")
    assert status == 201, body
    item = body["item"]
    assert item["text"].startswith("Sunsets don't get much better than this one over @GrandTetonNPS")
    assert 'href="https://twitter.com/GrandTetonNPS' in item["html"]
    assert "US Department of the Interior" not in item["text"]  # the byline is the author, not the text
    assert item["author"]["name"] == "US Department of the Interior" and item["author"]["handle"] == "@Interior"
    assert item["url"] == "https://twitter.com/Interior/status/507185938620219395"
    assert item["published_at"].startswith("2014-09-03")
    query = upstream.last("/x/oembed").query
    assert "omit_script=1" in query and "dnt=true" in query


@pytest.mark.asyncio
async def test_hostile_oembed_html_comes_out_inert(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    hostile = json.loads((FIXTURES / "oembed" / "x_post.json").read_bytes())
    hostile["author_name"] = '<img src=x onerror="alert(1)">Mallory'
    hostile["html"] = (
        '<blockquote class="twitter-tweet"><p>Hello <script>alert(1)</script><iframe src="https://evil.example/">'
        'framed</iframe><a href="javascript:alert(2)" onclick="alert(3)">click</a> <b onmouseover="x()">bold</b>'
        '<img src="https://evil.example/p.gif" onerror="alert(4)"></p>&mdash; M <a href="#">July 1, 2026</a>'
        '</blockquote><script async src="https://platform.twitter.com/widgets.js"></script>'
    )
    upstream.add("/x/oembed", json.dumps(hostile), content_type="application/json")
    status, body = await paste(fil, X_POST)
    assert status == 201, body
    item = body["item"]
    rendered = item["html"].lower()
    for needle in ("<script", "<iframe", "javascript:", "onclick", "onerror", "onmouseover", "<img", "widgets.js"):
        assert needle not in rendered, needle
    assert "alert" not in item["text"] and "framed" not in item["text"]
    assert "Hello" in item["text"] and "click" in item["text"] and "bold" in item["text"]
    assert "<" not in item["author"]["name"] and "Mallory" in item["author"]["name"]


# -- what cannot be pasted ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_unsupported_url_is_a_400_naming_what_is_supported(fil: RunningFil) -> None:
    status, body = await paste(fil, "https://news.example/2026/07/12/stage-1")
    assert status == 400
    assert "https://news.example/2026/07/12/stage-1" in body["error"]
    assert "supported: Mastodon, Bluesky, YouTube, X" in body["error"]


@pytest.mark.asyncio
async def test_an_upstream_404_is_a_502_naming_the_url(
    fil: RunningFil,
    mastodon: FakeMastodon,  # noqa: F811
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    mastodon.load("status_local_image.json")  # followers-only: the public API answers 404
    url = f"{mastodon.base_url}/@halcy/{PRIVATE_STATUS}"
    status, body = await paste(fil, url)
    assert status == 502
    assert url in body["error"] and "not found" in body["error"]
    upstream.add("/youtube/oembed", "Not Found", status=404, content_type="text/html")
    status, body = await paste(fil, YOUTUBE)
    assert status == 502 and YOUTUBE in body["error"] and "not found" in body["error"]
    upstream.add(
        "/xrpc/app.bsky.feed.getPostThread",
        json.dumps({"error": "NotFound", "message": "Post not found"}),
        status=400,
        content_type="application/json",
    )
    status, body = await paste(fil, f"https://bsky.app/profile/{BSKY_DID}/post/{BSKY_RKEY}")
    assert status == 502 and "not found" in body["error"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/api/events/{SLUG}/items") as response:
            assert (await response.json())["items"] == []


@pytest.mark.asyncio
async def test_anonymous_and_bad_tokens_are_refused(fil: RunningFil) -> None:
    for token in (None, "not-a-token"):
        status, _ = await paste(fil, X_POST, token=token)
        assert status == 401


@pytest.mark.asyncio
async def test_a_pasted_post_is_not_corrected_into_the_editors_words(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/x/oembed", (FIXTURES / "oembed" / "x_post.json").read_bytes(), content_type="application/json")
    _, body = await paste(fil, X_POST)
    headers = {"Authorization": f"Bearer {await fil.token()}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        path = f"{fil.base}/api/events/{SLUG}/posts/{body['item']['id']}"
        async with session.patch(path, json={"text": "words never said"}) as response:
            assert response.status == 400
            assert "pasted" in (await response.json())["error"]


@pytest.mark.asyncio
async def test_a_private_address_is_refused_when_private_hosts_are_not_allowed(
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/x/oembed", (FIXTURES / "oembed" / "x_post.json").read_bytes(), content_type="application/json")
    async with Fetcher(allow_private=False) as fetcher:
        with pytest.raises(PasteError) as caught:
            await resolve(X_POST, fetcher=fetcher, settings=Settings(x_oembed=upstream.url("/x/oembed")))
    assert caught.value.status == 502
    assert X_POST in str(caught.value) and "private" in str(caught.value)
    assert upstream.hits("/x/oembed") == 0

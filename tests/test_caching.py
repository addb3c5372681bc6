"""HTTP caching over real HTTP: ETag / Last-Modified / 304 / Cache-Control on every public GET, none elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import uvicorn
from multidict import CIMultiDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from websockets.asyncio.client import connect

from curation.web import caching
from tests.conftest import RunningFil, free_port
from tests.test_syndication import BASE, SLUG, launch, push, wire_item, write_sources

PUBLIC = [
    "/",
    "/api/events",
    f"/api/events/{SLUG}/items",
    f"/api/events/{SLUG}/items?limit=2",
    f"/events/{SLUG}",
    f"/events/{SLUG}/feed.atom",
    f"/events/{SLUG}/feed.json",
    f"/events/{SLUG}/archive.html",
    f"/events/{SLUG}/archive.json",
    f"/embed/{SLUG}",
    f"/oembed?url={quote(f'{BASE}/events/{SLUG}')}&format=json",
]
STATIC = ["/static/fil.css", "/embed.js"]


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await launch(tmp_path, monkeypatch)
    await push(running, "wire", wire_item("a", 1), wire_item("b", 2))
    yield running
    await running.stop()


async def fetch(
    base: str, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{base}{path}", headers=headers or {}, allow_redirects=False) as response:
            return response.status, CIMultiDict(response.headers), await response.read()


def max_age(cache_control: str) -> int:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name == "max-age":
            return int(value)
    raise AssertionError(f"no max-age in {cache_control!r}")


async def test_every_public_get_revalidates_to_a_304(fil: RunningFil) -> None:
    for path in PUBLIC + STATIC:
        status, headers, body = await fetch(fil.base, path)
        assert status == 200, (path, body[:200])
        etag, cache_control = headers.get("ETag"), headers.get("Cache-Control", "")
        assert etag, path
        assert "public" in cache_control and "stale-while-revalidate=" in cache_control, (path, cache_control)
        # oEmbed answers change only with the event's title: its handler picks a longer lifetime
        longest = 600 if path in STATIC or path.startswith("/oembed") else 10
        assert max_age(cache_control) <= longest, (path, cache_control)
        status, again, body = await fetch(fil.base, path, headers={"If-None-Match": etag})
        assert status == 304, (path, "the same body was rendered twice: is the page deterministic?")
        assert body == b""
        assert again["ETag"] == etag and again["Cache-Control"] == cache_control, path
        assert "Content-Type" not in again or path in STATIC
        # a list of tags, a weak form of it, and the wildcard all match
        for header in (f'"nope", {etag}', f"W/{etag}", "*"):
            assert (await fetch(fil.base, path, headers={"If-None-Match": header}))[0] == 304, (path, header)
        assert (await fetch(fil.base, path, headers={"If-None-Match": '"other"'}))[0] == 200, path


async def test_a_change_gives_a_new_etag(fil: RunningFil) -> None:
    paths = [f"/api/events/{SLUG}/items", f"/events/{SLUG}", f"/events/{SLUG}/feed.atom", f"/events/{SLUG}/feed.json"]
    before = {path: (await fetch(fil.base, path))[1]["ETag"] for path in paths}
    await push(fil, "wire", wire_item("c", 3))
    for path in paths:
        status, headers, body = await fetch(fil.base, path, headers={"If-None-Match": before[path]})
        assert status == 200, path
        assert headers["ETag"] != before[path]
        assert b"Story c" in body


async def test_head_answers_like_get(fil: RunningFil) -> None:
    for path in (f"/api/events/{SLUG}/items", f"/events/{SLUG}/feed.atom", "/static/fil.css"):
        _, got, _ = await fetch(fil.base, path)
        status, headed, body = await fetch(fil.base, path, "HEAD")
        assert status == 200 and body == b""
        assert headed["ETag"] == got["ETag"] and headed["Cache-Control"] == got["Cache-Control"]
        assert (await fetch(fil.base, path, "HEAD", {"If-None-Match": got["ETag"]}))[0] == 304


async def test_editor_routes_and_operations_are_left_alone(fil: RunningFil) -> None:
    bearer = {"Authorization": f"Bearer {await fil.token()}"}
    for path, headers in (
        ("/healthz", {}),
        ("/api/sources", bearer),
        (f"/api/events/{SLUG}/queue", bearer),
        (f"/api/events/{SLUG}/desk", bearer),
        ("/editor/login", {}),
        ("/editor/", {}),
        ("/metrics", {}),
    ):
        status, answered, _ = await fetch(fil.base, path, headers=headers)
        assert "ETag" not in answered, (path, status)
        assert "public" not in answered.get("Cache-Control", ""), path
    # other methods on a public path: untouched too
    status, answered, _ = await fetch(fil.base, f"/events/{SLUG}/feed.atom", "POST")
    assert status == 405 and "ETag" not in answered and "Cache-Control" not in answered
    # a missing event is not cached as if it were content
    status, answered, _ = await fetch(fil.base, "/events/nope/feed.atom")
    assert status == 404 and "ETag" not in answered and "Cache-Control" not in answered


async def test_the_live_websocket_is_unaffected(fil: RunningFil) -> None:
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        hello = await asyncio.wait_for(ws.recv(), 10)
        assert '"type":"hello"' in str(hello)


async def test_static_files_keep_their_own_validators(fil: RunningFil) -> None:
    status, headers, _ = await fetch(fil.base, "/static/fil.css")
    assert status == 200 and headers["Cache-Control"] == caching.STATIC
    assert headers["Last-Modified"] and headers["ETag"]
    status, again, _ = await fetch(fil.base, "/static/fil.css", headers={"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304 and again["Cache-Control"] == caching.STATIC


async def test_last_modified_and_if_modified_since(fil: RunningFil, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000.5]
    monkeypatch.setattr(caching, "now", lambda: clock[0])
    path = f"/api/events/{SLUG}/items?limit=3"

    # a version is dated only once the second it appeared in is over (two in one second would share a date)
    status, headers, _ = await fetch(fil.base, path)
    assert status == 200 and "Last-Modified" not in headers
    clock[0] += 1
    status, headers, _ = await fetch(fil.base, path)
    assert headers["Last-Modified"] == formatdate(1_000_000, usegmt=True)
    since = {"If-Modified-Since": headers["Last-Modified"]}
    assert (await fetch(fil.base, path, headers=since))[0] == 304
    later = {"If-Modified-Since": formatdate(1_000_100, usegmt=True)}
    assert (await fetch(fil.base, path, headers=later))[0] == 304
    earlier = {"If-Modified-Since": formatdate(999_999, usegmt=True)}
    assert (await fetch(fil.base, path, headers=earlier))[0] == 200
    assert (await fetch(fil.base, path, headers={"If-Modified-Since": "not a date"}))[0] == 200
    # If-None-Match wins when both are sent
    both = {**since, "If-None-Match": '"something else"'}
    assert (await fetch(fil.base, path, headers=both))[0] == 200

    await push(fil, "wire", wire_item("c", 3))
    clock[0] += 1
    status, headers, _ = await fetch(fil.base, path, headers=since)
    assert status == 200 and "Last-Modified" not in headers
    clock[0] += 1
    status, headers, _ = await fetch(fil.base, path, headers=since)
    assert status == 200 and headers["Last-Modified"] == formatdate(1_000_002, usegmt=True)


async def test_closed_events_are_cached_longer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = await launch(tmp_path, monkeypatch, status="closed")
    try:
        for path in PUBLIC[2:9]:
            status, headers, _ = await fetch(running.base, path)
            assert status == 200, path
            assert headers["Cache-Control"] == caching.CLOSED, path
        write_sources(tmp_path / "sources.yaml", "live")  # reopened: back to the short lifetime
        for _ in range(200):
            status, headers, _ = await fetch(running.base, f"/events/{SLUG}/feed.json")
            if headers["Cache-Control"] == caching.LIVE:
                break
            await asyncio.sleep(0.05)
        assert headers["Cache-Control"] == caching.LIVE
    finally:
        await running.stop()


# -- the middleware on its own, in front of a small app -----------------------------------------------


async def streamed(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    return StreamingResponse(chunks(), media_type="text/plain")


def small_app() -> Starlette:
    def answer(**headers: str) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return PlainTextResponse("hello", headers=headers)

        return endpoint

    return Starlette(
        routes=[
            Route("/plain", answer()),
            Route("/cookie", answer(**{"Set-Cookie": "a=b"})),
            Route("/private", answer(**{"Cache-Control": "private, max-age=60"})),
            Route("/no-store", answer(**{"Cache-Control": "no-store"})),
            Route("/own", answer(**{"Cache-Control": "public, max-age=99"})),
            Route("/tagged", answer(ETag='"mine"')),
            Route("/encoded", answer(**{"Content-Encoding": "identity", "Vary": "Origin"})),
            Route("/streamed", streamed),
            Route("/other", answer()),
        ]
    )


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    policy: caching.Policy = lambda path: None if path == "/other" else "public, max-age=5"  # noqa: E731
    port = free_port()
    config = uvicorn.Config(caching.CachingMiddleware(app, policy), port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def test_middleware_rules() -> None:
    async with serving(small_app()) as base:
        _, headers, _ = await fetch(base, "/plain")
        assert headers["ETag"] == caching.etag_of(b"hello") and headers["Cache-Control"] == "public, max-age=5"
        assert "Vary" not in headers
        for path in ("/cookie", "/private", "/no-store", "/other"):
            _, headers, body = await fetch(base, path)
            assert body == b"hello" and "ETag" not in headers, path
            assert "public, max-age=5" not in headers.get("Cache-Control", ""), path
        # a handler's own public Cache-Control is kept, and validators still come
        _, headers, _ = await fetch(base, "/own")
        assert headers["Cache-Control"] == "public, max-age=99" and headers["ETag"]
        assert (await fetch(base, "/own", headers={"If-None-Match": headers["ETag"]}))[0] == 304
        # a handler's own ETag is kept and honoured
        _, headers, _ = await fetch(base, "/tagged")
        assert headers["ETag"] == '"mine"'
        assert (await fetch(base, "/tagged", headers={"If-None-Match": '"mine"'}))[0:3:2] == (304, b"")
        # an encoded body varies by Accept-Encoding (added to what is there)
        _, headers, _ = await fetch(base, "/encoded")
        assert headers["Vary"] == "Origin, Accept-Encoding"
        # a body in several chunks is hashed whole and sent whole
        status, headers, body = await fetch(base, "/streamed")
        assert body == b"one two three" and headers["ETag"] == caching.etag_of(b"one two three")
        assert (await fetch(base, "/streamed", headers={"If-None-Match": headers["ETag"]}))[0] == 304
        # other methods pass
        assert (await fetch(base, "/plain", "POST"))[0] == 405


def test_etag_matching() -> None:
    assert caching.etag_matches('"a"', '"a"')
    assert caching.etag_matches('W/"a"', '"a"')
    assert caching.etag_matches(' "b" , "a"', '"a"')
    assert caching.etag_matches("*", '"a"')
    assert not caching.etag_matches('"ab"', '"a"')
    assert not caching.etag_matches("", '"a"')


def test_policy_allowlist(tmp_path: Path) -> None:
    from curation.config import Settings
    from curation.service import Fil

    policy = caching.fil_policy(Fil(Settings(store="sqlite://:memory:")))
    for path in ("/", "/api/events", "/api/events/x/items", "/events/x", "/events/x/feed.atom", "/embed/x", "/oembed"):
        assert policy(path) == caching.LIVE, path
    for path in ("/static/fil.css", "/embed.js"):
        assert policy(path) == caching.STATIC, path
    for path in (
        "/healthz",
        "/metrics",
        "/api/sources",
        "/api/events/x/queue",
        "/api/events/x/live",
        "/api/events/x/header",
        "/editor/",
        "/editor/events/x",
        "/api/ingest/x",
        "/websub/x",
        "/api/editors",
    ):
        assert policy(path) is None, path

"""Faults lose nothing (issue 7 §6): broken upstreams, a full or locked SQLite file, kill -9 mid-burst.

Each fault is checked the way an operator and a reader meet it: the failing part is named in /healthz
and in the source status, nothing acknowledged before is lost, the failed write is taken at the next
poll or resend, and readers resuming with `since` see every change once, with no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from curation.collectors import CollectorContext
from curation.collectors.feed import FeedCollector
from curation.collectors.fetch import Fetcher
from curation.collectors.push import sign
from curation.collectors.runner import SourceRunner
from curation.errors import FetchError
from curation.models import SourceState, SourceStatus
from curation.store import open_store
from curation.store.sqlite import WRITE_ERROR_WINDOW, SQLiteStore
from tests.conftest import RunningFil, make_event, make_source, start_fil
from tests.test_live_e2e import WAIT, wait_for
from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
SLUG = "stage-1"
SECRET = "faults-wire-secret"
PASSWORD = "a long test password"


def story(n: int, *, words: int = 8) -> dict[str, str]:
    return {
        "title": f"Story {n}",
        "link": f"https://news.example/story-{n}",
        "guid": f"story-{n}",
        "description": " ".join([f"Body of story {n}."] * words),
        "pubDate": f"{n:02d} Jul 2027 12:00:00 GMT",
    }


def feed(*numbers: int, words: int = 8) -> bytes:
    return rss_document([story(n, words=words) for n in sorted(numbers, reverse=True)])


# -- truncated upstream answers, at the byte level --------------------------------------------------------


class BrokenUpstream:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers the current document whole, or broken in one way:

    cut-length  Content-Length larger than the body, then the connection closes
    reset       half the body, then a TCP reset (SO_LINGER 0)
    chunk-cut   chunked, and the connection closes before the last chunk
    gzip-cut    Content-Encoding: gzip, HTTP framing complete, but the gzip stream stops halfway
    """

    def __init__(self) -> None:
        self.document = b""
        self.etag = '"v0"'
        self.mode = "whole"
        self.requests = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.xml"

    async def __aenter__(self) -> BrokenUpstream:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        self.requests += 1
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nETag: {self.etag}\r\nConnection: close\r\n"
        if f"if-none-match: {self.etag}".encode() in request.lower():
            writer.write(f"HTTP/1.1 304 Not Modified\r\nETag: {self.etag}\r\nConnection: close\r\n\r\n".encode())
        elif self.mode == "whole":
            writer.write(f"{head}Content-Length: {len(self.document)}\r\n\r\n".encode() + self.document)
        elif self.mode == "cut-length":
            half = self.document[: len(self.document) // 2]
            writer.write(f"{head}Content-Length: {len(self.document)}\r\n\r\n".encode() + half)
        elif self.mode == "reset":
            half = self.document[: len(self.document) // 2]
            writer.write(f"{head}Content-Length: {len(self.document)}\r\n\r\n".encode() + half)
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST, not FIN
            return
        elif self.mode == "chunk-cut":
            half = self.document[: len(self.document) // 2]
            writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n{len(half):x}\r\n".encode() + half + b"\r\n")
        elif self.mode == "gzip-cut":
            packed = gzip.compress(self.document)
            cut = packed[: len(packed) // 2]
            writer.write(f"{head}Content-Encoding: gzip\r\nContent-Length: {len(cut)}\r\n\r\n".encode() + cut)
        await writer.drain()
        writer.close()


#: what each broken answer must be called in the source status
TRUNCATIONS = {
    "cut-length": "content length",
    "reset": "reset",
    "chunk-cut": "transfer length",
    "gzip-cut": "gzip",
}


@pytest.fixture
async def broken() -> AsyncIterator[BrokenUpstream]:
    async with BrokenUpstream() as server:
        yield server


@pytest.mark.parametrize("mode", list(TRUNCATIONS))
async def test_a_truncated_answer_is_an_error_not_a_short_document(broken: BrokenUpstream, mode: str) -> None:
    broken.document, broken.mode = feed(*range(1, 30)), mode
    async with Fetcher(allow_private=True, total_timeout=5) as fetcher:
        with pytest.raises(FetchError) as caught:
            result = await fetcher.get(broken.url)
            raise AssertionError(f"{mode}: taken as a {result.status} of {len(result.body)} bytes")
    assert caught.value.url == broken.url
    assert TRUNCATIONS[mode] in str(caught.value).lower(), str(caught.value)


@pytest.mark.parametrize("mode", list(TRUNCATIONS))
async def test_a_truncated_poll_stores_nothing_and_the_next_good_poll_takes_everything(
    broken: BrokenUpstream, tmp_path: Path, mode: str
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/fil.db")
    await store.open()
    event = make_event()
    source = make_source("desk", url=broken.url, interval=60)
    clock = {"now": datetime(2027, 7, 12, 12, 0, tzinfo=UTC)}
    try:
        async with Fetcher(allow_private=True, total_timeout=5) as fetcher:
            runner = SourceRunner(
                source,
                FeedCollector(CollectorContext(fetcher)),
                store,
                SourceStatus(id="desk", kind="feed", url=broken.url),
                lambda _: [event],
                clock=lambda: clock["now"],
            )
            broken.document, broken.etag = feed(1, 2), '"v1"'
            await runner.poll_once()
            assert runner.status.state is SourceState.OK and await store.head(event.slug) == 2

            # the feed gains stories 3 to 30, but the answer is broken on the way
            broken.document, broken.etag, broken.mode = feed(*range(1, 31)), '"v2"', mode
            await runner.poll_once()
            status = runner.status
            assert status.state is SourceState.ERROR, (mode, status.last_error)
            assert broken.url in (status.last_error or "") and TRUNCATIONS[mode] in (status.last_error or "").lower()
            # not a single story of the broken half-document, and the validator of the good one is kept
            assert await store.head(event.slug) == 2 and status.etag == '"v1"'

            broken.mode = "whole"
            runner.poll_now()
            await runner.poll_once()
            assert runner.status.state is SourceState.OK and runner.status.etag == '"v2"'
            page = await store.page(event.slug, limit=100)
            assert sorted(str(i.title) for i in page.items) == sorted(f"Story {n}" for n in range(1, 31))
            assert await store.head(event.slug) == 30  # each story once
    finally:
        await store.close()


# -- helpers for a whole server (in this process, or a real `python app.py`) ----------------------------


def sources_yaml(path: Path, feed_url: str) -> Path:
    path.write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: FAULTS_WIRE_SECRET\n        role: editorial\n"
        f"      - id: feed\n        kind: feed\n        url: {feed_url}\n        role: editorial\n"
        "        interval: 0.3s\n"
    )
    return path


async def call(
    base: str, method: str, path: str, body: Any = None, token: str | None = None, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    sent.update(headers)
    async with aiohttp.ClientSession() as session:
        async with session.request(method, base + path, json=body, headers=sent, allow_redirects=False) as response:
            text = await response.text()
            try:
                answer: Any = json.loads(text)
            except ValueError:
                answer = text
            return response.status, answer, dict(response.headers)


def wire(n: int, *, size: int = 0) -> dict[str, Any]:
    text = f"Wire {n}: the breakaway has {n} minutes." + (" " + "x" * size if size else "")
    return {"id": f"w{n}", "url": f"https://wire.example/{n}", "text": text, "published_at": "2027-07-12T12:00:00Z"}


def signed(*items: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A push request as a sender makes it: the body and its signature headers."""
    body = json.dumps({"items": list(items)}).encode()
    ts = int(time.time())
    return body, {
        "Content-Type": "application/json",
        "X-Fil-Timestamp": str(ts),
        "X-Fil-Signature": sign(SECRET, ts, body),
    }


async def send(base: str, request: tuple[bytes, dict[str, str]]) -> tuple[int, Any, dict[str, str]]:
    body, headers = request
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/ingest/wire", data=body, headers=headers) as response:
            return response.status, await response.json(), dict(response.headers)


async def push(base: str, *items: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    return await send(base, signed(*items))


async def timeline(base: str) -> list[dict[str, Any]]:
    status, page, _ = await call(base, "GET", f"/api/events/{SLUG}/items?limit=200")
    assert status == 200, page
    return page["items"]  # type: ignore[no-any-return]


def label(item: dict[str, Any]) -> str:
    """A story's title; a wire item's or a desk post's text up to its first colon."""
    return str(item["title"] or item["text"].split(":")[0])


async def titles(base: str) -> list[str]:
    """The labels of the timeline's items, sorted: what is there, not in which order."""
    return sorted(label(i) for i in await timeline(base))


async def healthz(base: str) -> dict[str, Any]:
    status, health, _ = await call(base, "GET", "/healthz")
    assert status == 200, health
    return health  # type: ignore[no-any-return]


async def source_status(fil: RunningFil, source_id: str) -> dict[str, Any]:
    return next(s for s in (await fil.sources())["sources"] if s["id"] == source_id)


@dataclass
class Reader:
    """A reader's websocket held open through the fault, recording the seq of every change it is sent."""

    ws: ClientConnection
    hello: int
    seqs: list[int] = field(default_factory=list)

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message["type"] in ("upsert", "remove"):
                    self.seqs.append(int(message["seq"]))
        except ConnectionClosed:
            pass

    async def until(self, head: int) -> list[int]:
        await wait_for(_async(lambda: bool(self.seqs) and self.seqs[-1] >= head), f"the reader at seq {head}")
        return self.seqs


def _async(check: Any) -> Any:
    async def predicate() -> bool:
        return bool(check())

    return predicate


@contextlib.asynccontextmanager
async def reading(ws_base: str, since: int | None = None) -> AsyncIterator[Reader]:
    query = f"?since={since}" if since is not None else ""
    async with connect(f"{ws_base}/api/events/{SLUG}/live{query}") as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert hello["type"] == "hello"
        reader = Reader(ws, int(hello["seq"]))
        task = asyncio.create_task(reader.read())
        try:
            yield reader
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def assert_readers_resume_without_gaps(ws_base: str, live: Reader, head: int) -> None:
    """The reader that stayed connected saw every seq once; one resuming from where it started sees the same."""
    assert await live.until(head) == list(range(live.hello + 1, head + 1))
    async with reading(ws_base, since=live.hello) as resumed:
        assert await resumed.until(head) == list(range(live.hello + 1, head + 1))


# -- upstream storm, stall and truncation through the whole server --------------------------------------


async def test_an_upstream_storm_or_stall_is_named_and_the_next_good_poll_takes_everything(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAULTS_WIRE_SECRET", SECRET)
    url = upstream.url("/feed.xml")
    upstream.add("/feed.xml", feed(1, 2), etag="auto")
    fil = await start_fil(sources_yaml(tmp_path / "sources.yaml", url), tmp_path / "data", fetch_timeout=0.5)
    collection = fil.fil.collection
    assert collection is not None
    try:
        await wait_for(_async_titles(fil.base, 2), "the first poll")
        async with reading(fil.ws_base) as reader:
            faults = [
                ("a 5xx storm", dict(status=503, body=b"down for maintenance", content_type="text/plain"), "HTTP 503"),
                ("a stalled answer", dict(body=feed(1, 2, 3), delay=3.0), "timed out after 0.5s"),
                ("a trickle", dict(body=feed(1, 2, 3), chunk_size=8, chunk_delay=0.05), "timed out after 0.5s"),
                ("a 500 storm", dict(status=500, body=b"boom", content_type="text/plain"), "HTTP 500"),
            ]
            for what, answer, named in faults:
                upstream.add("/feed.xml", **answer)  # type: ignore[arg-type]
                before = (await source_status(fil, "feed")).get("last_error_at")
                collection.poll_now("feed")
                await wait_for(_async_error(fil, "feed", named, before), f"the poll into {what}")
                status = await source_status(fil, "feed")
                assert status["state"] in ("error", "backing off"), (what, status)
                assert named in status["last_error"] and url in status["last_error"], (what, status)
                health = await healthz(fil.base)
                assert health["status"] == "degraded" and health["sources_failing"] == ["feed"], (what, health)
                assert health["store"] == "ok"  # the failing part, and only it, is named
                assert await titles(fil.base) == ["Story 1", "Story 2"], what  # nothing stored is lost
            # the storm passes: one good poll takes every story the broken answers held back
            upstream.add("/feed.xml", feed(1, 2, 3, 4), etag="auto")
            collection.poll_now("feed")
            await wait_for(_async_titles(fil.base, 4), "the good poll")
            assert await titles(fil.base) == ["Story 1", "Story 2", "Story 3", "Story 4"]
            status = await source_status(fil, "feed")
            assert status["state"] == "ok" and status["error_count"] == 0
            health = await healthz(fil.base)
            assert health["status"] == "ok" and health["sources_failing"] == []
            await assert_readers_resume_without_gaps(fil.ws_base, reader, reader.hello + 2)
    finally:
        await fil.stop()


def _async_titles(base: str, count: int) -> Any:
    async def predicate() -> bool:
        return len(await timeline(base)) >= count

    return predicate


# -- SQLite full or locked: 503 naming the file, /healthz degraded, retried with nothing lost -------------


def sqlite_of(fil: RunningFil) -> SQLiteStore:
    inner = vars(fil.fil.store).get("_inner", fil.fil.store)  # under the timing wrapper of curation/metrics.py
    assert isinstance(inner, SQLiteStore)
    return inner


async def on_the_writer(store: SQLiteStore, sql: str) -> None:
    """Run `sql` on the store's own writer connection (a PRAGMA set on another connection would not apply)."""
    await store._write(lambda conn: conn.execute(sql).fetchall())


def default_max_page_count() -> int:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        return int(conn.execute("PRAGMA max_page_count").fetchone()[0])


@pytest.fixture
async def served(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("FAULTS_WIRE_SECRET", SECRET)
    upstream.add("/feed.xml", feed(1, 2), etag="auto")
    fil = await start_fil(sources_yaml(tmp_path / "sources.yaml", upstream.url("/feed.xml")), tmp_path / "data")
    try:
        await wait_for(_async_titles(fil.base, 2), "the first poll")
        yield fil
    finally:
        await fil.stop()


async def test_a_full_disk_answers_503_names_the_file_and_loses_nothing(
    served: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    fil, store = served, sqlite_of(served)
    token = await fil.token()
    posts = f"/api/events/{SLUG}/posts"
    async with reading(fil.ws_base) as reader:
        assert (await push(fil.base, wire(1, size=6000)))[0] == 202
        status, first, _ = await call(fil.base, "POST", posts, {"text": "Desk post 1"}, token)
        assert status == 201
        w1 = next(i for i in await timeline(fil.base) if i["text"].startswith("Wire 1"))

        # the disk fills up: SQLite may not add a single page to the file (the limit stays at its current size)
        await on_the_writer(store, "PRAGMA max_page_count = 1")
        upstream.add("/feed.xml", feed(1, 2, 3, 4, words=2000), etag="auto")
        w2 = signed(wire(2, size=20_000))
        status, answer, headers = await send(fil.base, w2)
        assert status == 503 and headers["Retry-After"], answer
        assert store.path in answer["error"] and "database or disk is full" in answer["error"]
        status, answer, headers = await call(fil.base, "POST", posts, {"text": "Desk post 2: " + "y" * 4900}, token)
        assert status == 503 and headers["Retry-After"], answer
        assert "store is unavailable" in answer["error"] and "database or disk is full" in answer["error"]
        pin = f"/api/events/{SLUG}/items/{w1['id']}/actions"
        status, answer, _ = await call(fil.base, "POST", pin, {"action": "pin"}, token)
        assert status == 503 and store.path in answer["error"], answer
        # the feed's poll fails to store too: its status says why, and no validator of that poll is kept
        await wait_for(_async_status(fil, "feed", "database or disk is full"), "the feed's status")
        feed_status = await source_status(fil, "feed")
        assert "store unavailable" in feed_status["last_error"] and store.path in feed_status["last_error"]
        assert "database or disk is full" in (await source_status(fil, "wire"))["last_error"]
        health = await healthz(fil.base)
        assert health["status"] == "degraded" and store.path in health["store"] and "full" in health["store"]
        assert len(await timeline(fil.base)) == 4  # reads go on: what was acknowledged is served

        # space again: the sender resends, the editor retries, the feed's next poll takes what it missed
        await on_the_writer(store, f"PRAGMA max_page_count = {default_max_page_count()}")
        assert (await send(fil.base, w2))[1] == {"accepted": 1}  # the very request that failed, sent again
        status, second, _ = await call(fil.base, "POST", posts, {"text": "Desk post 2: " + "y" * 4900}, token)
        assert status == 201
        assert (await call(fil.base, "POST", pin, {"action": "pin"}, token))[0] == 200
        await wait_for(_async_titles(fil.base, 8), "the feed's missed stories")
        items = await timeline(fil.base)
        texts = [label(i) for i in items]
        assert sorted(texts) == sorted(
            ["Story 1", "Story 2", "Story 3", "Story 4", "Wire 1", "Wire 2", "Desk post 1", "Desk post 2"]
        ), texts
        assert next(i for i in items if i["id"] == w1["id"])["pinned"] is True
        assert {first["item"]["id"], second["item"]["id"]} <= {i["id"] for i in items}
        head = (await call(fil.base, "GET", f"/api/events/{SLUG}/items"))[1]["seq"]
        await assert_readers_resume_without_gaps(fil.ws_base, reader, head)

    # /healthz names a failed write for a while after it (small writes pass on a nearly full disk), then clears
    health = await healthz(fil.base)
    assert health["status"] == "degraded" and "full" in health["store"]
    store.clock = lambda: time.monotonic() + WRITE_ERROR_WINDOW + 1
    health = await healthz(fil.base)
    assert health["status"] == "ok" and health["store"] == "ok", health


def _async_error(fil: RunningFil, source_id: str, text: str, before: str | None) -> Any:
    async def predicate() -> bool:
        status = await source_status(fil, source_id)
        return status.get("last_error_at") != before and text in (status.get("last_error") or "")

    return predicate


def _async_status(fil: RunningFil, source_id: str, text: str) -> Any:
    async def predicate() -> bool:
        return text in ((await source_status(fil, source_id)).get("last_error") or "")

    return predicate


async def test_a_locked_database_answers_503_names_the_file_and_loses_nothing(
    served: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    fil, store = served, sqlite_of(served)
    token = await fil.token()
    posts = f"/api/events/{SLUG}/posts"
    async with reading(fil.ws_base) as reader:
        assert (await push(fil.base, wire(1)))[0] == 202
        # another process holds the write lock past the busy timeout (shortened here from 30 s)
        await on_the_writer(store, "PRAGMA busy_timeout = 200")
        holder = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")
            upstream.add("/feed.xml", feed(1, 2, 3), etag="auto")
            w2 = signed(wire(2))
            status, answer, _ = await send(fil.base, w2)
            assert status == 503 and store.path in answer["error"] and "database is locked" in answer["error"]
            status, answer, _ = await call(fil.base, "POST", posts, {"text": "Desk post"}, token)
            assert status == 503 and "database is locked" in answer["error"], answer
            # a desk form too: a plain-text 503, not a 500
            async with aiohttp.ClientSession() as session:
                form = {"name": "ops", "password": PASSWORD}
                async with session.post(f"{fil.base}/editor/login", data=form, allow_redirects=False) as response:
                    assert response.status == 503 and "store is unavailable" in await response.text()
            await wait_for(_async_status(fil, "feed", "database is locked"), "the feed's status")
            health = await healthz(fil.base)
            assert health["status"] == "degraded" and store.path in health["store"] and "locked" in health["store"]
            assert len(await timeline(fil.base)) == 3  # readers are served all along
        finally:
            await asyncio.to_thread(holder.execute, "ROLLBACK")
            holder.close()
        assert (await send(fil.base, w2))[1] == {"accepted": 1}
        assert (await call(fil.base, "POST", posts, {"text": "Desk post"}, token))[0] == 201
        await wait_for(_async_titles(fil.base, 6), "the feed's missed story")
        assert await titles(fil.base) == ["Desk post", "Story 1", "Story 2", "Story 3", "Wire 1", "Wire 2"]
        head = (await call(fil.base, "GET", f"/api/events/{SLUG}/items"))[1]["seq"]
        await assert_readers_resume_without_gaps(fil.ws_base, reader, head)


# -- kill -9 in the middle of a burst of writes (a real `python app.py`) -----------------------------------


async def cli(store_url: str, *args: str, stdin: str = "") -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "app.py",
        *args,
        cwd=ROOT,
        env={**os.environ, "CURATION_STORE": store_url},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


@dataclass
class Acks:
    """What the server acknowledged (2xx) before it was killed."""

    wires: set[str] = field(default_factory=set)  # push item labels ("Wire 12")
    posts: set[str] = field(default_factory=set)  # desk post item ids
    actions: set[int] = field(default_factory=set)  # seqs of editor actions

    @property
    def total(self) -> int:
        return len(self.wires) + len(self.posts) + len(self.actions)


async def burst(base: str, token: str, target: str, worker: int, acks: Acks) -> None:
    """Push items, desk posts and actions one after another until the server goes away."""
    n = 0
    while True:
        n += 1
        try:
            kind = n % 3
            if kind == 0:
                numbers = [worker * 10_000 + n * 10 + k for k in range(2)]
                status, _, _ = await push(base, *[wire(m) for m in numbers])
                if status == 202:
                    acks.wires.update(f"Wire {m}" for m in numbers)
            elif kind == 1:
                status, made, _ = await call(
                    base, "POST", f"/api/events/{SLUG}/posts", {"text": f"Post {worker}-{n}"}, token
                )
                if status == 201:
                    acks.posts.add(made["item"]["id"])
            else:
                body = {"action": "highlight", "label": f"moment {worker}-{n}"}
                status, done, _ = await call(base, "POST", f"/api/events/{SLUG}/items/{target}/actions", body, token)
                if status == 200:
                    acks.actions.add(int(done["seq"]))
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return  # killed: whatever had no answer was never acknowledged


async def test_kill_9_in_a_burst_of_writes_loses_no_acknowledged_item_or_action(tmp_path: Path) -> None:
    from tests.test_restart import Process

    sources = tmp_path / "sources.yaml"
    sources.write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: FAULTS_WIRE_SECRET\n        role: editorial\n"
    )
    server = Process(sources, tmp_path / "data")
    server.env["FAULTS_WIRE_SECRET"] = SECRET
    await cli(server.env["CURATION_STORE"], "create-editor", "ops", stdin=PASSWORD + "\n")
    token = await cli(server.env["CURATION_STORE"], "create-token", "ops")
    ws_base = server.base.replace("http://", "ws://")
    await server.start()
    try:
        assert (await push(server.base, wire(0)))[0] == 202
        target = next(i["id"] for i in await timeline(server.base) if label(i) == "Wire 0")
        acks = Acks()
        async with reading(ws_base) as reader:
            workers = [asyncio.create_task(burst(server.base, token, target, w, acks)) for w in range(1, 5)]
            await wait_for(_async(lambda: acks.total >= 60), "60 acknowledged writes")
            await server.kill()  # SIGKILL while the four workers have requests in flight
            await asyncio.wait_for(asyncio.gather(*workers), WAIT)
        seen = list(reader.seqs)
        assert seen == list(range(reader.hello + 1, reader.hello + 1 + len(seen)))  # live: no gap, no repeat

        await server.start()
        items = await timeline(server.base)
        labels = {label(i) for i in items}
        assert acks.wires <= labels, sorted(acks.wires - labels)
        assert acks.posts <= {i["id"] for i in items}
        status, audit, _ = await call(server.base, "GET", f"/api/events/{SLUG}/audit", token=token)
        assert status == 200
        assert acks.actions <= {e["seq"] for e in audit["entries"]}, sorted(acks.actions)
        head = int((await call(server.base, "GET", f"/api/events/{SLUG}/items"))[1]["seq"])
        assert head >= max(acks.actions) and len(items) == len({i["id"] for i in items})
        # a reader resuming where the killed server left it gets the rest, once each, up to the head
        last = seen[-1] if seen else reader.hello
        async with reading(ws_base, since=last) as resumed:
            if head > last:
                assert await resumed.until(head) == list(range(last + 1, head + 1))
            else:  # every committed change had reached the reader before the kill
                assert head == last and resumed.hello == head
        print(f"kill -9 after {acks.total} acknowledged writes; reader saw seq {last}, head after restart {head}")
    finally:
        if server.proc is not None and server.proc.returncode is None:
            await server.kill()

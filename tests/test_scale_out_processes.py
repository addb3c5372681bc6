"""Real `python app.py` processes on one real redis-server: kill -9 of one, and Redis stopped a while.

A killed process's readers come back on the other with `since` and miss nothing; its sources are taken
over within the lease (short here). Redis stopped: pages still answer (their last good copy), open
websockets stay open, /healthz says degraded; Redis back: everyone reconnects by themselves, no
acknowledged editor action is lost (AOF), and readers go on without gaps or duplicates.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import free_port
from tests.redis_server import RedisServer
from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
SLUG = "stage-1"
WAIT = 20.0


class FilProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.env = {**env, "CURATION_PORT": str(self.port)}
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "app.py", cwd=ROOT, env=self.env, stdout=out, stderr=out
        )
        await until(self.healthy, f"{self.base} healthy ({self.log})")

    async def healthy(self) -> bool:
        assert self.proc is not None and self.proc.returncode is None, self.log.read_text()[-3000:]
        status, _ = await get(self.base + "/healthz")
        return status == 200

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()

    async def running(self, source: str) -> bool:
        """Whether this process collects `source` now (it holds the lease), from its /metrics."""
        _, text = await get(self.base + "/metrics")
        return re.search(rf'^fil_source_running\{{source="{source}"\}} 1(\.0)?$', text, re.M) is not None


async def get(url: str, **headers: str) -> tuple[int, str]:
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as response:
                return response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0, ""


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.05)


def feed(*numbers: int) -> bytes:
    return rss_document(
        [{"title": f"Story {n}", "link": f"https://news.example/{n}", "guid": f"g{n}"} for n in numbers]
    )


@pytest.fixture
async def cluster(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
) -> AsyncIterator[tuple[RedisServer, list[FilProcess]]]:
    upstream.add("/wire.xml", feed(1))
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        f"      - id: wire\n        kind: feed\n        url: {upstream.url('/wire.xml')}\n"
        "        role: editorial\n        interval: 0.3s\n"
    )
    (tmp_path / "redis").mkdir()
    redis = RedisServer(appendonly=True, folder=tmp_path / "redis", fsync="always")
    redis.start()
    env = dict(
        os.environ,
        CURATION_SOURCES=str(sources),
        CURATION_STORE=redis.url,
        CURATION_SECRET_KEY=secrets.token_hex(32),
        CURATION_ALLOW_PRIVATE_HOSTS="1",
        CURATION_MIN_POLL_INTERVAL="0.2s",
        CURATION_LEASE_TTL="1s",
        CURATION_LOG_LEVEL="warning",
    )
    env.pop("CURATION_DEMO", None)
    processes = [FilProcess(env, tmp_path / f"fil-{i}.log") for i in range(2)]
    try:
        for process in processes:
            await process.start()
        yield redis, processes
    finally:
        for process in processes:
            await process.stop()
        redis.close()


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))  # type: ignore[no-any-return]


async def stories(ws: ClientConnection, count: int) -> list[tuple[int, str]]:
    got: list[tuple[int, str]] = []
    while len(got) < count:
        message = await recv(ws)
        if message["type"] == "upsert":
            got.append((message["seq"], message["item"]["title"]))
    return got


async def test_kill_9_one_process_its_readers_resume_on_the_other_and_its_sources_move(
    cluster: tuple[RedisServer, list[FilProcess]],
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    _, processes = cluster
    await until(lambda: sum(1 for p in processes if p.proc) == 2, "both up")
    holders: list[FilProcess] = []

    async def one_holder() -> bool:
        holders[:] = [p for p in processes if await p.running("wire")]
        return len(holders) == 1

    await until(one_holder, "exactly one process collects the feed")
    holder = holders[0]
    other = next(p for p in processes if p is not holder)
    seen: list[tuple[int, str]] = []
    async with connect(f"{holder.ws}/api/events/{SLUG}/live?since=0") as ws:
        await recv(ws)  # hello
        seen += await stories(ws, 1)
        upstream.add("/wire.xml", feed(1, 2))
        seen += await stories(ws, 1)
        await holder.kill()
        with pytest.raises(ConnectionClosed):
            while True:
                await recv(ws)
    upstream.add("/wire.xml", feed(1, 2, 3))
    await until(lambda: other.running("wire"), "the other process takes the feed over")
    async with connect(f"{other.ws}/api/events/{SLUG}/live?since={seen[-1][0]}") as ws:
        assert (await recv(ws))["type"] == "hello"
        seen += await stories(ws, 1)
    assert [title for _, title in seen] == ["Story 1", "Story 2", "Story 3"]
    assert [seq for seq, _ in seen] == [seen[0][0], seen[0][0] + 1, seen[0][0] + 2]


async def test_redis_away_then_back_pages_and_sockets_ride_it_out(
    cluster: tuple[RedisServer, list[FilProcess]],
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    redis, (first, second) = cluster
    page_path = f"/events/{SLUG}"
    for process in (first, second):
        await until(lambda p=process: get(p.base + f"/api/events/{SLUG}/items"), "items")
    async with (
        connect(f"{first.ws}/api/events/{SLUG}/live?since=0") as on_first,
        connect(f"{second.ws}/api/events/{SLUG}/live?since=0") as on_second,
    ):
        for ws in (on_first, on_second):
            await recv(ws)
            (story,) = await stories(ws, 1)
        last = story[0]
        # an editor pins the story; Redis answered, so the pin must survive Redis being killed
        token = await editor_token(redis)
        items = json.loads((await get(first.base + f"/api/events/{SLUG}/items"))[1])["items"]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            path = f"{second.base}/api/events/{SLUG}/items/{items[0]['id']}/actions"
            async with session.post(path, json={"action": "pin"}) as response:
                assert response.status == 200
        for ws in (on_first, on_second):
            pinned = await recv(ws)
            assert pinned["item"]["pinned"] is True
        last = pinned["seq"]
        for process in (first, second):
            assert (await get(process.base + page_path))[0] == 200  # a good copy to fall back on
        redis.kill()
        for process in (first, second):
            status, body = await get(process.base + "/healthz")
            assert status == 200 and json.loads(body)["status"] == "degraded", body
            status, body = await get(process.base + page_path)
            assert status == 200 and "Story 1" in body
        for ws in (on_first, on_second):  # still open: nothing arrives, nothing closes
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)
        redis.start()
        for process in (first, second):
            await until(lambda p=process: _status(p), f"{process.base} reconnects to Redis by itself")
        upstream.add("/wire.xml", feed(1, 2))
        for ws in (on_first, on_second):
            assert await stories(ws, 1) == [(last + 1, "Story 2")]
    items = json.loads((await get(second.base + f"/api/events/{SLUG}/items"))[1])["items"]
    assert [(i["title"], i["pinned"]) for i in items] == [("Story 1", True), ("Story 2", False)]


async def editor_token(redis: RedisServer) -> str:
    from curation.auth import create_editor, create_token
    from curation.store import open_store

    store = open_store(redis.url)
    await store.open()
    try:
        await create_editor(store, "ops", "a long test password", "editor")  # type: ignore[arg-type]
        return await create_token(store, "ops")  # type: ignore[arg-type]
    finally:
        await store.close()


async def _status(process: FilProcess) -> bool:
    status, body = await get(process.base + "/healthz")
    return status == 200 and json.loads(body)["status"] == "ok"

"""A real `python app.py` process: kill -9 and restart on the same SQLite file loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

from tests.conftest import free_port
from tests.test_live_e2e import SLUG, item, next_message, write_sources
from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent


class Process:
    def __init__(self, sources: Path, data: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            CURATION_SOURCES=str(sources),
            CURATION_STORE=f"sqlite:///{data}/fil.db",
            CURATION_PORT=str(self.port),
            CURATION_ALLOW_PRIVATE_HOSTS="1",
            CURATION_MIN_POLL_INTERVAL="0.2s",
            CURATION_LOG_LEVEL="warning",
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "app.py", cwd=ROOT, env=self.env)
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                try:
                    async with session.get(f"{self.base}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.returncode is None, "app.py exited"
                await asyncio.sleep(0.05)
        raise AssertionError("app.py did not become healthy")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def items(self) -> dict[str, object]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.base}/api/events/{SLUG}/items") as response:
                return await response.json()  # type: ignore[no-any-return]

    async def wait_items(self, n: int) -> dict[str, object]:
        for _ in range(400):
            page = await self.items()
            if len(page["items"]) >= n:  # type: ignore[arg-type]
                return page
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {n} items")


async def process(tmp_path: Path, feed_url: str) -> Process:
    write_sources(tmp_path / "sources.yaml", feed_url)
    return Process(tmp_path / "sources.yaml", tmp_path / "data")


async def test_kill_9_and_restart_keeps_the_timeline_and_resume(
    upstream: FakeUpstream,  # noqa: F811
    tmp_path: Path,
) -> None:
    upstream.add("/feed.xml", rss_document([item(1, minutes_ago=5), item(2, minutes_ago=4)]), etag="auto")
    fil = await process(tmp_path, upstream.url("/feed.xml"))
    await fil.start()
    try:
        before = await fil.wait_items(2)
        async with connect(f"ws://127.0.0.1:{fil.port}/api/events/{SLUG}/live") as ws:
            seen = (await next_message(ws, "hello"))["seq"]
        upstream.route("/feed.xml").body = rss_document(
            [item(3, minutes_ago=3), item(1, minutes_ago=5), item(2, minutes_ago=4)]
        )
        acknowledged = await fil.wait_items(3)  # committed: the API serves it
        await fil.kill()

        await fil.start()
        after = await fil.items()
        assert after["items"] == acknowledged["items"]
        assert after["seq"] == acknowledged["seq"]
        assert [i["title"] for i in before["items"]] == ["Story 2", "Story 1"]  # type: ignore[index]
        async with connect(f"ws://127.0.0.1:{fil.port}/api/events/{SLUG}/live?since={seen}") as ws:
            hello = await next_message(ws, "hello")
            assert hello["seq"] == after["seq"]
            missed = await next_message(ws)
            assert missed["type"] == "upsert" and missed["seq"] == seen + 1
            assert missed["item"]["title"] == "Story 3"
    finally:
        if fil.proc is not None and fil.proc.returncode is None:
            await fil.kill()


async def test_sighup_reloads_sources_yaml(upstream: FakeUpstream, tmp_path: Path) -> None:  # noqa: F811
    upstream.add("/feed.xml", rss_document([item(1, minutes_ago=5)]))
    upstream.add("/wire.xml", rss_document([item(7, guid="wire-7", link="https://wire.example/7")]))
    fil = await process(tmp_path, upstream.url("/feed.xml"))
    fil.env["CURATION_RELOAD_INTERVAL"] = "1h"  # only the signal can make it reload in time
    await fil.start()
    try:
        await fil.wait_items(1)
        sources = tmp_path / "sources.yaml"
        sources.write_text(
            sources.read_text() + f"      - id: wire\n        kind: feed\n        url: {upstream.url('/wire.xml')}\n"
            "        role: journalist\n        interval: 0.3s\n"
        )
        assert fil.proc is not None
        fil.proc.send_signal(signal.SIGHUP)
        page = await fil.wait_items(2)
        assert "Story 7" in [i["title"] for i in page["items"]]  # type: ignore[attr-defined]
    finally:
        if fil.proc is not None and fil.proc.returncode is None:
            await fil.kill()

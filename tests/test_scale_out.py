"""Two Fils on one Redis: what any process takes in reaches the readers and desks of every process.

The two Fils here run in one test process but share nothing except Redis (each has its own store
connections, hub, subscription and collectors), which is what two processes on two machines share.
tests/test_scale_out_processes.py does the same with real `python app.py` processes and kill -9.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from curation.collectors.push import sign
from tests.conftest import RunningFil, start_fil
from tests.redis_server import RedisServer

SLUG = "stage-1"
SECRET = "scale-out-secret"
WAIT = 15.0


@pytest.fixture
async def pair(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RunningFil, RunningFil]]:
    monkeypatch.setenv("SCALE_WIRE_SECRET", SECRET)
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: SCALE_WIRE_SECRET\n        role: editorial\n"
        "      - id: tips\n        kind: push\n        secret_env: SCALE_WIRE_SECRET\n        role: other\n"
    )
    store = f"{redis_server.url}?prefix=pair-{secrets.token_hex(4)}:"
    key = secrets.token_hex(32)
    first = await start_fil(sources, tmp_path / "a", store=store, secret_key=key)
    second = await start_fil(sources, tmp_path / "b", store=store, secret_key=key)
    try:
        await until(lambda: bool(first.fil.cluster and first.fil.cluster.connected), "first subscribed")
        await until(lambda: bool(second.fil.cluster and second.fil.cluster.connected), "second subscribed")
        yield first, second
    finally:
        await first.stop()
        await second.stop()


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.02)


async def push(fil: RunningFil, source: str, *ids: str) -> None:
    items = [
        {"id": i, "url": f"https://wire.example/{i}", "text": f"Story {i}", "published_at": "2027-07-12T12:00:00Z"}
        for i in ids
    ]
    body = json.dumps({"items": items}).encode()
    ts = int(time.time())
    headers = {"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRET, ts, body)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fil.base}/api/ingest/{source}", data=body, headers=headers) as response:
            assert response.status == 202, await response.text()


async def call(fil: RunningFil, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.request(method, f"{fil.base}{path}", json=body) as response:
            assert response.status < 300, (path, response.status, await response.text())
            return await response.json()


async def frames(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    got = []
    for _ in range(count):
        got.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    return got


async def test_items_and_actions_from_either_process_reach_readers_of_both(pair: tuple[RunningFil, RunningFil]) -> None:
    first, second = pair
    async with (
        connect(f"{first.ws_base}/api/events/{SLUG}/live") as on_first,
        connect(f"{second.ws_base}/api/events/{SLUG}/live") as on_second,
    ):
        assert [m["type"] for m in await frames(on_first, 1) + await frames(on_second, 1)] == ["hello", "hello"]
        await push(first, "wire", "a")  # ingested by the first process
        await push(second, "wire", "b")  # and by the second
        for ws in (on_first, on_second):
            got = await frames(ws, 2)
            assert [(m["type"], m["item"]["text"]) for m in got] == [("upsert", "Story a"), ("upsert", "Story b")]
            assert got[1]["seq"] == got[0]["seq"] + 1  # one global sequence per event
        # an editor on the second process pins what the first took in: readers of both see it
        token = await second.token()
        items = (await call(first, "GET", f"/api/events/{SLUG}/items"))["items"]
        story_a = next(i for i in items if i["text"] == "Story a")
        await call(second, "POST", f"/api/events/{SLUG}/items/{story_a['id']}/actions", {"action": "pin"}, token)
        for ws in (on_first, on_second):
            (pinned,) = await frames(ws, 1)
            assert pinned["item"]["id"] == story_a["id"] and pinned["item"]["pinned"] is True
        # the header block, which lives outside the log, reaches the other process's readers too
        await call(first, "PUT", f"/api/events/{SLUG}/header", {"summary": "Km 50"}, await first.token())
        for ws in (on_first, on_second):
            (header,) = await frames(ws, 1)
            assert header["type"] == "header" and "Km 50" in header["header"]["summary_html"]


async def test_a_reader_resumes_on_the_other_process_without_gaps_or_duplicates(
    pair: tuple[RunningFil, RunningFil],
) -> None:
    first, second = pair
    seen: list[str] = []
    async with connect(f"{first.ws_base}/api/events/{SLUG}/live") as ws:
        (hello,) = await frames(ws, 1)
        await push(first, "wire", "a", "b")
        got = await frames(ws, 2)
        seen += [m["item"]["text"] for m in got]
        last = got[-1]["seq"]
    # while the reader is away, both processes take items in; then it comes back to the other one
    await push(first, "wire", "c")
    await push(second, "wire", "d")
    async with connect(f"{second.ws_base}/api/events/{SLUG}/live?since={last}") as ws:
        got = await frames(ws, 3)
        assert got[0]["type"] == "hello"
        seen += [m["item"]["text"] for m in got[1:]]
        assert [m["seq"] for m in got[1:]] == [last + 1, last + 2]
    assert seen == ["Story a", "Story b", "Story c", "Story d"]


async def test_queued_items_reach_desks_of_both_and_never_readers(pair: tuple[RunningFil, RunningFil]) -> None:
    first, second = pair
    token = await first.token()
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        connect(f"{second.ws_base}/api/events/{SLUG}/desk/live", additional_headers=headers) as desk,
        connect(f"{second.ws_base}/api/events/{SLUG}/live") as reader,
    ):
        await frames(desk, 1)
        await frames(reader, 1)
        await push(first, "tips", "t")  # role other: held for moderation
        (queued,) = await frames(desk, 1)
        assert queued["item"]["state"] == "queued"
        await call(
            first, "POST", f"/api/events/{SLUG}/items/{queued['item']['id']}/actions", {"action": "approve"}, token
        )
        (approved,) = await frames(desk, 1)
        assert approved["item"]["state"] == "published"
        (public,) = await frames(reader, 1)  # the reader never got the queued version
        assert public["item"]["id"] == queued["item"]["id"] and public["seq"] == approved["seq"]


async def test_sources_and_events_added_on_one_process_run_on_the_other(pair: tuple[RunningFil, RunningFil]) -> None:
    first, second = pair
    token = await first.token()
    from curation.auth import create_editor, create_token

    await create_editor(first.fil.store, "chief", "another long password", "admin")  # type: ignore[arg-type]
    admin = await create_token(first.fil.store, "chief")  # type: ignore[arg-type]
    await call(first, "POST", "/api/events", {"slug": "rest-day", "title": "Rest day"}, admin)
    source = {"id": "late", "kind": "push", "secret_env": "SCALE_WIRE_SECRET", "role": "editorial"}
    await call(first, "POST", "/api/events/rest-day/sources", source, token)
    await until(lambda: second.fil.config.event("rest-day") is not None, "the event reaches the other process")
    await until(lambda: "late" in second.fil.config.sources, "the source reaches the other process")
    await push(second, "late", "x")  # the other process takes pushes for it at once
    items = (await call(first, "GET", "/api/events/rest-day/items"))["items"]
    assert [i["text"] for i in items] == ["Story x"]


async def test_login_guesses_count_the_same_whichever_process_they_reach(pair: tuple[RunningFil, RunningFil]) -> None:
    first, second = pair
    await first.token()  # creates the editor "ops"

    async def login(fil: RunningFil, password: str) -> int:
        async with aiohttp.ClientSession() as session:
            form = {"name": "ops", "password": password}
            async with session.post(f"{fil.base}/editor/login", data=form, allow_redirects=False) as response:
                return response.status

    # five wrong guesses spread over both processes lock the account on both (not five on each)
    assert [await login((first, second)[i % 2], f"guess {i}") for i in range(5)] == [401] * 5
    assert await login(first, "a long test password") == 429
    assert await login(second, "a long test password") == 429


async def test_a_websub_verification_reaching_the_other_process_is_applied_by_the_holder(
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    """The hub calls back through the load balancer: its verification lands on a process that does not
    collect the feed; that process answers from the saved subscription and the holder applies it."""
    from tests.conftest import free_port
    from tests.fake_websub_hub import ATOM, FakeHub
    from tests.test_websub import TOPIC, websub
    from tests.upstreams import FakeUpstream, fixture

    async with FakeUpstream() as upstream, FakeHub() as hub:
        upstream.add("/videos.xml", fixture("youtube_channel_tagesschau.xml"), content_type=ATOM)
        sources = tmp_path / "sources.yaml"
        sources.write_text(
            f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
            f"      - id: desk\n        kind: feed\n        url: {upstream.url('/videos.xml')}\n"
            "        role: editorial\n        interval: 0.3s\n"
        )
        callback_port = free_port()  # every callback goes to the second process
        shared = dict(
            store=f"{redis_server.url}?prefix=ws-{secrets.token_hex(4)}:",
            secret_key=secrets.token_hex(32),
            public_url=f"http://127.0.0.1:{callback_port}",
        )
        first = await start_fil(sources, tmp_path / "a", **shared)
        second = await start_fil(sources, tmp_path / "b", port=callback_port, **shared)
        try:
            assert first.fil.collection is not None and first.fil.collection.runners["desk"].running
            assert second.fil.collection is not None and not second.fil.collection.runners["desk"].running
            await until(lambda: bool(second.fil.cluster and second.fil.cluster.connected), "subscribed")
            upstream.route("/videos.xml").headers["Link"] = f'<{hub.url}>; rel="hub"'  # the feed offers push now
            await until(lambda: any(v.confirmed for v in hub.verifications), "the hub's verification is confirmed")
            assert all(v.callback.startswith(shared["public_url"]) for v in hub.verifications)
            for _ in range(int(WAIT / 0.05)):
                if (await websub(first)).get("state") == "active":
                    break
                await asyncio.sleep(0.05)
            assert (await websub(first)).get("state") == "active"  # the holder applied it
            assert hub.subscription(TOPIC) is not None
        finally:
            await first.stop()
            await second.stop()

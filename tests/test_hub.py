"""The hub: one encoding per change, no waiting on slow readers, exact resume."""

from __future__ import annotations

import json

from curation.hub import Hub, text_frame
from curation.store import Store
from tests.conftest import T0, make_entry, make_event, make_source

EVENT = make_event()
DESK = make_source()


class FakeSink:
    """A reader whose socket buffer we control."""

    def __init__(self, limit: int = 10**9) -> None:
        self.frames: list[bytes] = []
        self.limit = limit
        self.alive = True

    def send(self, frames: list[bytes]) -> bool:
        if not self.alive:
            return False
        if sum(map(len, self.frames)) > self.limit:
            self.alive = False
            return False
        self.frames.extend(frames)
        return True

    def backlog(self) -> int:
        return 0

    async def drain(self) -> None:
        return None

    def messages(self) -> list[dict[str, object]]:
        out = []
        for frame in self.frames:
            size = frame[1]
            payload = frame[2:] if size < 126 else frame[4:] if size == 126 else frame[10:]
            out.append(json.loads(payload))
        return out


def test_text_frame_lengths() -> None:
    for size in (0, 125, 126, 65535, 65536):
        frame = text_frame(b"x" * size)
        assert frame[0] == 0x81
        assert len(frame) - size in (2, 4, 10)


async def test_each_change_is_encoded_once_for_every_reader(store: Store) -> None:
    hub = Hub(store)
    store.listen(hub.publish)
    readers = [FakeSink() for _ in range(50)]
    for sink in readers:
        assert await hub.join(EVENT.slug, sink, None)
    await store.ingest(EVENT, DESK, [make_entry("a")], now=T0)
    frames = [sink.frames[-1] for sink in readers]
    assert all(frame is frames[0] for frame in frames)  # the very same bytes object
    assert readers[0].messages()[-1]["type"] == "upsert"
    assert hub.deliveries == 50


async def test_a_slow_reader_is_dropped_and_the_others_still_get_everything(store: Store) -> None:
    hub = Hub(store)
    store.listen(hub.publish)
    slow, fast = FakeSink(limit=1), FakeSink()
    await hub.join(EVENT.slug, slow, None)
    await hub.join(EVENT.slug, fast, None)
    for i in range(5):
        await store.ingest(EVENT, DESK, [make_entry(f"e{i}")], now=T0)
    assert [m["seq"] for m in fast.messages()[1:]] == [1, 2, 3, 4, 5]
    assert not slow.alive and hub.dropped == 1 and hub.readers(EVENT.slug) == 1


async def test_resume_from_since_gets_exactly_what_was_missed(store: Store) -> None:
    hub = Hub(store)
    store.listen(hub.publish)
    for i in range(6):
        await store.ingest(EVENT, DESK, [make_entry(f"e{i}")], now=T0)
    sink = FakeSink()
    assert await hub.join(EVENT.slug, sink, 3)
    await store.ingest(EVENT, DESK, [make_entry("live")], now=T0)
    messages = sink.messages()
    assert messages[0] == {"type": "hello", "seq": 6}
    assert [m["seq"] for m in messages[1:]] == [4, 5, 6, 7]


async def test_resume_with_a_cold_hub_reads_the_store(store: Store) -> None:
    for i in range(4):
        await store.ingest(EVENT, DESK, [make_entry(f"e{i}")], now=T0)
    hub = Hub(store)  # started after the changes: its ring is empty
    store.listen(hub.publish)
    sink = FakeSink()
    await hub.join(EVENT.slug, sink, 1)
    assert [m["seq"] for m in sink.messages()[1:]] == [2, 3, 4]


async def test_a_reconnect_storm_reads_the_store_once_per_resume_point(store: Store) -> None:
    import asyncio

    for i in range(4):
        await store.ingest(EVENT, DESK, [make_entry(f"e{i}")], now=T0)
    hub = Hub(store)  # a cold hub: nothing in its ring, every resume needs the store
    reads: list[int] = []
    real = store.changes_since

    async def counted(event: str, since: int, *, limit: int = 1000) -> object:
        reads.append(since)
        await asyncio.sleep(0.01)  # the readers pile up while the read is under way
        return await real(event, since, limit=limit)

    hub.store = type("Counted", (), {"changes_since": staticmethod(counted), "head": store.head})()  # type: ignore[assignment]
    sinks = [FakeSink() for _ in range(300)]
    await asyncio.gather(*(hub.join(EVENT.slug, sink, 1 if i % 2 else 2) for i, sink in enumerate(sinks)))
    assert sorted(reads) == [1, 2]
    for i, sink in enumerate(sinks):
        assert [m["seq"] for m in sink.messages()[1:]] == ([2, 3, 4] if i % 2 else [3, 4])
    # a reader that leaves while the read is under way takes nobody's replay with it
    waiting = asyncio.ensure_future(hub.join(EVENT.slug, FakeSink(), 0))
    staying = FakeSink()
    together = asyncio.ensure_future(hub.join(EVENT.slug, staying, 0))
    await asyncio.sleep(0)
    waiting.cancel()
    await together
    assert [m["seq"] for m in staying.messages()[1:]] == [1, 2, 3, 4]


async def test_since_too_old_or_in_the_future_or_bogus_resets(store: Store) -> None:
    hub = Hub(store)
    store.listen(hub.publish)
    for i in range(120):  # the fixture store keeps 50 changes
        await store.ingest(EVENT, DESK, [make_entry(f"e{i}")], now=T0)
    hub.channels.clear()  # forget the ring so the store decides
    for since in (1, 500, -1):
        sink = FakeSink()
        assert await hub.join(EVENT.slug, sink, since)
        assert [m["type"] for m in sink.messages()] == ["hello", "reset"]
        await store.ingest(EVENT, DESK, [make_entry(f"after-{since}")], now=T0)
        assert sink.messages()[-1]["type"] == "upsert"  # and it stays connected for live changes


async def test_queued_changes_are_gaps_not_frames(store: Store) -> None:
    from dataclasses import replace

    from curation.models import Moderation

    hub = Hub(store)
    store.listen(hub.publish)
    sink = FakeSink()
    await hub.join(EVENT.slug, sink, None)
    await store.ingest(EVENT, replace(DESK, moderation=Moderation.QUEUE), [make_entry("held")], now=T0)
    await store.ingest(EVENT, make_source("wire"), [make_entry("shown")], now=T0)
    assert [m.get("seq") for m in sink.messages()] == [0, 2]


async def test_the_latest_header_reaches_readers_who_join_later(store: Store) -> None:
    hub = Hub(store)
    store.listen(hub.publish)
    present = FakeSink()
    await hub.join(EVENT.slug, present, None)
    assert hub.send_all(EVENT.slug, {"type": "header", "header": {"summary": "v1"}}) == 1
    assert hub.send_all(EVENT.slug, {"type": "header", "header": {"summary": "v2"}}) == 1
    late = FakeSink()
    await hub.join(EVENT.slug, late, 0)
    assert [m["type"] for m in late.messages()] == ["hello", "header"]
    assert late.messages()[1]["header"] == {"summary": "v2"}

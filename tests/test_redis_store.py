"""What only the Redis backend promises: several processes writing one event at once, a key prefix per Fil,
a store that outlives its processes, clear errors when Redis is not there, and the per-event channel."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from curation.errors import StoreError, VersionConflict
from curation.store import Store, open_store
from curation.store.accounts import accounts_of
from curation.store.redis import RedisStore
from tests.conftest import T0, free_port, make_entry, make_event, make_source
from tests.redis_server import RedisServer

EVENT = make_event(sources=("desk", "wire"))
DESK = make_source("desk")
WIRE = make_source("wire")
ROOT = Path(__file__).resolve().parent.parent

Opener = Callable[..., Awaitable[Store]]


@pytest.fixture
async def opened() -> AsyncIterator[Opener]:
    """Open stores (each one stands for a Fil process) and close them all at the end."""
    stores: list[Store] = []

    async def open_(url: str, **options: object) -> Store:
        store = open_store(url, **options)  # type: ignore[arg-type]
        await store.open()
        stores.append(store)
        return store

    yield open_
    for store in stores:
        await store.close()


async def test_two_writers_at_once_make_one_item_per_entry_and_never_reuse_a_seq(
    redis_url: str, opened: Opener
) -> None:
    first, second = await opened(redis_url), await opened(redis_url)
    entries = [make_entry(f"e{i:02}", published=T0 + timedelta(minutes=i)) for i in range(30)]
    batches = [entries[i : i + 5] for i in range(0, 30, 5)]
    results = await asyncio.gather(
        *(
            store.ingest(EVENT, DESK, batch, now=T0 + timedelta(hours=1))
            for batch in batches
            for store in (first, second)
        ),
        *(store.ingest(EVENT, DESK, list(reversed(entries)), now=T0 + timedelta(hours=1)) for store in (first, second)),
    )
    written = [c for changes in results for c in changes]
    assert sorted(c.seq for c in written) == list(range(1, 31))
    assert len({c.item_id for c in written}) == 30
    page = await first.page(EVENT.slug, limit=100)
    assert [i.key for i in page.items] == [f"e{i:02}" for i in reversed(range(30))] and page.seq == 30


async def test_a_stale_version_loses_even_when_both_editors_act_at_the_same_instant(
    redis_url: str, opened: Opener
) -> None:
    first, second = await opened(redis_url), await opened(redis_url)
    (change,) = await first.ingest(EVENT, WIRE, [make_entry("a")], now=T0)
    results = await asyncio.gather(
        first.act(EVENT.slug, change.item_id, "hide", editor="ana", version=1, now=T0),
        second.act(EVENT.slug, change.item_id, "pin", editor="ben", version=1, now=T0),
        return_exceptions=True,
    )
    assert sum(isinstance(r, VersionConflict) for r in results) == 1
    assert sum(isinstance(r, tuple) for r in results) == 1
    item = await second.get_item(EVENT.slug, change.item_id)
    assert item is not None and item.version == 2
    assert len(await first.audit(EVENT.slug)) == 1


WRITER = """
import asyncio, sys
from datetime import timedelta
from curation.store import open_store
from tests.conftest import T0, make_entry, make_event, make_source

async def main(url: str, name: str, item_id: str) -> None:
    store = open_store(url)
    await store.open()
    client = store._redis()
    await client.incr("race:ready")
    while not await client.exists("race:go"):
        await asyncio.sleep(0.005)
    event, source = make_event(sources=("desk",)), make_source("desk")
    entries = [make_entry(f"e{i:02}", published=T0 + timedelta(minutes=i)) for i in range(30)]
    for n in range(20):
        await store.ingest(event, source, entries[n % 10 * 3 : n % 10 * 3 + 3], now=T0)
        await store.act(event.slug, item_id, "note", editor=name, text=f"{name} {n}", now=T0)
    await store.close()

asyncio.run(main(*sys.argv[1:4]))
"""


async def test_processes_racing_on_one_event_lose_no_update(redis_url: str, opened: Opener) -> None:
    store = await opened(redis_url)
    (seed,) = await store.ingest(EVENT, DESK, [make_entry("seed", published=T0 + timedelta(hours=1))], now=T0)
    prefix = redis_url.partition("prefix=")[2]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.replace("race:", prefix + "race:"), redis_url, name, seed.item_id], env=env
        )
        for name in ("one", "two")
    ]
    client = store._redis()  # type: ignore[attr-defined]
    try:
        for _ in range(1500):
            if int(await client.get(prefix + "race:ready") or 0) == 2 or any(w.poll() is not None for w in writers):
                break
            await asyncio.sleep(0.02)
        await client.set(prefix + "race:go", "1")
        for writer in writers:
            assert await asyncio.to_thread(writer.wait, 120) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
    item = await store.get_item(EVENT.slug, seed.item_id)
    assert item is not None and item.version == 1 + 40  # every note of both processes landed
    page = await store.page(EVENT.slug, limit=100)
    assert len(page.items) == 31 and len({i.key for i in page.items}) == 31
    log = await store.changes_since(EVENT.slug, 0)
    assert log is not None and [c.seq for c in log] == list(range(1, 1 + 30 + 40 + 1))
    trail = await store.audit(EVENT.slug, limit=1000)
    assert len(trail) == 40 and len({a.id for a in trail}) == 40


async def test_scheduled_posts_are_published_once_when_every_process_checks(redis_url: str, opened: Opener) -> None:
    from curation import posts

    stores = [await opened(redis_url) for _ in range(3)]
    for n in range(5):
        post = posts.Post(text=f"Later {n}", publish_at=T0 + timedelta(minutes=n + 1))
        item = posts.new_item(post, event=EVENT.slug, editor="ana", key=f"k{n}", label="Newsroom", now=T0)
        await stores[0].add_post(item, editor="ana", now=T0)
    results = await asyncio.gather(*(s.publish_due(now=T0 + timedelta(hours=1)) for s in stores for _ in range(3)))
    published = [c for changes in results for c in changes]
    assert sorted(c.item_id for c in published) == [f"desk-k{n}" for n in range(5)]
    assert sorted(c.seq for c in published) == [6, 7, 8, 9, 10]


async def test_a_key_prefix_keeps_two_fils_apart_on_one_redis(redis_server: RedisServer, opened: Opener) -> None:
    ours = await opened(f"{redis_server.url}?prefix=fil-a:")
    theirs = await opened(f"{redis_server.url}?prefix=fil-b:")
    await ours.ingest(EVENT, DESK, [make_entry("a")], now=T0)
    assert (await theirs.page(EVENT.slug)).items == [] and await theirs.head(EVENT.slug) == 0
    client = ours._redis()  # type: ignore[attr-defined]
    assert all(key.startswith("fil-a:") for key in await client.keys("*fil-a*"))
    default = open_store(redis_server.url)
    assert isinstance(default, RedisStore) and default.prefix == "fil:"


async def test_everything_survives_the_processes_that_wrote_it(redis_url: str, opened: Opener) -> None:
    first = await opened(redis_url)
    (change,) = await first.ingest(EVENT, DESK, [make_entry("a")], now=T0)
    await first.act(EVENT.slug, change.item_id, "pin", editor="ana", now=T0)
    await accounts_of(first).put_editor("alice", "h", "editor", now=T0)
    await first.close()
    second = await opened(redis_url)
    assert [i.pinned for i in (await second.page(EVENT.slug)).items] == [True]
    assert await second.changes_since(EVENT.slug, 0) is not None and await second.head(EVENT.slug) == 2
    assert (await accounts_of(second).get_editor("alice")) is not None
    # the next seq continues the log, whoever writes it
    (later,) = await second.ingest(EVENT, DESK, [make_entry("b")], now=T0)
    assert later.seq == 3


async def test_a_newer_schema_is_refused(redis_url: str, opened: Opener) -> None:
    store = await opened(redis_url)
    prefix = redis_url.partition("prefix=")[2]
    await store._redis().hset(f"{prefix}meta", "schema_version", "99")  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        await opened(redis_url)


async def test_no_redis_there_is_a_clear_error_without_the_password() -> None:
    store = open_store(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError) as error:
        await store.open()
    assert "cannot reach Redis at redis://:***@127.0.0.1:" in str(error.value)
    assert "hunter2" not in str(error.value)
    with pytest.raises(ValueError, match="CURATION_STORE"):
        open_store("redis://127.0.0.1:notaport/0")
    with pytest.raises(StoreError, match="not opened"):
        await store.head(EVENT.slug)


async def test_redis_stopping_mid_run_is_a_store_error_not_a_crash(opened: Opener) -> None:
    with RedisServer() as server:
        store = await opened(server.url)
        await store.ingest(EVENT, DESK, [make_entry("a")], now=T0)
        server.stop()
        with pytest.raises(StoreError):
            await store.ingest(EVENT, DESK, [make_entry("b")], now=T0)
        with pytest.raises(StoreError):
            await store.page(EVENT.slug)


async def test_hostile_resume_points_reset_instead_of_failing(redis_url: str, opened: Opener) -> None:
    store = await opened(redis_url)
    await store.ingest(EVENT, DESK, [make_entry("a")], now=T0)
    assert await store.changes_since(EVENT.slug, 10**30) is None
    assert await store.changes_since(EVENT.slug, -5) is None
    assert await store.changes_since(EVENT.slug, 0, limit=0) == []


async def test_listeners_hear_this_process_and_the_channel_tells_the_others(redis_url: str, opened: Opener) -> None:
    ours, theirs = await opened(redis_url), await opened(redis_url)
    heard: list[int] = []
    ours.listen(lambda changes: heard.extend(c.seq for c in changes))
    assert isinstance(ours, RedisStore)
    client: Redis = ours._redis()
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(f"{ours.prefix}changes:{EVENT.slug}")
        await ours.ingest(EVENT, DESK, [make_entry("a"), make_entry("b")], now=T0)
        await theirs.ingest(EVENT, DESK, [make_entry("c")], now=T0)
        heads = []
        for _ in range(100):  # the subscribe confirmation comes first, as a None
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            if message is not None:
                heads.append(message["data"])
            if len(heads) == 2:
                break
    assert heads == ["2", "3"]
    assert heard == [1, 2]  # the other process's change reaches readers through the hub's fan-out (later)

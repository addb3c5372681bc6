"""Each active source is collected by one process at a time; a dead holder's sources are taken over.

Two Collections over one store and one set of leases stand for two Fil processes (tests/test_scale_out.py
runs real processes on Redis). Lease durations are short settings, so takeovers happen in well under a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from curation.collectors import CollectorContext
from curation.collectors.bluesky import BlueskyCollector
from curation.collectors.fetch import Fetcher
from curation.collectors.leases import LocalLeases
from curation.collectors.runner import Collection
from curation.models import Config, SourceKind
from curation.store import Store
from tests.conftest import make_event, make_source
from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

TTL = 0.3
WAIT = 10.0


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(allow_private=True, total_timeout=5, connect_timeout=2, per_host_limit=0) as f:
        yield f


def doc(*numbers: int) -> bytes:
    return rss_document(
        [{"title": f"Story {n}", "link": f"https://news.example/{n}", "guid": f"g{n}"} for n in numbers]
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting: {what}")


def config(url: str) -> Config:
    source = make_source("wire", url=url, interval=0.2)
    return Config(path="test", events=(make_event(sources=("wire",)),), sources={"wire": source})


async def kill(collection: Collection) -> None:
    """What kill -9 leaves behind: the runners stop, nothing is released, the leases just run out."""
    assert collection._lease_task is not None
    collection._lease_task.cancel()
    for runner in collection.runners.values():
        await runner.stop()


async def test_one_process_collects_and_another_takes_over_when_it_dies(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/wire.xml", doc(1))
    leases = LocalLeases()
    first, second = (
        Collection(store, CollectorContext(fetcher), leases=leases, lease_ttl=TTL, owner=name) for name in ("a", "b")
    )
    await first.apply(config(upstream.url("/wire.xml")))
    await second.apply(config(upstream.url("/wire.xml")))
    try:
        assert first.runners["wire"].running and not second.runners["wire"].running
        await until(lambda: first.statuses["wire"].items_seen == 1, "the holder imports the feed")
        # the other process shows the holder's status without polling itself
        await until(lambda: second.statuses["wire"].items_seen == 1, "the status reaches the other process")
        assert not second.runners["wire"].running
        await kill(first)
        upstream.add("/wire.xml", doc(1, 2))
        await until(lambda: second.runners["wire"].running, "the lease is taken over")
        await until(lambda: (second.statuses["wire"].items_seen) == 2, "the new holder goes on from the saved state")
        page = await store.page("stage-1")
        assert sorted(i.title or "" for i in page.items) == ["Story 1", "Story 2"]  # nothing twice
    finally:
        await first.stop()
        await second.stop()


async def test_a_clean_shutdown_hands_sources_over_at_once(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/wire.xml", doc(1))
    leases = LocalLeases()
    # a long lease: only the release on stop can explain a quick takeover
    first, second = (
        Collection(store, CollectorContext(fetcher), leases=leases, lease_ttl=60, owner=name) for name in ("a", "b")
    )
    await first.apply(config(upstream.url("/wire.xml")))
    await second.apply(config(upstream.url("/wire.xml")))
    try:
        assert first.runners["wire"].running and not second.runners["wire"].running
        await first.stop()
        await second.renew()
        assert second.runners["wire"].running
    finally:
        await second.stop()


async def test_a_holder_that_lost_its_lease_stops_collecting(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/wire.xml", doc(1))
    now = [0.0]
    leases = LocalLeases(clock=lambda: now[0])
    first, second = (
        Collection(store, CollectorContext(fetcher), leases=leases, lease_ttl=60, owner=name) for name in ("a", "b")
    )
    await first.apply(config(upstream.url("/wire.xml")))
    await second.apply(config(upstream.url("/wire.xml")))
    try:
        now[0] = 61.0  # the first process was paused past its lease: the second claims it
        await second.renew()
        assert second.runners["wire"].running
        await first.renew()
        assert not first.runners["wire"].running and "source:wire" not in first.held
    finally:
        await first.stop()
        await second.stop()


def test_bluesky_accounts_on_one_jetstream_are_held_together(fetcher: Fetcher) -> None:
    collector = BlueskyCollector(CollectorContext(fetcher))
    rider = make_source("rider", kind=SourceKind.BLUESKY, url=None, options={"actor": "rider.bsky.social"})
    team = make_source("team", kind=SourceKind.BLUESKY, url=None, options={"actor": "team.bsky.social"})
    tag = make_source("tag", kind=SourceKind.BLUESKY, url=None, options={"hashtag": "TDF", "auth_env": "X"})
    assert collector.lease_key(rider) == collector.lease_key(team)
    assert collector.lease_key(rider).startswith("jetstream:wss://")
    assert collector.lease_key(tag) == "source:tag"

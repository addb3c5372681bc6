"""The source runner: each outcome of a poll becomes a visible status and the right next poll."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from curation.collectors import CollectorContext
from curation.collectors.feed import FeedCollector
from curation.collectors.fetch import Fetcher
from curation.collectors.runner import SourceRunner, backfill
from curation.models import SourceState, SourceStatus
from curation.store import Store
from tests.conftest import make_entry, make_event, make_source
from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

NOW = datetime(2027, 7, 12, 12, 0, tzinfo=UTC)
EVENT = make_event()


def doc(*numbers: int) -> bytes:
    return rss_document(
        [{"title": f"Story {n}", "link": f"https://news.example/{n}", "guid": f"g{n}"} for n in numbers]
    )


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(allow_private=True, total_timeout=5, connect_timeout=2, per_host_limit=0) as f:
        yield f


def runner_for(store: Store, fetcher: Fetcher, url: str, *, interval: float = 60.0, backfill: int = 20) -> SourceRunner:
    source = make_source("desk", url=url, interval=interval, backfill=backfill)
    status = SourceStatus(id=source.id, kind="feed", url=url)
    return SourceRunner(
        source,
        FeedCollector(CollectorContext(fetcher)),
        store,
        status,
        lambda _: [EVENT],
        clock=lambda: NOW,
        rng=random.Random(1),
    )


async def test_success_stores_items_and_schedules_at_the_interval(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/feed.xml", doc(1, 2), etag="auto")
    runner = runner_for(store, fetcher, upstream.url("/feed.xml"))
    await runner.poll_once()
    status = runner.status
    assert status.state is SourceState.OK and status.items_seen == 2 and status.imported
    assert status.etag and status.last_success_at == NOW
    assert timedelta(seconds=60) <= status.next_poll_at - NOW <= timedelta(seconds=66)  # type: ignore[operator]
    await runner.poll_once()
    assert upstream.served("/feed.xml", 304) == 1 and await store.head(EVENT.slug) == 2
    saved = await store.load_statuses()
    assert saved["desk"].etag == status.etag  # validators survive a restart


async def test_failures_back_off_exponentially_and_recover(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.storm("/feed.xml", 3, doc(1))
    runner = runner_for(store, fetcher, upstream.url("/feed.xml"))
    delays = []
    for _ in range(3):
        await runner.poll_once()
        delays.append((runner.status.next_poll_at - NOW).total_seconds())  # type: ignore[operator]
    assert runner.status.state is SourceState.BACKING_OFF and runner.status.error_count == 3
    assert "500" in (runner.status.last_error or "") and upstream.url("/feed.xml") in (runner.status.last_error or "")
    assert delays[0] < delays[1] < delays[2] and delays[2] >= 8 * 60
    await runner.poll_once()
    assert runner.status.state is SourceState.OK and runner.status.error_count == 0
    assert runner.status.last_error  # the last error stays readable after recovery


async def test_429_honours_retry_after(store: Store, fetcher: Fetcher, upstream: FakeUpstream) -> None:  # noqa: F811
    upstream.retry_later("/feed.xml", retry_after="3600")
    runner = runner_for(store, fetcher, upstream.url("/feed.xml"))
    await runner.poll_once()
    assert runner.status.state is SourceState.ERROR
    assert (runner.status.next_poll_at - NOW).total_seconds() >= 3600  # type: ignore[operator]


async def test_410_marks_gone_and_stops(store: Store, fetcher: Fetcher, upstream: FakeUpstream) -> None:  # noqa: F811
    upstream.gone("/feed.xml")
    runner = runner_for(store, fetcher, upstream.url("/feed.xml"), interval=0.01)
    await runner.run()  # returns by itself: a gone source is not polled again
    assert runner.status.state is SourceState.GONE and runner.status.next_poll_at is None
    assert upstream.hits("/feed.xml") == 1


async def test_permanent_redirects_move_the_source_and_temporary_ones_do_not(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/new.xml", doc(1))
    upstream.redirect("/moved", "/new.xml", status=301)
    upstream.redirect("/temp", "/new.xml", status=302)
    moved = runner_for(store, fetcher, upstream.url("/moved"))
    await moved.poll_once()
    assert moved.status.moved_to == upstream.url("/new.xml")
    temp = runner_for(store, fetcher, upstream.url("/temp"))
    await temp.poll_once()
    assert temp.status.moved_to is None


async def test_a_document_that_is_not_a_feed_is_an_error_not_a_crash(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    upstream.add("/feed.xml", b"<html><body>Maintenance</body></html>", content_type="text/html")
    runner = runner_for(store, fetcher, upstream.url("/feed.xml"))
    await runner.poll_once()
    assert runner.status.state is SourceState.ERROR and runner.status.last_error


async def test_first_import_takes_the_newest_backfill_and_never_the_rest(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    items = [
        {
            "title": f"Story {n}",
            "link": f"https://news.example/{n}",
            "guid": f"g{n}",
            "pubDate": f"0{n} Jul 2027 12:00:00 GMT",
        }
        for n in range(1, 6)
    ]
    upstream.add("/feed.xml", rss_document(items))
    runner = runner_for(store, fetcher, upstream.url("/feed.xml"), backfill=2)
    await runner.poll_once()
    await runner.poll_once()
    page = await store.page(EVENT.slug)
    assert [i.title for i in page.items] == ["Story 5", "Story 4"]


def test_backfill_orders_undated_entries_first() -> None:
    entries = [make_entry("old", published=NOW - timedelta(days=1)), make_entry("undated", published=None)]
    taken, rest = backfill(entries, 1)
    assert [e.key for e in taken] == ["undated"] and rest == ["old"]


async def test_a_store_outage_loses_nothing_and_does_not_back_the_source_off(
    store: Store,
    fetcher: Fetcher,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    from curation.errors import StoreError

    upstream.add("/feed.xml", doc(1, 2), etag="auto")
    runner = runner_for(store, fetcher, upstream.url("/feed.xml"))
    real_ingest = store.ingest
    calls = 0

    async def failing_once(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreError("redis://127.0.0.1:6379/0: Connection refused")
        return await real_ingest(*args, **kwargs)  # type: ignore[arg-type]

    runner.store = failing_once_store = type("Outage", (), {})()  # a store whose first write fails
    failing_once_store.ingest = failing_once  # type: ignore[attr-defined]
    failing_once_store.save_status = store.save_status  # type: ignore[attr-defined]
    await runner.poll_once()
    status = runner.status
    # nothing kept: not the ETag either, or the next poll would be told "not modified" and lose the entries
    assert status.etag is None and status.error_count == 0 and "store unavailable" in (status.last_error or "")
    assert timedelta(seconds=60) <= status.next_poll_at - NOW <= timedelta(seconds=66)  # type: ignore[operator]
    await runner.poll_once()
    assert upstream.served("/feed.xml", 304) == 0 and await store.head(EVENT.slug) == 2
    assert status.etag is not None and status.items_seen == 2

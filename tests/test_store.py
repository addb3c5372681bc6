"""The Store contract, run against every backend in the `store` fixture."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from curation.models import Change, Moderation, Order
from curation.store import Store
from tests.conftest import T0, make_entry, make_event, make_source

EVENT = make_event(sources=("desk", "wire"))
DESK = make_source("desk")
WIRE = make_source("wire")


async def test_new_entries_become_items_with_growing_seq(store: Store) -> None:
    entries = [make_entry(f"e{i}", published=T0 + timedelta(minutes=i)) for i in range(3)]
    changes = await store.ingest(EVENT, DESK, entries, now=T0 + timedelta(hours=1))
    assert [c.seq for c in changes] == [1, 2, 3]
    assert all(c.op == "upsert" and c.public for c in changes)
    page = await store.page(EVENT.slug)
    assert [i.title for i in page.items] == ["Title e2", "Title e1", "Title e0"]
    assert page.seq == 3 and page.next is None
    assert await store.head(EVENT.slug) == 3


async def test_the_same_document_twice_writes_nothing(store: Store) -> None:
    entries = [make_entry("a"), make_entry("b")]
    await store.ingest(EVENT, DESK, entries, now=T0)
    assert await store.ingest(EVENT, DESK, entries, now=T0 + timedelta(minutes=1)) == []
    assert await store.head(EVENT.slug) == 2


async def test_changed_content_updates_in_place(store: Store) -> None:
    entries = [make_entry("a"), make_entry("b", published=T0 + timedelta(minutes=5))]
    await store.ingest(EVENT, DESK, entries, now=T0 + timedelta(minutes=10))
    later = T0 + timedelta(hours=1)
    (change,) = await store.ingest(EVENT, DESK, [make_entry("a", text="Corrected body")], now=later)
    assert change.op == "upsert" and change.item is not None
    assert change.item.version == 2 and change.item.text == "Corrected body"
    assert change.item.updated_at == later
    page = await store.page(EVENT.slug)
    # the update keeps its place: b is newer and stays above
    assert [i.key for i in page.items] == ["b", "a"]
    assert page.items[1].published_at == T0


async def test_hash_only_updates_are_capped(store: Store) -> None:
    await store.ingest(EVENT, DESK, [make_entry("a")], now=T0)
    written = 0
    for n in range(40):
        written += len(await store.ingest(EVENT, DESK, [make_entry("a", text=f"churn {n}")], now=T0))
    assert written == 24


async def test_same_canonical_url_from_two_sources_is_one_item(store: Store) -> None:
    await store.ingest(EVENT, DESK, [make_entry("a", url="https://news.example/story?utm_source=x")], now=T0)
    changes = await store.ingest(EVENT, WIRE, [make_entry("other-key", url="https://NEWS.example/story")], now=T0)
    assert changes == []
    page = await store.page(EVENT.slug)
    assert len(page.items) == 1 and page.items[0].source_id == "desk"


async def test_queued_items_take_a_seq_but_readers_never_see_them(store: Store) -> None:
    held = dataclasses.replace(WIRE, moderation=Moderation.QUEUE)
    (change,) = await store.ingest(EVENT, held, [make_entry("q")], now=T0)
    assert change.seq == 1 and not change.public and change.message is None
    assert (await store.page(EVENT.slug)).items == []
    since = await store.changes_since(EVENT.slug, 0)
    assert since is not None and [c.public for c in since] == [False]


async def test_blocked_keywords_reject_and_include_exclude_filter(store: Store) -> None:
    event = dataclasses.replace(EVENT, keywords_block=("casino",))
    picky = dataclasses.replace(DESK, include=("tour",), exclude=("doping",))
    entries = [
        make_entry("1", title="Tour: breakaway"),
        make_entry("2", title="Tour casino advert"),
        make_entry("3", title="Football"),
        make_entry("4", title="Tour doping rumour"),
    ]
    changes = await store.ingest(event, picky, entries, now=T0)
    assert [(c.item_id, c.public) for c in changes][0][1] is True
    assert len(changes) == 2  # 3 and 4 never stored; 2 stored as rejected
    assert [i.title for i in (await store.page(EVENT.slug)).items] == ["Tour: breakaway"]


async def test_future_dates_never_lift_an_item_and_missing_dates_use_first_seen(store: Store) -> None:
    now = T0
    entries = [
        make_entry("future", published=now + timedelta(days=2)),
        make_entry("undated", published=None),
        make_entry("old", published=now - timedelta(hours=3)),
    ]
    await store.ingest(EVENT, DESK, entries, now=now)
    later = now + timedelta(minutes=1)
    await store.ingest(EVENT, DESK, [make_entry("fresh", published=later)], now=later)
    page = await store.page(EVENT.slug)
    assert [i.key for i in page.items][0] == "fresh"
    by_key = {i.key: i for i in page.items}
    assert by_key["future"].published_at == now  # shown at first-seen time
    assert by_key["undated"].published_at == now and by_key["undated"].first_seen_at == now


async def test_back_dated_item_arriving_late_is_a_public_change(store: Store) -> None:
    await store.ingest(EVENT, DESK, [make_entry("new", published=T0)], now=T0)
    (change,) = await store.ingest(EVENT, DESK, [make_entry("late", published=T0 - timedelta(hours=5))], now=T0)
    assert change.public and change.message is not None and '"type":"upsert"' in change.message
    assert [i.key for i in (await store.page(EVENT.slug)).items] == ["new", "late"]


async def test_pages_walk_the_whole_timeline_with_before(store: Store) -> None:
    entries = [make_entry(f"e{i:02}", published=T0 + timedelta(minutes=i)) for i in range(25)]
    await store.ingest(EVENT, DESK, entries, now=T0 + timedelta(hours=1))
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.page(EVENT.slug, limit=10, before=cursor)
        seen += [i.key for i in page.items]
        if page.next is None:
            break
        cursor = page.next
    assert seen == [f"e{i:02}" for i in reversed(range(25))]
    oldest = await store.page(EVENT.slug, limit=3, order=Order.OLDEST)
    assert [i.key for i in oldest.items] == ["e00", "e01", "e02"]
    with pytest.raises(ValueError, match="cursor"):
        await store.page(EVENT.slug, before="not-a-cursor")


async def test_changes_since_gives_exactly_what_was_missed_or_none(store: Store) -> None:
    for i in range(10):
        await store.ingest(EVENT, DESK, [make_entry(f"e{i}")], now=T0)
    missed = await store.changes_since(EVENT.slug, 7)
    assert missed is not None and [c.seq for c in missed] == [8, 9, 10]
    assert await store.changes_since(EVENT.slug, 10) == []
    assert await store.changes_since(EVENT.slug, 11) is None  # newer than the head: reset


async def test_since_older_than_the_retained_log_resets(store: Store) -> None:
    # the fixture keeps 50 changes
    for i in range(120):
        await store.ingest(EVENT, DESK, [make_entry(f"e{i}")], now=T0)
    assert await store.changes_since(EVENT.slug, 1) is None
    kept = await store.changes_since(EVENT.slug, 100)
    assert kept is not None and [c.seq for c in kept] == list(range(101, 121))


async def test_ignored_keys_are_never_taken_later(store: Store) -> None:
    await store.ingest(EVENT, DESK, [make_entry("kept")], now=T0, ignore=["skipped"])
    assert await store.ingest(EVENT, DESK, [make_entry("skipped")], now=T0) == []


async def test_listeners_hear_each_commit_in_order(store: Store) -> None:
    heard: list[Change] = []
    unlisten = store.listen(heard.extend)
    await store.ingest(EVENT, DESK, [make_entry("a"), make_entry("b")], now=T0)
    await store.ingest(EVENT, DESK, [make_entry("c")], now=T0)
    assert [c.seq for c in heard] == [1, 2, 3]
    unlisten()
    await store.ingest(EVENT, DESK, [make_entry("d")], now=T0)
    assert len(heard) == 3


async def test_events_keep_separate_logs(store: Store) -> None:
    other = make_event("stage-2", sources=("desk",))
    await store.ingest(EVENT, DESK, [make_entry("a")], now=T0)
    (change,) = await store.ingest(other, DESK, [make_entry("a")], now=T0)
    assert change.seq == 1 and change.event == "stage-2"
    assert [i.event for i in (await store.page("stage-2")).items] == ["stage-2"]


async def test_item_ids_are_url_safe_and_stable(store: Store) -> None:
    (change,) = await store.ingest(EVENT, DESK, [make_entry("weird key / with ? chars")], now=T0)
    assert change.item is not None
    assert all(ch.isalnum() or ch in "-_" for ch in change.item_id)
    assert (await store.get_item(EVENT.slug, change.item_id)) == change.item


async def test_deleted_upstream_leaves_the_timeline_for_good(store: Store) -> None:
    await store.ingest(EVENT, DESK, [make_entry("a"), make_entry("b")], now=T0)
    (change,) = await store.ingest(EVENT, DESK, [], now=T0, deleted=["a", "never-seen"])
    assert change.op == "remove" and change.public and change.message is not None
    assert '"type":"remove"' in change.message
    assert [i.key for i in (await store.page(EVENT.slug)).items] == ["b"]
    # a late copy of the deleted entry does not bring it back, and deleting twice writes nothing
    await store.ingest(EVENT, DESK, [make_entry("a", text="late copy")], now=T0)
    assert [i.key for i in (await store.page(EVENT.slug)).items] == ["b"]
    assert await store.ingest(EVENT, DESK, [], now=T0, deleted=["a"]) == []


async def test_editor_actions_move_items_version_checked_and_audited(store: Store) -> None:
    from curation.errors import ItemNotFound, VersionConflict

    held = dataclasses.replace(WIRE, moderation=Moderation.QUEUE)
    (queued,) = await store.ingest(EVENT, held, [make_entry("q")], now=T0)
    assert [i.key for i in await store.queue(EVENT.slug)] == ["q"]
    item, change = await store.act(EVENT.slug, queued.item_id, "approve", editor="ana", version=1, now=T0)
    assert change is not None and change.public and change.op == "upsert" and item.version == 2
    assert await store.queue(EVENT.slug) == []
    assert [i.key for i in (await store.page(EVENT.slug)).items] == ["q"]
    # a second editor acting on the version they saw before is told, and nothing changes
    with pytest.raises(VersionConflict) as conflict:
        await store.act(EVENT.slug, queued.item_id, "hide", editor="ben", version=1, now=T0)
    assert conflict.value.current.version == 2  # type: ignore[attr-defined]
    item, change = await store.act(EVENT.slug, queued.item_id, "pin", editor="ben", version=2, now=T0)
    assert item.pinned and change is not None and change.public
    _, again = await store.act(EVENT.slug, queued.item_id, "pin", editor="ben", now=T0)
    assert again is None  # idempotent: no change, no seq
    item, change = await store.act(EVENT.slug, queued.item_id, "hide", editor="ben", now=T0)
    assert change is not None and change.op == "remove" and change.public
    assert (await store.page(EVENT.slug)).items == []
    item, change = await store.act(EVENT.slug, queued.item_id, "unhide", editor="ana", now=T0)
    assert change is not None and change.op == "upsert" and item.pinned
    item, _ = await store.act(EVENT.slug, queued.item_id, "highlight", editor="ana", label="Attack", now=T0)
    item, _ = await store.act(EVENT.slug, queued.item_id, "note", editor="ana", text="  Confirmed by the team ", now=T0)
    assert item.key_moment == "Attack" and item.note == "Confirmed by the team"
    trail = await store.audit(EVENT.slug)
    assert [(a.editor, a.action) for a in trail] == [
        ("ana", "note"),
        ("ana", "highlight"),
        ("ana", "unhide"),
        ("ben", "hide"),
        ("ben", "pin"),
        ("ana", "approve"),
    ]
    assert trail[-1].detail["before"]["state"] == "queued"
    with pytest.raises(ItemNotFound):
        await store.act(EVENT.slug, "nope", "approve", editor="ana")
    with pytest.raises(ValueError, match="action"):
        await store.act(EVENT.slug, queued.item_id, "launch", editor="ana")


async def test_deleting_is_undone_by_restore(store: Store) -> None:
    (change,) = await store.ingest(EVENT, DESK, [make_entry("a")], now=T0)
    _, removed = await store.act(EVENT.slug, change.item_id, "delete", editor="ana", now=T0)
    assert removed is not None and removed.op == "remove"
    assert (await store.page(EVENT.slug)).items == []
    _, back = await store.act(EVENT.slug, change.item_id, "restore", editor="ana", now=T0)
    assert back is not None and back.op == "upsert"
    assert [i.key for i in (await store.page(EVENT.slug)).items] == ["a"]

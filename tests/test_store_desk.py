"""The Store contract for the desk's side (posts, scheduled publication, desk-added sources and events,
source statuses, recent items), run against every backend in the `store` fixture."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from curation import posts
from curation.errors import ItemNotFound, VersionConflict
from curation.models import Change, Item, ItemState, Moderation, SourceState, SourceStatus
from curation.store import Store
from tests.conftest import T0, make_entry, make_event, make_source

EVENT = make_event(sources=("desk", "wire"))
WIRE = make_source("wire")


def post_item(key: str, text: str, *, publish_at: timedelta | None = None, slug: str = EVENT.slug) -> Item:
    post = posts.Post(text=text, publish_at=T0 + publish_at if publish_at else None)
    return posts.new_item(post, event=slug, editor="ana", key=key, label="Newsroom", now=T0)


async def test_a_post_is_published_corrected_in_place_and_audited(store: Store) -> None:
    await store.ingest(EVENT, WIRE, [make_entry("w", published=T0 - timedelta(minutes=1))], now=T0)
    change = await store.add_post(post_item("p1", "Attack **now**"), editor="ana", now=T0)
    assert change.seq == 2 and change.public and change.message is not None
    assert [i.id for i in (await store.page(EVENT.slug)).items][0] == "desk-p1"

    item, fixed = await store.edit_post(
        EVENT.slug, "desk-p1", posts.Post(text="Attack, confirmed"), editor="ben", version=1, now=T0
    )
    assert fixed.seq == 3 and item.version == 2 and item.markdown == "Attack, confirmed"
    assert (await store.get_item(EVENT.slug, "desk-p1")) == item
    with pytest.raises(VersionConflict):
        await store.edit_post(EVENT.slug, "desk-p1", posts.Post(text="stale"), editor="ana", version=1, now=T0)
    wire_id = (await store.page(EVENT.slug)).items[1].id
    with pytest.raises(ItemNotFound):  # only the desk's own posts are corrected here
        await store.edit_post(EVENT.slug, wire_id, posts.Post(text="no"), editor="ana", now=T0)
    assert [(a.action, a.editor, a.seq) for a in await store.audit(EVENT.slug)] == [
        ("correct", "ben", 3),
        ("post", "ana", 2),
    ]


async def test_scheduled_posts_wait_then_publish_once_in_order(store: Store) -> None:
    heard: list[Change] = []
    store.listen(heard.extend)
    await store.add_post(post_item("late", "Second", publish_at=timedelta(minutes=20)), editor="ana", now=T0)
    await store.add_post(post_item("soon", "First", publish_at=timedelta(minutes=10)), editor="ana", now=T0)
    other = post_item("elsewhere", "Other event", publish_at=timedelta(minutes=5), slug="stage-2")
    await store.add_post(other, editor="ana", now=T0)
    assert (await store.page(EVENT.slug)).items == []
    assert [i.id for i in (await store.recent(EVENT.slug, states=(ItemState.SCHEDULED,)))[1]] == [
        "desk-late",
        "desk-soon",
    ]
    assert await store.publish_due(now=T0 + timedelta(minutes=1)) == []

    due = await store.publish_due(now=T0 + timedelta(minutes=15))
    assert [(c.event, c.item_id, c.seq) for c in due] == [
        ("stage-2", "desk-elsewhere", 2),
        (EVENT.slug, "desk-soon", 3),
    ]
    assert all(c.public and c.op == "upsert" for c in due)
    assert await store.publish_due(now=T0 + timedelta(minutes=15)) == []
    assert [i.id for i in (await store.page(EVENT.slug)).items] == ["desk-soon"]
    (last,) = await store.publish_due(now=T0 + timedelta(hours=1))
    assert last.item_id == "desk-late" and last.item is not None and last.item.state is ItemState.PUBLISHED
    assert [i.id for i in (await store.page(EVENT.slug)).items] == ["desk-late", "desk-soon"]
    assert [c.item_id for c in heard[-3:]] == ["desk-elsewhere", "desk-soon", "desk-late"]


async def test_recent_mixes_states_newest_first(store: Store) -> None:
    held = dataclasses.replace(WIRE, moderation=Moderation.QUEUE)
    entries = [make_entry(f"q{i}", published=T0 + timedelta(minutes=i)) for i in range(3)]
    await store.ingest(EVENT, held, entries, now=T0 + timedelta(hours=1))
    await store.ingest(
        EVENT, WIRE, [make_entry("p", published=T0 + timedelta(seconds=90))], now=T0 + timedelta(hours=1)
    )
    seq, items = await store.recent(EVENT.slug, states=(ItemState.QUEUED, ItemState.PUBLISHED), limit=3)
    assert seq == 4 and [i.key for i in items] == ["q2", "p", "q1"]
    assert [i.key for i in await store.queue(EVENT.slug, limit=2)] == ["q2", "q1"]
    assert await store.recent(EVENT.slug, states=()) == (4, [])


async def test_pinned_items_lead_the_first_page_only(store: Store) -> None:
    entries = [make_entry(f"e{i}", published=T0 + timedelta(minutes=i)) for i in range(5)]
    changes = await store.ingest(EVENT, WIRE, entries, now=T0 + timedelta(hours=1))
    await store.act(EVENT.slug, changes[0].item_id, "pin", editor="ana", now=T0)
    first = await store.page(EVENT.slug, limit=2)
    assert [i.key for i in first.items] == ["e0", "e4", "e3"]
    assert first.next is not None
    second = await store.page(EVENT.slug, limit=2, before=first.next)
    assert [i.key for i in second.items] == ["e2", "e1"] and second.next is None


async def test_desk_sources_and_events_are_kept_and_audited(store: Store) -> None:
    await store.add_runtime_source(
        EVENT.slug, "extra", {"kind": "feed", "url": "https://x.example/"}, editor="ana", now=T0
    )
    await store.add_runtime_source("stage-2", "more", {"kind": "feed"}, editor="ana", now=T0 + timedelta(seconds=1))
    await store.add_runtime_source(
        EVENT.slug, "extra", {"kind": "feed", "url": "https://y.example/"}, editor="ben", now=T0
    )
    kept = await store.runtime_sources()
    assert [(s.event, s.source_id, s.added_by) for s in kept] == [
        (EVENT.slug, "extra", "ben"),
        ("stage-2", "more", "ana"),
    ]
    assert kept[0].definition["url"] == "https://y.example/"
    assert await store.remove_runtime_source(EVENT.slug, "extra", editor="ana", now=T0) is True
    assert await store.remove_runtime_source(EVENT.slug, "extra", editor="ana", now=T0) is False
    assert [s.source_id for s in await store.runtime_sources()] == ["more"]
    assert [a.action for a in await store.audit(EVENT.slug)] == ["remove-source", "add-source", "add-source"]

    await store.put_runtime_event("zeta", {"title": "Z"}, editor="ana", now=T0)
    await store.put_runtime_event("alpha", {"title": "A"}, editor="ana", now=T0)
    await store.put_runtime_event("zeta", {"title": "Z2", "status": "ended"}, editor="ben", now=T0)
    events = await store.runtime_events()
    assert [(e.slug, e.settings["title"], e.updated_by) for e in events] == [
        ("zeta", "Z2", "ben"),
        ("alpha", "A", "ana"),
    ]
    (latest, first) = await store.audit("zeta")
    assert latest.detail == {"settings": {"title": "Z2", "status": "ended"}, "before": {"title": "Z"}}
    assert first.detail["before"] is None


async def test_source_statuses_keep_validators_and_cursors(store: Store) -> None:
    status = SourceStatus(id="wire", kind="feed", url="https://wire.example/rss", state=SourceState.OK)
    status.etag, status.cursor, status.memo = '"abc"', "112233", {"account": "42"}
    status.last_poll_at = T0
    await store.save_status(status)
    await store.save_status(SourceStatus(id="other", kind="push"))
    loaded = await store.load_statuses()
    assert set(loaded) == {"wire", "other"}
    assert loaded["wire"].to_record() == status.to_record()


async def test_audit_pages_by_entry_id(store: Store) -> None:
    (change,) = await store.ingest(EVENT, WIRE, [make_entry("a")], now=T0)
    for n in range(5):
        await store.act(EVENT.slug, change.item_id, "note", editor="ana", text=f"note {n}", now=T0)
    newest = await store.audit(EVENT.slug, limit=2)
    assert [a.detail["text"] for a in newest] == ["note 4", "note 3"]
    older = await store.audit(EVENT.slug, limit=10, before=newest[-1].id)
    assert [a.detail["text"] for a in older] == ["note 2", "note 1", "note 0"]
    assert all(a.event == EVENT.slug and a.item_id == change.item_id for a in older)

"""Export and import of one event: everything comes across, between the same or the other backend.

The case that matters on the day before a big event: an event prepared on the embedded SQLite store
moves to Redis, and collecting goes on there without taking any item twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from curation.header import Header
from curation.models import ItemState, Moderation
from curation.store import Store, open_store
from curation.transfer import TransferError, from_json
from tests.conftest import T0, make_entry, make_event, make_source

ROOT = Path(__file__).resolve().parent.parent
EVENT = make_event(sources=("desk", "wire"))
DESK, WIRE = make_source("desk"), make_source("wire", moderation=Moderation.QUEUE)


@pytest.fixture(params=["sqlite", "redis"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A second, empty store of either backend."""
    if request.param == "redis":
        url = f"{request.getfixturevalue('redis_server').url}?prefix=moved-{uuid.uuid4().hex[:8]}:"
    else:
        url = f"sqlite:///{tmp_path}/moved.db"
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def prepared(store: Store) -> None:
    """An event with a bit of everything a store keeps."""
    await store.ingest(EVENT, DESK, [make_entry("a"), make_entry("b")], now=T0)
    await store.ingest(EVENT, WIRE, [make_entry("q", url="https://wire.example/q")], now=T0)
    page = await store.page(EVENT.slug)
    first = next(i for i in page.items if i.key == "a")
    await store.act(EVENT.slug, first.id, "pin", editor="ana", now=T0)
    await store.act(EVENT.slug, first.id, "note", text="Confirmed", editor="ana", now=T0)
    second = next(i for i in page.items if i.key == "b")
    await store.act(EVENT.slug, second.id, "hide", editor="ben", now=T0)
    await store.set_header(EVENT.slug, Header(summary="Km 50"), editor="ana", now=T0)
    await store.mute_source(EVENT.slug, "wire", T0 + timedelta(days=3650), editor="ana", now=T0)
    await store.add_runtime_source(EVENT.slug, "late", {"id": "late", "kind": "push"}, editor="ben", now=T0)
    await store.put_runtime_event(EVENT.slug, {"status": "closed"}, editor="chief", now=T0)


async def test_an_event_moves_whole_to_another_store(store: Store, target: Store) -> None:
    await prepared(store)
    dump = await store.dump_event(EVENT.slug)
    assert dump is not None
    document = json.loads(json.dumps(dump.to_json(exported_at="2027-07-12T12:00:00Z")))
    assert await target.load_event(from_json(document)) == 3
    # the same timeline, the same states, the same log position
    before, after = await store.page(EVENT.slug), await target.page(EVENT.slug)
    assert [(i.id, i.pinned, i.note, i.version) for i in after.items] == [
        (i.id, i.pinned, i.note, i.version) for i in before.items
    ]
    assert await target.head(EVENT.slug) == await store.head(EVENT.slug)
    assert [i.key for i in await target.queue(EVENT.slug)] == ["q"]
    hidden = [i for i in (await target.recent(EVENT.slug, states=(ItemState.HIDDEN,)))[1]]
    assert [i.key for i in hidden] == ["b"]
    # a reader from before the move resets once; one at the head misses nothing
    assert await target.changes_since(EVENT.slug, after.seq - 1) is None
    assert await target.changes_since(EVENT.slug, after.seq) == []
    header = await target.get_header(EVENT.slug)
    assert header is not None and header.summary == "Km 50"
    assert set(await target.mutes(EVENT.slug, now=T0)) == {"wire"}
    assert [(s.source_id, s.added_by) for s in await target.runtime_sources()] == [("late", "ben")]
    assert [(e.slug, e.settings) for e in await target.runtime_events()] == [(EVENT.slug, {"status": "closed"})]
    trail = await target.audit(EVENT.slug)
    assert trail[0].action == "import" and [e.action for e in trail[1:]] == [
        e.action for e in await store.audit(EVENT.slug)
    ]
    # collecting again after the move takes nothing twice, and the log goes on from its position
    assert await target.ingest(EVENT, DESK, [make_entry("a"), make_entry("b")], now=T0 + timedelta(hours=1)) == []
    (change,) = await target.ingest(EVENT, DESK, [make_entry("c")], now=T0 + timedelta(hours=1))
    assert change.seq == after.seq + 1


async def test_an_import_never_overwrites_an_event_unless_asked(store: Store, target: Store) -> None:
    await prepared(store)
    dump = await store.dump_event(EVENT.slug)
    assert dump is not None
    await target.ingest(EVENT, DESK, [make_entry("z")], now=T0)
    with pytest.raises(TransferError, match="already has items"):
        await target.load_event(dump)
    assert [i.key for i in (await target.page(EVENT.slug)).items] == ["z"]
    await target.load_event(dump, replace=True)
    assert sorted(i.key for i in (await target.page(EVENT.slug)).items) == ["a"]
    assert await store.dump_event("no-such-event") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected dict"),
        ({"format": "something"}, "format"),
        ({"format": "fil-event", "version": 99}, "version: 99 is newer"),
        ({"format": "fil-event", "version": 1, "slug": "s", "head": "3"}, "head: expected int"),
        ({"format": "fil-event", "version": 1, "slug": "s", "head": 3, "items": [{"id": "x"}]}, "items[0]"),
        ({"format": "fil-event", "version": 1, "slug": "s", "head": 3, "items": [], "keys": [["a"]]}, "keys[0]"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_field(document: object, message: str) -> None:
    with pytest.raises(TransferError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_json(document, name="stage.json")


def test_export_and_import_from_the_command_line(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text("events: []\n")
    old = {"CURATION_SOURCES": str(sources), "CURATION_STORE": f"sqlite:///{tmp_path}/old.db", "PATH": "/usr/bin"}
    new = {**old, "CURATION_STORE": f"sqlite:///{tmp_path}/new.db"}

    def app(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], env=env, text=True, capture_output=True)

    missing = app(old, "export", "stage-1")
    assert missing.returncode == 2 and "nothing kept of event 'stage-1'" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "fil-event", "version": 1, "slug": "s", "head": -1, "items": 3}')
    refused = app(new, "import", str(bad))
    assert refused.returncode == 2 and "bad.json: items: expected list" in refused.stderr
    good = tmp_path / "stage.json"
    good.write_text(
        json.dumps({"format": "fil-event", "version": 1, "slug": "stage-1", "head": 7, "items": [], "audit": []})
    )
    assert app(new, "import", str(good)).returncode == 0
    exported = app(new, "export", "stage-1", "-o", str(tmp_path / "again.json"))
    assert exported.returncode == 0, exported.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert (again["slug"], again["head"], [e["action"] for e in again["audit"]]) == ("stage-1", 7, ["import"])
    assert app(new, "import", str(good)).returncode == 2  # already there
    assert app(new, "import", "--replace", str(good)).returncode == 0

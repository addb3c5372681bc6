"""Issue 4: the editable header block above the timeline, and muting a source for a while from the desk."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from curation import timeline
from curation.collectors.push import sign
from curation.errors import VersionConflict
from curation.header import Fact, Header, HeaderError, Standing, parse_header
from curation.models import ItemState
from curation.store import Store
from tests.conftest import T0, RunningFil, make_entry, make_event, make_source, start_fil
from tests.test_editor_api import call

SLUG = "stage-1"
SECRET = "header-mute-secret"
EVENT = make_event(sources=("desk", "wire"))
DESK = make_source("desk")
WIRE = make_source("wire")


# -- the pure parts ----------------------------------------------------------------------------


def test_parse_header_names_the_bad_field() -> None:
    header, version = parse_header(
        {
            "version": 3,
            "summary": "**Attack** on the climb",
            "facts": [{"label": "Distance", "value": "182 km"}, {"label": "Gap", "value": 45}],
            "standings": [{"rank": 1, "name": "Castagnède", "detail": "4h12"}, {"name": "Unranked"}],
        }
    )
    assert version == 3
    assert header.facts == (Fact("Distance", "182 km"), Fact("Gap", "45"))
    assert header.standings == (Standing(rank="1", name="Castagnède", detail="4h12"), Standing(name="Unranked"))
    assert "<strong>Attack</strong>" in header.summary_html
    for body, field in (
        ({"facts": [{"label": "x", "value": "y"}] * 13}, "facts"),
        ({"standings": [{"name": "x"}] * 21}, "standings"),
        ({"facts": [{"label": "", "value": "y"}]}, "facts[0].label"),
        ({"facts": [{"label": "ok", "value": "y"}, {"label": "x" * 61, "value": "y"}]}, "facts[1].label"),
        ({"standings": [{"rank": "1"}]}, "standings[0].name"),
        ({"summary": ["not", "text"]}, "summary"),
        ({"summary": "x" * 2001}, "summary"),
        ({"facts": "Distance: 182 km"}, "facts"),
        ({"version": "2"}, "version"),
        ("not an object", "body"),
    ):
        with pytest.raises(HeaderError) as error:
            parse_header(body)
        assert str(error.value).startswith(field + ":"), (body, str(error.value))


def test_a_muted_source_holds_what_would_have_been_published() -> None:
    entry = make_entry("a")
    assert timeline.initial_state(entry, WIRE, EVENT) is ItemState.PUBLISHED
    assert timeline.initial_state(entry, WIRE, EVENT, muted=True) is ItemState.QUEUED
    blocked = make_event(sources=("wire",), keywords_block=("title",))
    assert timeline.initial_state(entry, WIRE, blocked, muted=True) is ItemState.REJECTED


# -- the store ---------------------------------------------------------------------------------


async def test_header_versions_and_audit(store: Store) -> None:
    assert await store.get_header(EVENT.slug) is None
    first = await store.set_header(EVENT.slug, Header(summary="Start"), editor="ana", now=T0)
    assert (first.version, first.updated_by, first.updated_at, first.summary) == (1, "ana", T0, "Start")
    assert await store.get_header(EVENT.slug) == first
    with pytest.raises(VersionConflict) as stale:
        await store.set_header(EVENT.slug, Header(summary="Lost"), editor="bob", now=T0)
    assert stale.value.current == first
    second = await store.set_header(
        EVENT.slug, Header(summary="Km 50", facts=(Fact("Gap", "1'"),), version=1), editor="bob", now=T0
    )
    assert second.version == 2 and (await store.get_header(EVENT.slug)) == second
    assert await store.get_header("other-event") is None
    trail = await store.audit(EVENT.slug)
    assert [(e.action, e.editor) for e in trail] == [("header", "bob"), ("header", "ana")]
    assert trail[0].detail["before"]["summary"] == "Start"


async def test_a_mute_holds_new_items_until_it_ends(store: Store) -> None:
    await store.mute_source(EVENT.slug, "wire", T0 + timedelta(minutes=30), editor="ana", now=T0)
    assert await store.mutes(EVENT.slug, now=T0) == {"wire": T0 + timedelta(minutes=30)}
    assert await store.mutes("other-event", now=T0) == {}
    (held,) = await store.ingest(EVENT, WIRE, [make_entry("a")], now=T0 + timedelta(minutes=1))
    (other,) = await store.ingest(EVENT, DESK, [make_entry("b")], now=T0 + timedelta(minutes=1))
    assert held.item is not None and held.item.state is ItemState.QUEUED and not held.public
    assert other.item is not None and other.item.state is ItemState.PUBLISHED
    # past its end the mute is gone by itself
    (later,) = await store.ingest(EVENT, WIRE, [make_entry("c")], now=T0 + timedelta(minutes=31))
    assert later.item is not None and later.item.state is ItemState.PUBLISHED
    assert await store.mutes(EVENT.slug, now=T0 + timedelta(minutes=31)) == {}
    # the held item was never lost: it waits in the queue
    assert [i.key for i in await store.queue(EVENT.slug)] == ["a"]
    await store.mute_source(EVENT.slug, "wire", T0 + timedelta(hours=2), editor="ana", now=T0)
    await store.mute_source(EVENT.slug, "wire", None, editor="bob", now=T0)
    (unmuted,) = await store.ingest(EVENT, WIRE, [make_entry("d")], now=T0 + timedelta(minutes=2))
    assert unmuted.item is not None and unmuted.item.state is ItemState.PUBLISHED
    assert [e.action for e in await store.audit(EVENT.slug)] == ["unmute", "mute", "mute"]


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("HEADER_WIRE_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: HEADER_WIRE_SECRET\n"
        "        role: editorial\n        label: Wire\n"
    )
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    yield running
    await running.stop()


async def push(fil: RunningFil, *ids: str) -> None:
    now = datetime.now(UTC).isoformat()
    items = [{"id": i, "url": f"https://wire.example/{i}", "text": f"Story {i}", "published_at": now} for i in ids]
    body = json.dumps({"items": items}).encode()
    ts = int(time.time())
    async with aiohttp.ClientSession() as session:
        headers = {"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRET, ts, body)}
        async with session.post(f"{fil.base}/api/ingest/wire", data=body, headers=headers) as response:
            assert response.status == 202, await response.text()


async def put(fil: RunningFil, body: Any, token: str | None) -> tuple[int, Any]:
    return await call(fil, "PUT", f"/api/events/{SLUG}/header", body, token)


async def test_the_header_reaches_page_api_and_live_readers(fil: RunningFil) -> None:
    token = await fil.token()
    status, empty = await call(fil, "GET", f"/api/events/{SLUG}/header", token=token)
    assert status == 200 and empty["header"]["version"] == 0
    assert (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["header"] is None
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as reader:
        assert json.loads(await reader.recv())["type"] == "hello"
        body = {
            "version": 0,
            "summary": "**Breakaway** of 4 <script>alert(1)</script>",
            "facts": [{"label": "Distance", "value": "182 km"}, {"label": "<b>Gap</b>", "value": "45s"}],
            "standings": [{"rank": "1", "name": "Castagnède", "detail": "+0"}],
        }
        status, saved = await put(fil, body, token)
        assert status == 200 and saved["header"]["version"] == 1 and saved["header"]["updated_by"] == "ops"
        live = json.loads(await asyncio.wait_for(reader.recv(), 5))
    assert live == {"type": "header", "header": saved["header"]}
    assert "<strong>Breakaway</strong>" in live["header"]["summary_html"]
    assert "<script>" not in live["header"]["summary_html"]
    assert (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["header"] == saved["header"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/events/{SLUG}") as response:
            page = await response.text()
    section = page.split('<section id="header"', 1)[1].split("</section>", 1)[0]
    assert section.index("Breakaway") < page.split('<section id="header"', 1)[1].index('id="timeline"')
    assert "<strong>Breakaway</strong>" in section and "182 km" in section and "Castagnède" in section
    assert "<script>" not in section and "&lt;b&gt;Gap&lt;/b&gt;" in section
    # a stale version is refused with the header as it is now
    status, conflict = await put(fil, {**body, "summary": "Lost"}, token)
    assert status == 409 and conflict["header"]["version"] == 1
    for bad, field in (
        ({"facts": [{"label": "x", "value": "y"}] * 13}, "facts"),
        ({"standings": [{"rank": "1"}]}, "standings[0].name"),
        ({"summary": 5}, "summary"),
    ):
        status, answer = await put(fil, bad, token)
        assert status == 400 and answer["error"].startswith(field), (bad, answer)
    assert (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["header"]["version"] == 1
    assert (await call(fil, "PUT", "/api/events/nope/header", body, token))[0] == 404


async def test_anonymous_cannot_edit_the_header_or_mute(fil: RunningFil) -> None:
    for token in (None, "not-a-token"):
        assert (await put(fil, {"summary": "x"}, token))[0] in (401, 403)
        mute = await call(fil, "POST", f"/api/events/{SLUG}/sources/wire/mute", {"minutes": 30}, token)
        assert mute[0] in (401, 403)
    assert (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["header"] is None
    await push(fil, "a")
    # the refused mute held nothing back
    assert [i["text"] for i in (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"]] == ["Story a"]


async def test_a_muted_source_is_held_then_published_again(fil: RunningFil) -> None:
    token = await fil.token()
    path = f"/api/events/{SLUG}/sources/wire/mute"
    status, muted = await call(fil, "POST", path, {"minutes": 30}, token)
    assert status == 200 and muted["muted_until"]
    desk = (await call(fil, "GET", f"/api/events/{SLUG}/desk", token=token))[1]
    (wire,) = desk["sources"]
    assert {k: wire[k] for k in ("id", "label", "muted_until", "origin")} == {
        "id": "wire",
        "label": "Wire",
        "muted_until": muted["muted_until"],
        "origin": "sources.yaml",
    }
    await push(fil, "held")
    assert (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"] == []
    queue = (await call(fil, "GET", f"/api/events/{SLUG}/queue", token=token))[1]["items"]
    assert [i["text"] for i in queue] == ["Story held"]
    status, unmuted = await call(fil, "POST", path, {"minutes": 0}, token)
    assert status == 200 and unmuted["muted_until"] is None
    await push(fil, "free")
    public = (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"]
    assert [i["text"] for i in public] == ["Story free"]
    for body in ({"minutes": 24 * 60 + 1}, {"minutes": -1}, {"minutes": "30"}, {}):
        status, answer = await call(fil, "POST", path, body, token)
        assert status == 400 and answer["error"].startswith("minutes"), body
    assert (await call(fil, "POST", f"/api/events/{SLUG}/sources/nope/mute", {"minutes": 5}, token))[0] == 404

"""Atom and JSON Feed of the curated timeline over real HTTP: only what readers may see, valid, stable ids."""

from __future__ import annotations

import dataclasses
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import feedparser
import pytest
from multidict import CIMultiDict

from curation.collectors.push import sign
from curation.models import Item, ItemState
from curation.timeline import new_item
from curation.web.syndication import short_title
from tests.conftest import RunningFil, free_port, make_entry, make_event, make_source, start_fil

SLUG = "stage-1"
BASE = "https://fil.example"
SECRET = "syndication-wire-secret"
T0 = datetime(2024, 7, 12, 12, 0, tzinfo=UTC)

SOURCES = f"""\
events:
  - slug: {SLUG}
    title: "Stage 1 & the <climb>"
    language: fr
    status: {{status}}
    sources:
      - id: wire
        kind: push
        secret_env: SYND_WIRE_SECRET
        role: editorial
      - id: tips
        kind: push
        secret_env: SYND_WIRE_SECRET
        role: other
  - slug: hidden-draft
    title: Not yet
    status: draft
    sources:
      - id: draft-wire
        kind: push
        secret_env: SYND_WIRE_SECRET
        role: editorial
"""


def write_sources(path: Path, status: str = "live") -> None:
    path.write_text(SOURCES.replace("{status}", status))


async def launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, status: str = "live") -> RunningFil:
    monkeypatch.setenv("SYND_WIRE_SECRET", SECRET)
    write_sources(tmp_path / "sources.yaml", status)
    return await start_fil(tmp_path / "sources.yaml", tmp_path / "data", public_url=BASE, port=free_port())


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await launch(tmp_path, monkeypatch)
    yield running
    await running.stop()


def wire_item(key: str, minutes: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": key,
        "url": f"https://wire.example/{key}",
        "text": f"Story {key}",
        "published_at": (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "author": {"name": f"Writer {key}", "handle": "@writer", "url": "https://wire.example/writer"},
    }
    record.update(fields)
    return record


async def push(fil: RunningFil, source: str, *items: dict[str, Any]) -> None:
    body = json.dumps({"items": list(items)}).encode()
    ts = int(time.time())
    headers = {"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRET, ts, body)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fil.base}/api/ingest/{source}", data=body, headers=headers) as response:
            assert response.status == 202, await response.text()


async def call(fil: RunningFil, method: str, path: str, body: Any = None, *, editor: bool = True) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {await fil.token()}"} if editor else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.request(method, f"{fil.base}{path}", json=body) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text


async def get(fil: RunningFil, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}{path}", headers=headers, allow_redirects=False) as response:
            return response.status, CIMultiDict(response.headers), await response.read()


async def item_ids(fil: RunningFil, source: str | None = None) -> dict[str, str]:
    """Item id by upstream key, for every item of the event in any state (read from the store)."""
    _, items = await fil.fil.store.recent(SLUG, states=list(ItemState), limit=1000)
    return {i.key: i.id for i in items if source is None or i.source_id == source}


async def act(fil: RunningFil, item_id: str, action: str) -> None:
    status, body = await call(fil, "POST", f"/api/events/{SLUG}/items/{item_id}/actions", {"action": action})
    assert status == 200, body


async def curate(fil: RunningFil) -> dict[str, str]:
    """A timeline with every state: published (a, d, e, an editor's post), hidden, deleted, queued, rejected,
    scheduled. Returns item ids by name."""
    await push(fil, "wire", *(wire_item(k, m) for k, m in (("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5))))
    await push(fil, "tips", wire_item("q1", 6, text="Queued tip"), wire_item("q2", 7, text="Rejected tip"))
    ids = await item_ids(fil)
    await act(fil, ids["b"], "hide")
    await act(fil, ids["c"], "delete")
    await act(fil, ids["q2"], "reject")
    status, post = await call(fil, "POST", f"/api/events/{SLUG}/posts", {"text": "A word from the desk"})
    assert status in (200, 201), post
    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, scheduled = await call(
        fil, "POST", f"/api/events/{SLUG}/posts", {"text": "Scheduled for later", "publish_at": later}
    )
    assert status in (200, 201), scheduled
    ids["post"] = post["item"]["id"] if "item" in post else post["id"]
    ids["scheduled"] = scheduled["item"]["id"] if "item" in scheduled else scheduled["id"]
    return ids


def permalink(item_id: str) -> str:
    return f"{BASE}/events/{SLUG}#item-{item_id}"


async def atom(fil: RunningFil, slug: str = SLUG) -> tuple[CIMultiDict[str], bytes, Any]:
    status, headers, body = await get(fil, f"/events/{slug}/feed.atom")
    assert status == 200, body
    return headers, body, feedparser.parse(body)


async def json_feed(fil: RunningFil, slug: str = SLUG) -> tuple[CIMultiDict[str], dict[str, Any]]:
    status, headers, body = await get(fil, f"/events/{slug}/feed.json")
    assert status == 200, body
    return headers, json.loads(body)


async def test_feeds_carry_only_the_published_timeline_newest_first(fil: RunningFil) -> None:
    ids = await curate(fil)
    published = ["post", "e", "d", "a"]  # the desk's post is the newest (written now)

    headers, body, parsed = await atom(fil)
    assert headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [e.link for e in parsed.entries] == [permalink(ids[k]) for k in published]
    for hidden in ("b", "c", "q1", "q2", "scheduled"):
        assert ids[hidden].encode() not in body
    assert b"Queued tip" not in body and b"Scheduled for later" not in body and b"Story b" not in body

    headers, document = await json_feed(fil)
    assert headers["Content-Type"] == "application/feed+json"
    assert [i["url"] for i in document["items"]] == [permalink(ids[k]) for k in published]
    text = json.dumps(document)
    for hidden in ("b", "c", "q1", "q2", "scheduled"):
        assert ids[hidden] not in text

    # unhidden, it comes back; hidden again, gone again
    await act(fil, ids["b"], "unhide")
    assert permalink(ids["b"]) in [e.link for e in (await atom(fil))[2].entries]
    await act(fil, ids["a"], "hide")
    links = [i["url"] for i in (await json_feed(fil))[1]["items"]]
    assert permalink(ids["a"]) not in links and permalink(ids["b"]) in links


async def test_atom_fields_per_spec(fil: RunningFil) -> None:
    await push(
        fil,
        "wire",
        wire_item(
            "pic",
            1,
            title="Breakaway",
            html="<p>They go <b>clear</b></p>",
            media=[{"type": "image", "url": "https://img.example/breakaway.jpg", "alt": "The break"}],
        ),
        wire_item("short", 2, text="Only a text, long enough to be cut into a title: " + "word " * 30),
    )
    ids = await item_ids(fil)
    _, body, parsed = await atom(fil)
    assert not parsed.bozo
    feed = parsed.feed
    assert feed.title == "Stage 1 & the <climb>"
    assert feed.id == f"{BASE}/events/{SLUG}/feed.atom"
    assert feed.updated_parsed is not None
    links = {link.rel: link.href for link in feed.links}
    assert links == {"self": f"{BASE}/events/{SLUG}/feed.atom", "alternate": f"{BASE}/events/{SLUG}"}
    assert feed.language == "fr"

    short, pic = parsed.entries
    assert pic.title == "Breakaway"
    assert pic.id.startswith("urn:uuid:")
    assert pic.published_parsed[:5] == (2024, 7, 12, 12, 1)
    assert pic.updated_parsed == pic.published_parsed
    assert pic.author == "Writer pic"
    assert pic.author_detail.href == "https://wire.example/writer"
    rels = {(link.rel, link.href) for link in pic.links}
    assert ("alternate", permalink(ids["pic"])) in rels
    assert ("related", "https://wire.example/pic") in rels
    assert ("enclosure", "https://img.example/breakaway.jpg") in rels
    (content,) = pic.content
    assert content.type == "text/html"
    assert "<b>clear</b>" in content.value and 'src="https://img.example/breakaway.jpg"' in content.value
    assert [t.term for t in pic.tags] == ["editorial"]

    # an item without a title gets a short one from its text, cut at a word
    assert short.title.startswith("Only a text, long enough") and short.title.endswith("…")
    assert len(short.title) <= 81
    assert short.id != pic.id

    # the raw document is well-formed for a strict XML parser too
    root = ET.fromstring(body)
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"


async def test_json_feed_fields(fil: RunningFil) -> None:
    await push(
        fil,
        "wire",
        wire_item(
            "pic",
            1,
            title="Breakaway",
            author={"name": "Anna", "url": "https://wire.example/anna", "avatar": "https://img.example/anna.png"},
            media=[{"type": "image", "url": "https://img.example/break.jpg", "alt": "The break"}],
        ),
        wire_item("plain", 2),
    )
    ids = await item_ids(fil)
    _, document = await json_feed(fil)
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["title"] == "Stage 1 & the <climb>"
    assert document["home_page_url"] == f"{BASE}/events/{SLUG}"
    assert document["feed_url"] == f"{BASE}/events/{SLUG}/feed.json"
    plain, pic = document["items"]
    assert pic["id"].startswith("urn:uuid:") and isinstance(pic["id"], str)
    assert pic["url"] == permalink(ids["pic"])
    assert pic["external_url"] == "https://wire.example/pic"
    assert pic["title"] == "Breakaway"
    assert "Story pic" in pic["content_html"] and pic["content_text"] == "Story pic"
    assert pic["date_published"] == "2024-07-12T12:01:00.000Z"
    assert "date_modified" not in pic
    assert pic["authors"] == [
        {"name": "Anna", "url": "https://wire.example/anna", "avatar": "https://img.example/anna.png"}
    ]
    assert pic["image"] == "https://img.example/break.jpg"
    assert pic["attachments"] == [
        {"url": "https://img.example/break.jpg", "mime_type": "image/jpeg", "title": "The break"}
    ]
    assert "title" not in plain or plain["title"]  # no empty titles
    assert "attachments" not in plain and "image" not in plain


async def test_edited_entries_carry_their_update_time_and_removed_ones_go(fil: RunningFil) -> None:
    await push(fil, "wire", wire_item("a", 1), wire_item("b", 2))
    ids = await item_ids(fil)
    before = datetime.now(UTC) - timedelta(seconds=5)
    await push(fil, "wire", wire_item("a", 1, text="Story a, corrected"))

    _, _, parsed = await atom(fil)
    entry = next(e for e in parsed.entries if e.link == permalink(ids["a"]))
    assert "corrected" in entry.content[0].value
    updated = datetime(*entry.updated_parsed[:6], tzinfo=UTC)
    assert updated >= before.replace(microsecond=0)
    assert entry.updated_parsed > entry.published_parsed
    assert datetime(*parsed.feed.updated_parsed[:6], tzinfo=UTC) == updated

    _, document = await json_feed(fil)
    record = next(i for i in document["items"] if i["url"] == permalink(ids["a"]))
    assert record["date_modified"] > record["date_published"]

    await act(fil, ids["b"], "delete")
    assert [e.link for e in (await atom(fil))[2].entries] == [permalink(ids["a"])]
    assert [i["url"] for i in (await json_feed(fil))[1]["items"]] == [permalink(ids["a"])]


async def test_feed_is_capped_to_the_latest_50(fil: RunningFil) -> None:
    await push(fil, "wire", *(wire_item(f"n{n:02d}", n) for n in range(60)))
    _, _, parsed = await atom(fil)
    assert len(parsed.entries) == 50
    assert parsed.entries[0].title == "Story n59" and parsed.entries[-1].title == "Story n10"
    _, document = await json_feed(fil)
    assert len(document["items"]) == 50


async def test_hostile_text_stays_well_formed(fil: RunningFil) -> None:
    """Characters XML cannot carry (C0 controls, U+FFFE) and markup, put past the sanitizer into the store."""
    nasty = "A\x00b\x01c\x0bd\x1b[31m ]]> <script>alert(1)</script> & &amp; \"'\ufffe é 😀"
    event = fil.fil.config.event(SLUG)
    assert event is not None
    entry = make_entry("nasty", url="https://x.example/?a=1&b=<2>", published=T0)
    entry = dataclasses.replace(entry, title=nasty, text=nasty, html=f"<p>{nasty}</p>")
    await fil.fil.store.ingest(event, make_source("wire", role="editorial"), [entry])

    _, body, parsed = await atom(fil)
    assert not parsed.bozo, parsed.get("bozo_exception")
    root = ET.fromstring(body)  # a strict parser agrees
    (entry_el,) = root.findall("{http://www.w3.org/2005/Atom}entry")
    title = entry_el.findtext("{http://www.w3.org/2005/Atom}title")
    assert title is not None and "<script>alert(1)</script> & &amp;" in title and "😀" in title
    assert "\x00" not in title and "\x1b" not in title
    assert parsed.entries[0].links[-1].href == "https://x.example/?a=1&b=<2>"

    status, _, raw = await get(fil, f"/events/{SLUG}/feed.json")
    assert status == 200
    document = json.loads(raw)
    assert "<script>alert(1)</script>" in document["items"][0]["title"]


async def test_ids_are_stable_across_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = await launch(tmp_path, monkeypatch)
    try:
        await push(running, "wire", wire_item("a", 1), wire_item("b", 2))
        first_atom = [e.id for e in (await atom(running))[2].entries]
        first_json = [i["id"] for i in (await json_feed(running))[1]["items"]]
    finally:
        await running.stop()
    running = await launch(tmp_path, monkeypatch)
    try:
        assert [e.id for e in (await atom(running))[2].entries] == first_atom
        assert [i["id"] for i in (await json_feed(running))[1]["items"]] == first_json
        assert len(set(first_atom)) == 2 and first_atom == first_json
    finally:
        await running.stop()


async def test_draft_and_unknown_events_have_no_feed(fil: RunningFil) -> None:
    for slug in ("hidden-draft", "nope"):
        for name in ("feed.atom", "feed.json"):
            status, _, body = await get(fil, f"/events/{slug}/{name}")
            assert status == 404, (slug, name)
            assert slug.encode() in body


async def test_an_empty_feed_is_still_valid(fil: RunningFil) -> None:
    _, _, parsed = await atom(fil)
    assert not parsed.bozo and parsed.entries == [] and parsed.feed.updated_parsed is not None
    _, document = await json_feed(fil)
    assert document["items"] == []


def test_short_titles() -> None:
    def item(title: str, text: str) -> Item:
        return new_item(make_entry("k", title=title, text=text), make_source(), make_event(), item_id_="k", now=T0)

    assert short_title(item("  A   title ", "x")) == "A title"
    assert short_title(item("", "Short text")) == "Short text"
    assert short_title(item("", "x" * 200)) == "x" * 80 + "…"
    assert short_title(item("", "word " * 40)).endswith("word…")

"""The built-in demo upstream: releases over time, real wire formats, conditional GET, edits and the endless loop."""

from __future__ import annotations

import calendar
import email.utils
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import feedparser
import pytest
import pytest_asyncio
from multidict import CIMultiDict

from curation.demo import DOC_LIMITS, DemoUpstream
from curation.models import EventStatus, Order, Role, Source, SourceKind

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
#: 2027-07-17 12:00:00 UTC, a Saturday in July
WALL = 1_815_998_400.0
EVERY = 6.0
MRSS = "{http://search.yahoo.com/mrss/}"
TID = r"[2-7a-z]{13}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Demo:
    upstream: DemoUpstream
    base: str
    clock: FakeClock
    session: aiohttp.ClientSession
    sources: dict[str, Source]

    def advance_to(self, elapsed: float) -> None:
        self.clock.now = 1000.0 + elapsed

    async def get(self, url: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
        async with self.session.get(url, headers=headers, allow_redirects=False) as response:
            return response.status, response.headers.copy(), await response.read()

    async def doc(self, key: str) -> bytes:
        status, _, body = await self.get(self.url(key))
        assert status == 200, key
        return body

    async def feed(self, key: str) -> Any:
        return feedparser.parse(await self.doc(key))

    def url(self, key: str) -> str:
        url = self.sources[f"demo-{key}"].url
        assert url is not None
        return url

    def offset_of(self, index: int, cycle: int = 0) -> float:
        """When step `index` of `cycle` is released (the first batch at 0, then one per EVERY)."""
        seq = cycle * len(self.upstream.script.steps) + index
        return max(0, seq - self.upstream.script.initial + 1) * EVERY


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


@pytest_asyncio.fixture
async def demo() -> AsyncIterator[Demo]:
    clock = FakeClock()
    upstream = DemoUpstream(clock=clock, release_every=EVERY, wall_clock=fixed(WALL))
    base = await upstream.start()
    _, sources = upstream.config()
    try:
        async with aiohttp.ClientSession() as session:
            yield Demo(upstream, base, clock, session, {s.id: s for s in sources})
    finally:
        await upstream.stop()


def keys_by_format(demo: Demo, fmt: str) -> list[str]:
    return [p.key for p in demo.upstream.script.personas if p.format == fmt]


async def all_entry_ids(demo: Demo) -> set[str]:
    ids: set[str] = set()
    for persona in demo.upstream.script.personas:
        if persona.format == "jsonfeed":
            ids.update(item["id"] for item in json.loads(await demo.doc(persona.key))["items"])
        else:
            ids.update(entry.id for entry in (await demo.feed(persona.key)).entries)
    return ids


def step_index(demo: Demo, step_id: str, *, edit: bool = False) -> int:
    for step in demo.upstream.script.steps:
        if step.id == step_id and (step.edit_of is not None) == edit:
            return step.index
    raise AssertionError(f"no step {step_id!r}")


@pytest.mark.asyncio
async def test_config_points_every_source_at_the_upstream(demo: Demo) -> None:
    event, sources = demo.upstream.config()
    assert event.slug == "demo-tour-stage"
    assert "Tour de France" in event.title and "demo" in event.title
    assert (event.language, event.order, event.status) == ("en", Order.NEWEST, EventStatus.LIVE)
    assert event.sources == tuple(s.id for s in sources)
    assert demo.base == f"http://{demo.upstream.origin}" and demo.upstream.origin.startswith("127.0.0.1:")
    roles = [s.role for s in sources]
    assert roles.count(Role.EDITORIAL) == 1 and roles.count(Role.TEAM) == 1
    assert 2 <= roles.count(Role.JOURNALIST) <= 3 and 2 <= roles.count(Role.ATHLETE) <= 3
    for source in sources:
        assert source.kind is SourceKind.FEED and source.interval == 5.0
        assert source.backfill >= max(DOC_LIMITS.values())
        assert source.url is not None and source.url.startswith(demo.base + "/")


@pytest.mark.asyncio
async def test_config_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        DemoUpstream().config()


@pytest.mark.asyncio
async def test_first_batch_is_out_at_start_then_one_entry_per_release(demo: Demo) -> None:
    first = await all_entry_ids(demo)
    assert 8 <= len(first) <= 12
    for persona in demo.upstream.script.personas:  # no source starts empty
        body = await demo.doc(persona.key)
        assert json.loads(body)["items"] if persona.format == "jsonfeed" else feedparser.parse(body).entries

    demo.advance_to(EVERY - 0.1)
    assert await all_entry_ids(demo) == first
    demo.advance_to(EVERY)
    assert len(await all_entry_ids(demo) - first) == 1

    demo.advance_to(EVERY * 12)
    later = await all_entry_ids(demo)
    assert len(later - first) >= 10  # twelve releases, at most two of them edits


@pytest.mark.asyncio
async def test_releases_interleave_articles_and_posts(demo: Demo) -> None:
    script = demo.upstream.script
    live = [s for s in script.steps[script.initial :] if s.edit_of is None][:8]
    assert len({s.source for s in live}) >= 5
    formats = {p.key: p.format for p in script.personas}
    assert {formats[s.source] for s in live} == {"rss", "mastodon", "bluesky", "jsonfeed"}


@pytest.mark.asyncio
async def test_live_entries_are_dated_at_their_release(demo: Demo) -> None:
    demo.advance_to(EVERY * 20)
    feed = await demo.feed("newsroom")
    dates = [datetime.fromtimestamp(calendar.timegm(e.published_parsed), UTC) for e in feed.entries]
    assert dates == sorted(dates, reverse=True)
    newest = max(dates)
    assert WALL < newest.timestamp() <= WALL + EVERY * 20


@pytest.mark.asyncio
async def test_newsroom_rss_carries_full_articles(demo: Demo) -> None:
    feed = await demo.feed("newsroom")
    assert not feed.bozo and feed.version == "rss20"
    assert feed.feed.title.startswith("Col & Cadence")
    with_image = [e for e in feed.entries if e.get("enclosures")]
    assert with_image
    for entry in feed.entries:
        assert entry.title and entry.link.startswith(demo.base + "/news/") and entry.id
        assert entry.published_parsed and entry.author and entry.tags[0].term
        assert entry.summary.startswith("<p>")
    entry = with_image[0]
    assert "<img " in entry.summary and 'alt="' in entry.summary
    enclosure = entry.enclosures[0]
    assert enclosure.type == "image/svg+xml"
    status, headers, body = await demo.get(enclosure.href)
    assert status == 200 and headers["Content-Type"] == "image/svg+xml"
    assert int(enclosure.length) == len(body)
    assert ET.fromstring(body).tag == "{http://www.w3.org/2000/svg}svg"


def _skeleton(channel: ET.Element) -> tuple[list[str], list[str]]:
    item = channel.find("item")
    assert item is not None
    return [c.tag for c in channel if c.tag != "item"], list(dict.fromkeys(c.tag for c in item))


@pytest.mark.asyncio
async def test_mastodon_feeds_have_the_real_account_rss_shape(demo: Demo) -> None:
    real = ET.parse(FIXTURES / "mastodon_rss_account_hachyderm.xml").getroot()
    real_channel, real_item = _skeleton(real[0])
    demo.advance_to(EVERY * 40)
    for key in keys_by_format(demo, "mastodon"):
        body = await demo.doc(key)
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:media=')
        root = ET.fromstring(body)
        channel_tags, _ = _skeleton(root[0])
        assert channel_tags == real_channel
        assert root.findtext("channel/description", "").startswith(f"Public posts from @{key}@127.0.0.1")
        assert root.findtext("channel/generator", "").startswith("Mastodon v")
        for item in root.iter("item"):
            tags = list(dict.fromkeys(c.tag for c in item))
            assert [t for t in real_item if t in tags] == tags  # same elements, same order
            assert item.find("title") is None
            guid = item.find("guid")
            assert guid is not None and guid.get("isPermaLink") == "true" and guid.text == item.findtext("link")
            assert re.fullmatch(rf"{re.escape(demo.base)}/@{key}/\d{{17,19}}", guid.text or "")
            assert email.utils.parsedate_to_datetime(item.findtext("pubDate", "")).tzinfo is not None
            assert item.findtext("description", "").startswith("<p>")  # escaped HTML, once unescaped
    feed = await demo.feed("maelle")
    assert feed.feed.title == "Maëlle Kervran" and feed.feed.image.href.endswith(".svg")
    media = [e for e in feed.entries if e.get("media_content")]
    assert media and media[0].media_content[0]["medium"] == "image"
    assert any(not e.get("title") for e in feed.entries)
    assert 'class="mention hashtag"' in feed.entries[0].summary


@pytest.mark.asyncio
async def test_mastodon_media_carries_alt_text(demo: Demo) -> None:
    root = ET.fromstring(await demo.doc("maelle"))
    contents = root.findall(f"channel/item/{MRSS}content")
    assert contents
    for content in contents:
        assert list(content.attrib) == ["url", "type", "fileSize", "medium"]
        assert content.findtext(f"{MRSS}rating") == "nonadult"
        description = content.find(f"{MRSS}description")
        assert description is not None and description.get("type") == "plain" and description.text


@pytest.mark.asyncio
async def test_bluesky_feeds_have_the_real_profile_rss_shape(demo: Demo) -> None:
    demo.advance_to(EVERY * 45)
    personas = {p.key: p for p in demo.upstream.script.personas}
    for key in keys_by_format(demo, "bluesky"):
        handle = personas[key].handle
        body = await demo.doc(key)
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><description>')
        assert b"\n" not in body.split(b"\n", 1)[1]  # Go's encoding/xml writes one line
        channel = ET.fromstring(body)[0]
        assert channel.findtext("title") == f"@{handle} - {personas[key].name}"
        items = channel.findall("item")
        assert items
        for item in items:
            assert [c.tag for c in item] == ["link", "description", "pubDate", "guid"]
            link = item.findtext("link", "")
            match = re.fullmatch(rf"https://bsky\.app/profile/{re.escape(handle)}/post/({TID})", link)
            assert match
            guid = item.find("guid")
            assert guid is not None and guid.get("isPermaLink") == "false"
            assert re.fullmatch(rf"at://did:plc:[a-z2-7]{{24}}/app\.bsky\.feed\.post/{match[1]}", guid.text or "")
            date = item.findtext("pubDate", "")
            assert re.fullmatch(r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2} [+-]\d{4}", date)
            assert datetime.strptime(date, "%d %b %Y %H:%M %z")
            assert "<" not in item.findtext("description", "<")  # plain text, not HTML
        feed = feedparser.parse(body)
        assert all(e.published_parsed and not e.get("title") for e in feed.entries)
    assert b"&#39;" in await demo.doc("aurelien")  # Go escapes apostrophes as &#39;


@pytest.mark.asyncio
async def test_bluesky_handle_url_redirects_to_the_did_feed(demo: Demo) -> None:
    persona = next(p for p in demo.upstream.script.personas if p.format == "bluesky")
    status, headers, _ = await demo.get(f"{demo.base}/profile/{persona.handle}/rss")
    assert status == 302 and demo.base + headers["Location"] == demo.url(persona.key)
    status, _, _ = await demo.get(f"{demo.base}/profile/nobody.bsky.social/rss")
    assert status == 404


@pytest.mark.asyncio
async def test_team_json_feed_is_valid_json_feed_1_1(demo: Demo) -> None:
    demo.advance_to(EVERY * 40)
    status, headers, body = await demo.get(demo.url("team"))
    assert status == 200 and headers["Content-Type"].startswith("application/feed+json")
    feed = json.loads(body.decode("utf-8"))
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(feed["title"], str) and feed["title"]
    assert feed["feed_url"] == demo.url("team")
    assert all(isinstance(a["name"], str) for a in feed["authors"])
    items = feed["items"]
    assert isinstance(items, list) and items
    assert any("title" in item for item in items) and any("title" not in item for item in items)
    for item in items:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item.get("content_html") or item.get("content_text"), str)
        assert datetime.fromisoformat(item["date_published"]).utcoffset() is not None
        for key in ("url", "image"):
            assert key not in item or item[key].startswith(demo.base + "/")
        assert isinstance(item.get("tags", []), list)
    assert len({item["id"] for item in items}) == len(items)


@pytest.mark.asyncio
async def test_text_with_accents_emoji_and_markup_characters_survives(demo: Demo) -> None:
    demo.advance_to(EVERY * 45)
    newsroom = await demo.feed("newsroom")
    assert newsroom.feed.title == "Col & Cadence: Tour de France"
    assert any('"' in e.summary and "Castagnède" in e.summary for e in newsroom.entries)
    maelle = await demo.feed("maelle")
    assert any("&lt;1'00\"" in e.summary for e in maelle.entries)  # a literal "<" stays text inside the HTML
    teo = await demo.feed("teo")
    assert any("😱" in e.summary for e in teo.entries)


@pytest.mark.asyncio
async def test_conditional_get_answers_304_between_releases(demo: Demo) -> None:
    first_live = demo.upstream.script.steps[demo.upstream.script.initial]
    other = "newsroom" if first_live.source != "newsroom" else "maelle"
    status, headers, _ = await demo.get(demo.url(other))
    etag, last_modified = headers["ETag"], headers["Last-Modified"]
    status, again, body = await demo.get(demo.url(other), **{"If-None-Match": etag})
    assert (status, body, again["ETag"]) == (304, b"", etag)
    status, _, _ = await demo.get(demo.url(other), **{"If-Modified-Since": last_modified})
    assert status == 304

    demo.advance_to(EVERY)  # the first live release belongs to another source
    status, _, _ = await demo.get(demo.url(other), **{"If-None-Match": etag})
    assert status == 304
    status, headers, _ = await demo.get(demo.url(first_live.source))
    status, changed, body = await demo.get(demo.url(first_live.source), **{"If-None-Match": '"stale"'})
    assert status == 200 and body and changed["ETag"] == headers["ETag"]


@pytest.mark.asyncio
async def test_a_release_changes_the_validators_of_its_source(demo: Demo) -> None:
    first_live = demo.upstream.script.steps[demo.upstream.script.initial]
    _, before, _ = await demo.get(demo.url(first_live.source))
    demo.advance_to(EVERY)
    status, after, _ = await demo.get(demo.url(first_live.source), **{"If-None-Match": before["ETag"]})
    assert status == 200 and after["ETag"] != before["ETag"]
    parse = email.utils.parsedate_to_datetime
    assert parse(after["Last-Modified"]) > parse(before["Last-Modified"])
    status, _, _ = await demo.get(demo.url(first_live.source), **{"If-Modified-Since": before["Last-Modified"]})
    assert status == 200


@pytest.mark.asyncio
async def test_an_edited_article_keeps_its_guid_and_changes_in_place(demo: Demo) -> None:
    created, edited = step_index(demo, "crash"), step_index(demo, "crash", edit=True)
    demo.advance_to(demo.offset_of(edited) - 0.5)
    before = [e for e in (await demo.feed("newsroom")).entries if "/crash" in e.link]
    demo.advance_to(demo.offset_of(edited))
    after = [e for e in (await demo.feed("newsroom")).entries if "/crash" in e.link]
    assert len(before) == len(after) == 1
    assert demo.offset_of(created) < demo.offset_of(edited)
    assert (after[0].id, after[0].link, after[0].published) == (before[0].id, before[0].link, before[0].published)
    assert after[0].title != before[0].title and after[0].summary != before[0].summary
    assert "UPDATE" in after[0].summary


@pytest.mark.asyncio
async def test_an_edited_status_keeps_its_guid(demo: Demo) -> None:
    edit = next(s for s in demo.upstream.script.steps if s.edit_of and s.source == "maelle")
    demo.advance_to(demo.offset_of(edit.index) - 0.5)
    before = {e.id: e.summary for e in (await demo.feed("maelle")).entries}
    demo.advance_to(demo.offset_of(edit.index))
    after = {e.id: e.summary for e in (await demo.feed("maelle")).entries}
    assert after.keys() == before.keys()
    assert [k for k in after if after[k] != before[k]] != []


@pytest.mark.asyncio
async def test_the_replay_loops_with_fresh_guids_and_dates(demo: Demo) -> None:
    preview = step_index(demo, "preview")
    demo.advance_to(demo.offset_of(preview, cycle=1) - 0.5)
    first_cycle = await all_entry_ids(demo)
    demo.advance_to(demo.offset_of(preview, cycle=1))
    entries = [e for e in (await demo.feed("newsroom")).entries if "/preview" in e.link]
    assert len(entries) == 2
    replayed, original = entries
    assert replayed.id != original.id and replayed.link != original.link and replayed.title == original.title
    assert replayed.id not in first_cycle
    assert replayed.published_parsed > original.published_parsed

    demo.advance_to(demo.offset_of(len(demo.upstream.script.steps) - 1, cycle=2))
    ids = await all_entry_ids(demo)
    assert len(ids) > len(first_cycle)


@pytest.mark.asyncio
async def test_documents_stay_capped_after_hours(demo: Demo) -> None:
    demo.advance_to(6 * 3600)
    for persona in demo.upstream.script.personas:
        if persona.format == "jsonfeed":
            count = len(json.loads(await demo.doc(persona.key))["items"])
        else:
            count = len((await demo.feed(persona.key)).entries)
        assert 0 < count <= DOC_LIMITS[persona.format]


@pytest.mark.asyncio
async def test_permalinks_and_avatars_open_without_internet(demo: Demo) -> None:
    entry = (await demo.feed("maelle")).entries[0]
    status, headers, body = await demo.get(entry.link)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Maëlle Kervran" in body.decode("utf-8")
    article = (await demo.feed("newsroom")).entries[0]
    status, _, body = await demo.get(article.link)
    assert status == 200 and article.title.encode() in body
    status, _, _ = await demo.get(f"{demo.base}/news/1/nothing")
    assert status == 404
    for persona in demo.upstream.script.personas:
        status, headers, body = await demo.get(f"{demo.base}/img/{persona.avatar}.svg")
        assert status == 200 and ET.fromstring(body).get("aria-label") == persona.label
    status, _, _ = await demo.get(f"{demo.base}/img/missing.svg")
    assert status == 404


@pytest.mark.asyncio
async def test_two_runs_never_share_entry_ids() -> None:
    """A store kept across restarts must see the second run's entries as new, or the demo would stand still."""
    ids: list[set[str]] = []
    for wall in (WALL, WALL + 3600):
        upstream = DemoUpstream(clock=FakeClock(), wall_clock=fixed(wall))
        await upstream.start()
        _, sources = upstream.config()
        try:
            async with aiohttp.ClientSession() as session:
                demo = Demo(upstream, "", FakeClock(), session, {s.id: s for s in sources})
                ids.append(await all_entry_ids(demo))
        finally:
            await upstream.stop()
    assert ids[0] and ids[1] and not ids[0] & ids[1]

"""The built-in demo upstream: releases over time, real wire formats and APIs, edits, deletes and the endless loop."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import email.utils
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import feedparser
import pytest
import pytest_asyncio
from multidict import CIMultiDict

from curation.collectors import CollectorContext
from curation.collectors.fetch import Fetcher
from curation.demo import DOC_LIMITS, DemoUpstream
from curation.demo_formats import Persona
from curation.demo_replay import load_script
from curation.errors import ConfigError, SourceError
from curation.models import EventStatus, Order, Role, Source, SourceKind, SourceStatus
from curation.sources import parse_config

FIXTURES = Path(__file__).parent / "fixtures"
#: 2027-07-19 12:00:00 UTC, a Monday in July
WALL = 1_815_998_400.0
WALL_US = 1_815_998_400_000_000
EVERY = 6.0
MRSS = "{http://search.yahoo.com/mrss/}"
TID = r"[2-7a-z]{13}"
ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
NOT_FOUND = b'{"error":"Record not found"}'


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
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    def advance_to(self, elapsed: float) -> None:
        self.clock.now = 1000.0 + elapsed

    async def get(self, url: str, params: Any = None, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
        async with self.session.get(url, params=params, headers=headers, allow_redirects=False) as response:
            return response.status, response.headers.copy(), await response.read()

    async def api(self, path: str, params: Any = None) -> tuple[int, CIMultiDict[str], Any]:
        status, headers, body = await self.get(self.base + path, params)
        return status, headers, json.loads(body) if body else None

    def persona(self, key: str) -> Persona:
        return next(p for p in self.upstream.script.personas if p.key == key)

    def url(self, key: str) -> str:
        """The document of a persona (feed sources point at it; Mastodon and Bluesky RSS are served too)."""
        return self.base + self.persona(key).doc_path

    async def doc(self, key: str) -> bytes:
        status, _, body = await self.get(self.url(key))
        assert status == 200, key
        return body

    async def feed(self, key: str) -> Any:
        return feedparser.parse(await self.doc(key))

    async def account_id(self, key: str) -> str:
        status, _, account = await self.api("/api/v1/accounts/lookup", {"acct": self.persona(key).handle})
        assert status == 200, key
        return str(account["id"])

    async def statuses(self, key: str, **params: str) -> tuple[CIMultiDict[str], list[dict[str, Any]]]:
        status, headers, body = await self.api(f"/api/v1/accounts/{await self.account_id(key)}/statuses", params)
        assert status == 200, (key, body)
        return headers, body

    async def posts(self, key: str, **params: str) -> list[dict[str, Any]]:
        """The rider's posts as the AppView lists them (postViews, newest first)."""
        query = {"actor": self.persona(key).handle, "filter": "posts_no_replies", "limit": "100", **params}
        status, _, body = await self.api("/xrpc/app.bsky.feed.getAuthorFeed", query)
        assert status == 200, body
        return [item["post"] for item in body["feed"]]

    async def jetstream(self, *dids: str, **params: str) -> aiohttp.ClientWebSocketResponse:
        query = [("wantedCollections", "app.bsky.feed.post"), *(("wantedDids", d) for d in dids), *params.items()]
        ws = await self.session.ws_connect(self.base.replace("http://", "ws://") + "/subscribe", params=query)
        self.sockets.append(ws)
        return ws

    def step(self, step_id: str, action: str = "new") -> int:
        """Index of the step that publishes (or edits, or deletes) `step_id`."""
        for step in self.upstream.script.steps:
            kind = "edit" if step.edit_of else "delete" if step.delete_of else "new"
            if step.id == step_id and kind == action:
                return step.index
        raise AssertionError(f"no {action} step {step_id!r}")

    def offset_of(self, index: int, cycle: int = 0) -> float:
        """When step `index` of `cycle` is released (the first batch at 0, then one per EVERY)."""
        seq = cycle * len(self.upstream.script.steps) + index
        return max(0, seq - self.upstream.script.initial + 1) * EVERY


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


@pytest_asyncio.fixture
async def demo() -> AsyncIterator[Demo]:
    clock = FakeClock()
    upstream = DemoUpstream(clock=clock, release_every=EVERY, wall_clock=fixed(WALL), stream_poll=0.02)
    base = await upstream.start()
    _, sources = upstream.config()
    try:
        async with aiohttp.ClientSession() as session:
            demo = Demo(upstream, base, clock, session, {s.id: s for s in sources})
            try:
                yield demo
            finally:
                for ws in demo.sockets:
                    await ws.close()
    finally:
        await upstream.stop()


def keys_by_format(demo: Demo, fmt: str) -> list[str]:
    return [p.key for p in demo.upstream.script.personas if p.format == fmt]


async def all_entry_ids(demo: Demo) -> set[str]:
    """Every entry key the collectors would see: feed ids, Mastodon status URIs, Bluesky at:// URIs."""
    ids: set[str] = set()
    for persona in demo.upstream.script.personas:
        if persona.format == "jsonfeed":
            ids.update(item["id"] for item in json.loads(await demo.doc(persona.key))["items"])
        elif persona.format == "rss":
            ids.update(entry.id for entry in (await demo.feed(persona.key)).entries)
        elif persona.format == "mastodon":
            ids.update(status["uri"] for status in (await demo.statuses(persona.key, limit="40"))[1])
        else:
            ids.update(post["uri"] for post in await demo.posts(persona.key))
    return ids


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 3.0) -> tuple[dict[str, Any], str]:
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data), message.data


def status_by_text(statuses: list[dict[str, Any]], words: str) -> dict[str, Any]:
    [found] = [s for s in statuses if words in s["content"]]
    return found


# -- configuration ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_config_points_every_source_at_the_upstream(demo: Demo) -> None:
    event, sources = demo.upstream.config()
    assert event.slug == "demo-tour-stage"
    assert "Tour de France" in event.title and "demo" in event.title
    assert (event.language, event.order, event.status) == ("en", Order.NEWEST, EventStatus.LIVE)
    assert event.sources == tuple(s.id for s in sources)
    assert demo.base == f"http://{demo.upstream.origin}" and demo.upstream.origin.startswith("127.0.0.1:")
    kinds = {s.id: s.kind for s in sources}
    assert kinds == {
        "demo-newsroom": SourceKind.FEED,
        "demo-team": SourceKind.FEED,
        "demo-maelle": SourceKind.MASTODON,
        "demo-ruairi": SourceKind.MASTODON,
        "demo-aurelien": SourceKind.BLUESKY,
        "demo-kasper": SourceKind.BLUESKY,
        "demo-teo": SourceKind.BLUESKY,
    }
    roles = {s.kind: {t.role for t in sources if t.kind is s.kind} for s in sources}
    assert roles[SourceKind.MASTODON] == {Role.JOURNALIST} and roles[SourceKind.BLUESKY] == {Role.ATHLETE}
    for source in sources:
        assert source.interval == 5.0 and source.backfill >= max(DOC_LIMITS.values())
        if source.kind is SourceKind.FEED:
            assert source.url is not None and source.url.startswith(demo.base + "/")
        else:
            assert source.url is None
    maelle, teo = demo.sources["demo-maelle"], demo.sources["demo-teo"]
    assert dict(maelle.options) == {"instance": demo.base, "account": "maelle", "replies": False, "boosts": True}
    jetstream = f"ws://{demo.upstream.origin}/subscribe"
    assert dict(teo.options) == {"actor": "teobalaguer.bsky.social", "appview": demo.base, "jetstream": jetstream}


@pytest.mark.asyncio
async def test_sources_are_what_the_same_sources_yaml_would_give(demo: Demo) -> None:
    """Built the way curation/sources.py builds them, so the collectors read the options they expect."""
    _, sources = demo.upstream.config()
    lines = ["events:", "  - slug: demo", "    title: Demo", "    sources:"]
    for source in sources:
        lines += [f"      - id: {source.id}", f"        kind: {source.kind}", f"        role: {source.role}"]
        lines += [
            f"        label: {json.dumps(source.label)}",
            "        interval: 5s",
            f"        backfill: {source.backfill}",
        ]
        if source.kind is SourceKind.FEED:
            lines.append(f"        url: {source.url}")
        elif source.kind is SourceKind.MASTODON:
            lines += [f"        instance: {demo.base}/", f"        account: '@{source.options['account']}'"]
        else:
            lines += [f"        actor: '@{source.options['actor']}'", f"        appview: {demo.base}"]
            lines.append(f"        jetstream: {source.options['jetstream']}")
    parsed = parse_config("\n".join(lines) + "\n", min_interval=1.0).sources
    for source in sources:
        assert replace(parsed[source.id], line=None) == source


@pytest.mark.asyncio
async def test_config_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        DemoUpstream().config()


SCRIPT_HEAD = """{"initial": 1, "images": {"pic": {"caption": "c", "hue": 1}}, "personas": [
  {"key": "news", "format": "rss", "role": "editorial", "label": "N", "name": "N", "bio": "", "color": "#000",
   "path": "/n.xml"},
  {"key": "rider", "format": "bluesky", "role": "athlete", "label": "R", "name": "R", "bio": "", "color": "#000",
   "handle": "rider.bsky.social"}],
 "steps": [{"id": "a", "source": "news", "ago": 5, "title": "A", "text": "a"},
           {"id": "b", "source": "rider", "text": "b"},
"""


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ('{"delete": "a"}', "only Mastodon statuses and Bluesky posts can be deleted"),
        ('{"edit": "b", "text": "b2"}', "Bluesky posts cannot be edited"),
        ('{"id": "c", "source": "rider", "text": "c", "image": "pic"}', "image must be in the first batch"),
        ('{"id": "c", "source": "rider", "text": "see {link}", "link": "zz"}', "link to unknown or later entry"),
        ('{"id": "c", "source": "rider", "text": "no placeholder", "link": "a"}', "`{link}` must appear once"),
        ('{"delete": "b"}, {"delete": "b"}', "already deleted"),
        ('{"delete": "later"}', "delete of unknown or later entry"),
    ],
)
def test_script_mistakes_are_refused_with_their_step(tmp_path: Path, step: str, message: str) -> None:
    path = tmp_path / "script.json"
    path.write_text(SCRIPT_HEAD + step + "]}", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_script(path)
    assert "steps[" in str(info.value) and str(path) in str(info.value)


def test_the_shipped_script_edits_and_deletes_within_the_first_ninety_seconds() -> None:
    script = load_script()
    formats = {p.key: p.format for p in script.personas}
    early = {
        (formats[s.source], "edit" if s.edit_of else "delete" if s.delete_of else "new")
        for s in script.steps[script.initial :]
        if (s.index - script.initial + 1) * 6.0 <= 90  # the default release_every of `make run`
    }
    assert {("mastodon", "edit"), ("mastodon", "delete"), ("bluesky", "delete")} <= early
    assert {("rss", "new"), ("jsonfeed", "new"), ("mastodon", "new"), ("bluesky", "new")} <= early


# -- the release schedule -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_first_batch_is_out_at_start_then_one_entry_per_release(demo: Demo) -> None:
    first = await all_entry_ids(demo)
    assert 8 <= len(first) <= 12
    for persona in demo.upstream.script.personas:  # no source starts empty
        if persona.format == "mastodon":
            assert (await demo.statuses(persona.key))[1]
        elif persona.format == "bluesky":
            assert await demo.posts(persona.key)
        else:
            body = await demo.doc(persona.key)
            assert json.loads(body)["items"] if persona.format == "jsonfeed" else feedparser.parse(body).entries

    demo.advance_to(EVERY - 0.1)
    assert await all_entry_ids(demo) == first
    demo.advance_to(EVERY)
    assert len(await all_entry_ids(demo) - first) == 1

    script = demo.upstream.script
    assert all(s.is_new for s in script.steps[script.initial : script.initial + 9])
    demo.advance_to(EVERY * 9)
    assert len(await all_entry_ids(demo) - first) == 9  # nine releases, nine new entries, none gone yet


@pytest.mark.asyncio
async def test_releases_interleave_articles_and_social_posts(demo: Demo) -> None:
    script = demo.upstream.script
    live = [s for s in script.steps[script.initial :] if s.is_new][:8]
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
    _, statuses = await demo.statuses("maelle")
    created = datetime.fromisoformat(statuses[0]["created_at"])
    assert WALL < created.timestamp() <= WALL + EVERY * 20


# -- documents ------------------------------------------------------------------------------------


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
async def test_mastodon_account_rss_keeps_the_real_shape(demo: Demo) -> None:
    real = ET.parse(FIXTURES / "feeds" / "mastodon_rss_account_hachyderm.xml").getroot()
    real_channel, real_item = _skeleton(real[0])
    demo.advance_to(EVERY * 40)
    for key in keys_by_format(demo, "mastodon"):
        body = await demo.doc(key)
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<rss xmlns:media=')
        root = ET.fromstring(body)
        channel_tags, _ = _skeleton(root[0])
        assert channel_tags == real_channel
        assert root.findtext("channel/description", "").startswith(f"Public posts from @{key}@127.0.0.1")
        for item in root.iter("item"):
            tags = list(dict.fromkeys(c.tag for c in item))
            assert [t for t in real_item if t in tags] == tags  # same elements, same order
            assert item.find("title") is None
            guid = item.find("guid")
            assert guid is not None and guid.get("isPermaLink") == "true" and guid.text == item.findtext("link")
            assert re.fullmatch(rf"{re.escape(demo.base)}/@{key}/\d{{17,19}}", guid.text or "")
            assert email.utils.parsedate_to_datetime(item.findtext("pubDate", "")).tzinfo is not None
            assert item.findtext("description", "").startswith("<p>")  # escaped HTML, once unescaped
    contents = ET.fromstring(await demo.doc("maelle")).findall(f"channel/item/{MRSS}content")
    assert contents
    for content in contents:
        assert list(content.attrib) == ["url", "type", "fileSize", "medium"]
        description = content.find(f"{MRSS}description")
        assert description is not None and description.get("type") == "plain" and description.text


@pytest.mark.asyncio
async def test_mastodon_rss_and_api_agree_on_permalinks(demo: Demo) -> None:
    links = [e.link for e in (await demo.feed("ruairi")).entries]
    _, statuses = await demo.statuses("ruairi")
    assert links == [s["url"] for s in statuses]


@pytest.mark.asyncio
async def test_bluesky_profile_rss_keeps_the_real_shape(demo: Demo) -> None:
    demo.advance_to(EVERY * 45)
    for key in keys_by_format(demo, "bluesky"):
        persona = demo.persona(key)
        body = await demo.doc(key)
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><description>')
        assert b"\n" not in body.split(b"\n", 1)[1]  # Go's encoding/xml writes one line
        channel = ET.fromstring(body)[0]
        assert channel.findtext("title") == f"@{persona.handle} - {persona.name}"
        items = channel.findall("item")
        assert items
        for item in items:
            assert [c.tag for c in item] == ["link", "description", "pubDate", "guid"]
            link = item.findtext("link", "")
            match = re.fullmatch(rf"https://bsky\.app/profile/{re.escape(persona.handle)}/post/({TID})", link)
            assert match
            guid = item.find("guid")
            assert guid is not None and guid.get("isPermaLink") == "false"
            assert guid.text == f"at://{persona.did}/app.bsky.feed.post/{match[1]}"
            assert re.fullmatch(r"\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2} [+-]\d{4}", item.findtext("pubDate", ""))
            assert "<" not in item.findtext("description", "<")  # plain text, not HTML
        # the profile RSS lists what the AppView lists
        assert [i.findtext("guid") for i in items] == [p["uri"] for p in await demo.posts(key)][: len(items)]
    assert b"&#39;" in await demo.doc("aurelien")  # Go escapes apostrophes as &#39;
    status, headers, _ = await demo.get(f"{demo.base}/profile/{demo.persona('teo').handle}/rss")
    assert status == 302 and demo.base + headers["Location"] == demo.url("teo")
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
    _, statuses = await demo.statuses("maelle")
    # a literal "<" stays text inside the HTML, quotes as Rails escapes them
    assert any("&lt;1&#39;00&quot;" in s["content"] for s in statuses)
    texts = [p["record"]["text"] for p in await demo.posts("teo")]
    assert any("😱" in text for text in texts)


@pytest.mark.asyncio
async def test_conditional_get_answers_304_between_releases(demo: Demo) -> None:
    first_live = demo.upstream.script.steps[demo.upstream.script.initial]
    other = "newsroom" if first_live.source != "newsroom" else "team"
    assert demo.persona(first_live.source).format in ("rss", "jsonfeed")
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
    created, edited = demo.step("crash"), demo.step("crash", "edit")
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
async def test_the_replay_loops_with_fresh_ids_and_dates(demo: Demo) -> None:
    preview = demo.step("preview")
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
    _, statuses = await demo.statuses("maelle", limit="40")
    crash = [s for s in statuses if "Ostendorp sitting at the roadside" in s["content"]]
    assert len(crash) == 3 and len({s["uri"] for s in crash}) == 3  # one per cycle, each edited in its cycle
    assert all(s["edited_at"] for s in crash)


@pytest.mark.asyncio
async def test_documents_stay_capped_after_hours(demo: Demo) -> None:
    demo.advance_to(6 * 3600)
    for persona in demo.upstream.script.personas:
        if persona.format == "jsonfeed":
            count = len(json.loads(await demo.doc(persona.key))["items"])
        else:
            count = len((await demo.feed(persona.key)).entries)
        assert 0 < count <= DOC_LIMITS[persona.format]
    assert len((await demo.statuses("ruairi", limit="40"))[1]) == 40
    assert len(await demo.posts("kasper")) == 100


@pytest.mark.asyncio
async def test_permalinks_avatars_and_hashtag_pages_open_without_internet(demo: Demo) -> None:
    _, statuses = await demo.statuses("maelle")
    status, headers, body = await demo.get(statuses[0]["url"])
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Maëlle Kervran" in body.decode("utf-8")
    status, _, body = await demo.get(statuses[0]["account"]["url"])
    assert status == 200 and "@maelle" in body.decode("utf-8")
    tag = statuses[0]["tags"][0]
    status, _, body = await demo.get(tag["url"])
    assert status == 200 and f"#{tag['name']}" in body.decode("utf-8")
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
        base = await upstream.start()
        _, sources = upstream.config()
        try:
            async with aiohttp.ClientSession() as session:
                demo = Demo(upstream, base, FakeClock(), session, {s.id: s for s in sources})
                ids.append(await all_entry_ids(demo))
        finally:
            await upstream.stop()
    assert ids[0] and ids[1] and not ids[0] & ids[1]


# -- Mastodon REST API ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_mastodon_lookup_finds_the_reporters_and_404s_the_rest(demo: Demo) -> None:
    real = fixture_json("mastodon/account_lookup.json")
    status, headers, account = await demo.api("/api/v1/accounts/lookup", {"acct": "maelle"})
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    assert list(account) == list(real)
    assert (account["username"], account["acct"], account["display_name"]) == ("maelle", "maelle", "Maëlle Kervran")
    assert re.fullmatch(r"\d{18}", account["id"]) and account["url"] == f"{demo.base}/@maelle"
    assert (await demo.get(account["avatar_static"]))[0] == 200
    status, _, same = await demo.api("/api/v1/accounts/lookup", {"acct": f"@maelle@{demo.upstream.origin}"})
    assert status == 200 and same["id"] == account["id"]
    assert (await demo.api(f"/api/v1/accounts/{account['id']}"))[2]["acct"] == "maelle"

    for acct in ("nobody", "maelle@elsewhere.example", "castagnede.bsky.social"):
        status, headers, body = await demo.get(demo.base + "/api/v1/accounts/lookup", {"acct": acct})
        assert (status, body) == (404, NOT_FOUND)
        assert headers["Content-Type"] == "application/json; charset=utf-8"
    status, _, body = await demo.get(demo.base + "/api/v1/accounts/1234/statuses")
    assert (status, body) == (404, NOT_FOUND)


@pytest.mark.asyncio
async def test_mastodon_statuses_have_the_real_shape(demo: Demo) -> None:
    real = fixture_json("mastodon/account_statuses_limit5.json")[0]
    demo.advance_to(EVERY * 50)
    for key in keys_by_format(demo, "mastodon"):
        headers, statuses = await demo.statuses(key)
        assert statuses
        ids = [s["id"] for s in statuses]
        assert ids == sorted(ids, key=lambda i: (len(i), i), reverse=True)  # newest first, ids as strings
        for status in statuses:
            assert list(status) == list(real)
            assert list(status["account"]) == list(real["account"])
            assert status["account"]["acct"] == key
            assert status["visibility"] == "public" and status["reblog"] is None
            assert status["in_reply_to_id"] is None and status["emojis"] == []
            assert re.fullmatch(r"\d{17,19}", status["id"])
            assert status["uri"] == f"{demo.base}/users/{key}/statuses/{status['id']}"
            assert status["url"] == f"{demo.base}/@{key}/{status['id']}"
            assert re.fullmatch(ISO_MS, status["created_at"])
            assert status["content"].startswith("<p>") and status["content"].endswith("</p>")
        assert headers["Cache-Control"] == "private, no-store" and headers["ETag"].startswith('W/"')
    _, statuses = await demo.statuses("maelle")
    with_media = [s for s in statuses if s["media_attachments"]]
    assert with_media
    for status in with_media:
        [media] = status["media_attachments"]
        assert media["type"] == "image" and media["description"]
        assert int(media["id"]) < int(status["id"])
        response, headers, body = await demo.get(media["preview_url"])
        assert response == 200 and headers["Content-Type"] == "image/svg+xml" and body.startswith(b"<svg")


@pytest.mark.asyncio
async def test_mastodon_content_is_formatted_like_a_local_status(demo: Demo) -> None:
    _, statuses = await demo.statuses("ruairi")
    status = status_by_text(statuses, "My preview")
    tag = f'<a href="{demo.base}/tags/TDF2026" class="mention hashtag" rel="tag">#<span>TDF2026</span></a>'
    assert tag in status["content"]
    assert status["tags"] == [{"name": "TDF2026", "url": f"{demo.base}/tags/TDF2026"}]
    assert "today&#39;s" in status["content"]
    article = next(e for e in (await demo.feed("newsroom")).entries if e.link.endswith("/preview"))
    rest = article.link.removeprefix("http://")
    link = (
        f'<a href="{article.link}" target="_blank" rel="nofollow noopener" translate="no">'
        f'<span class="invisible">http://</span><span class="ellipsis">{rest[:30]}</span>'
        f'<span class="invisible">{rest[30:]}</span></a>'
    )
    assert link in status["content"]
    card = status["card"]
    assert list(card) == list(fixture_json("mastodon/status_local_card.json")["card"])
    assert (card["type"], card["url"], card["title"], card["html"]) == ("link", article.link, article.title, "")
    assert card["provider_name"] == "Col & Cadence" and card["description"].startswith("Aubisque, Soulor")
    assert (await demo.get(card["image"]))[0] == 200
    assert sum(1 for s in statuses if s["card"]) == 1

    demo.advance_to(demo.offset_of(demo.step("ruairi-replay")))
    _, statuses = await demo.statuses("ruairi")
    warned = status_by_text(statuses, "replays of the Soulor crash")
    assert (warned["sensitive"], warned["spoiler_text"]) == (True, "Crash footage")
    assert all(s["spoiler_text"] == "" and not s["sensitive"] for s in statuses if s is not warned)


@pytest.mark.asyncio
async def test_mastodon_paging_follows_max_id_since_id_and_min_id(demo: Demo) -> None:
    demo.advance_to(EVERY * 58 * 5)  # five cycles: more than 40 statuses
    account = await demo.account_id("maelle")
    url = f"{demo.base}/api/v1/accounts/{account}/statuses"
    headers, everything = await demo.statuses("maelle", limit="40")
    assert len(everything) == 40 and len((await demo.statuses("maelle"))[1]) == 20
    assert len((await demo.statuses("maelle", limit="1000"))[1]) == 40  # capped at twice the default
    ids = [s["id"] for s in everything]

    headers, page = await demo.statuses("maelle", limit="5")
    assert [s["id"] for s in page] == ids[:5]
    assert headers["Link"] == (
        f'<{url}?limit=5&max_id={ids[4]}>; rel="next", <{url}?limit=5&min_id={ids[0]}>; rel="prev"'
    )
    _, older = await demo.statuses("maelle", limit="5", max_id=ids[4])
    assert [s["id"] for s in older] == ids[5:10]
    _, after = await demo.statuses("maelle", limit="3", min_id=ids[9])
    assert [s["id"] for s in after] == ids[6:9]  # the three immediately above min_id, newest first
    _, newest = await demo.statuses("maelle", limit="3", since_id=ids[9])
    assert [s["id"] for s in newest] == ids[:3]  # since_id: the newest three, leaving a gap
    _, between = await demo.statuses("maelle", min_id=ids[9], max_id=ids[5])
    assert [s["id"] for s in between] == ids[6:9]

    headers, _ = await demo.statuses("maelle", exclude_replies="true", exclude_reblogs="true", limit="2")
    assert headers["Link"].startswith(f"<{url}?exclude_reblogs=true&exclude_replies=true&limit=2&max_id=")
    headers, last = await demo.statuses("maelle", limit="40", min_id=ids[1])
    assert [s["id"] for s in last] == ids[:1] and 'rel="next"' not in headers["Link"]  # a short page: no next
    headers, empty = await demo.statuses("maelle", min_id=ids[0])
    assert empty == [] and "Link" not in headers


@pytest.mark.asyncio
async def test_polling_with_min_id_finds_exactly_the_new_status(demo: Demo) -> None:
    release = demo.step("maelle-descent")
    demo.advance_to(demo.offset_of(release) - 1)
    _, before = await demo.statuses("maelle")
    _, none = await demo.statuses("maelle", min_id=before[0]["id"], limit="40")
    assert none == []
    demo.advance_to(demo.offset_of(release))
    _, new = await demo.statuses("maelle", min_id=before[0]["id"], limit="40")
    assert len(new) == 1 and "Descent of the Soulor" in new[0]["content"]
    assert (len(new[0]["id"]), new[0]["id"]) > (len(before[0]["id"]), before[0]["id"])


@pytest.mark.asyncio
async def test_an_edited_status_keeps_its_id_and_sets_edited_at(demo: Demo) -> None:
    created, edited = demo.step("maelle-crash"), demo.step("maelle-crash", "edit")
    demo.advance_to(demo.offset_of(created))
    _, statuses = await demo.statuses("maelle")
    before = status_by_text(statuses, "roadside")
    assert "Ostendrop" in before["content"] and before["edited_at"] is None
    demo.advance_to(demo.offset_of(edited) - 0.5)
    assert (await demo.api(f"/api/v1/statuses/{before['id']}"))[2] == before
    order = [s["id"] for s in (await demo.statuses("maelle"))[1]]

    demo.advance_to(demo.offset_of(edited))
    _, statuses = await demo.statuses("maelle")
    after = status_by_text(statuses, "roadside")
    assert [after[k] for k in ("id", "uri", "url", "created_at")] == [
        before[k] for k in ("id", "uri", "url", "created_at")
    ]
    assert "Ostendorp sitting" in after["content"] and "Ostendrop" not in after["content"]
    assert after["edited_at"] == (
        datetime.fromtimestamp(WALL, UTC) + timedelta(seconds=demo.offset_of(edited))
    ).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert [s["id"] for s in statuses] == order  # an edit is no new status: it stays in its place
    status, _, fetched = await demo.api(f"/api/v1/statuses/{after['id']}")
    assert status == 200 and fetched == after


@pytest.mark.asyncio
async def test_a_deleted_status_answers_404_and_leaves_the_list(demo: Demo) -> None:
    created, deleted = demo.step("ruairi-abandon"), demo.step("ruairi-abandon", "delete")
    demo.advance_to(demo.offset_of(created))
    _, statuses = await demo.statuses("ruairi")
    wrong = status_by_text(statuses, "has abandoned")
    demo.advance_to(demo.offset_of(deleted) - 0.5)
    assert (await demo.get(f"{demo.base}/api/v1/statuses/{wrong['id']}"))[0] == 200
    assert (await demo.get(wrong["url"]))[0] == 200

    demo.advance_to(demo.offset_of(deleted))
    status, headers, body = await demo.get(f"{demo.base}/api/v1/statuses/{wrong['id']}")
    assert (status, body) == (404, NOT_FOUND) and headers["Content-Type"] == "application/json; charset=utf-8"
    _, statuses = await demo.statuses("ruairi")
    assert wrong["id"] not in {s["id"] for s in statuses} and statuses
    assert (await demo.get(wrong["url"]))[0] == 404
    assert wrong["uri"] not in await all_entry_ids(demo)


@pytest.mark.asyncio
async def test_mastodon_rate_limit_headers_count_down_then_429() -> None:
    clock = FakeClock()
    upstream = DemoUpstream(clock=clock, wall_clock=fixed(WALL + 10.5), rate_limit=3)
    base = await upstream.start()
    try:
        async with aiohttp.ClientSession() as session:
            seen: list[tuple[int, str, str]] = []
            for _ in range(4):
                async with session.get(f"{base}/api/v1/accounts/lookup?acct=ruairi") as response:
                    headers = response.headers
                    seen.append((response.status, headers["X-RateLimit-Remaining"], headers["X-RateLimit-Limit"]))
                    reset = headers["X-RateLimit-Reset"]
                    body = await response.read()
            assert seen == [(200, "2", "3"), (200, "1", "3"), (200, "0", "3"), (429, "0", "3")]
            assert body == b'{"error":"Too many requests"}' and int(headers["Retry-After"]) > 0
            # rack-attack's 5-minute window, the request's sub-second part kept
            assert reset == "2027-07-19T12:05:00.500000Z"
            async with session.get(f"{base}/img/preview.svg") as response:
                assert response.status == 200 and "X-RateLimit-Limit" not in response.headers
            clock.now += 300
            async with session.get(f"{base}/api/v1/accounts/lookup?acct=ruairi") as response:
                assert response.status == 200 and response.headers["X-RateLimit-Remaining"] == "2"
    finally:
        await upstream.stop()


@pytest.mark.asyncio
async def test_mastodon_instance_names_its_streaming_host(demo: Demo) -> None:
    status, _, instance = await demo.api("/api/v2/instance")
    assert status == 200 and instance["domain"] == demo.upstream.origin
    assert instance["configuration"]["urls"]["streaming"] == f"ws://{demo.upstream.origin}"
    assert instance["configuration"]["timelines_access"]["hashtag_feeds"]["local"] == "public"
    assert re.fullmatch(r"4\.\d+\.\d+", instance["version"])


# -- Bluesky AppView ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_appview_resolves_the_riders_handles(demo: Demo) -> None:
    teo = demo.persona("teo")
    status, headers, body = await demo.api("/xrpc/com.atproto.identity.resolveHandle", {"handle": teo.handle})
    assert (status, body) == (200, {"did": teo.did}) and headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r"did:plc:[a-z2-7]{24}", teo.did)
    status, _, body = await demo.api("/xrpc/com.atproto.identity.resolveHandle", {"handle": "nobody.bsky.social"})
    assert status == 400 and body["error"] == "InvalidRequest"
    status, _, body = await demo.api("/xrpc/app.bsky.feed.getAuthorFeed", {"actor": "nobody.bsky.social"})
    assert (status, body) == (400, {"error": "InvalidRequest", "message": "Profile not found"})
    status, _, body = await demo.api("/xrpc/app.bsky.feed.searchPosts", {"q": "tour"})
    assert status == 501 and body["error"] == "MethodNotImplemented"


@pytest.mark.asyncio
async def test_author_feed_posts_have_the_real_post_view_shape(demo: Demo) -> None:
    real = fixture_json("bluesky/getPostThread_recordWithMedia.json")["thread"]["post"]
    demo.advance_to(EVERY * 58)
    for key in keys_by_format(demo, "bluesky"):
        persona = demo.persona(key)
        by_did = await demo.posts(key, actor=persona.did)
        posts = await demo.posts(key)
        assert posts and by_did == posts
        assert [p["indexedAt"] for p in posts] == sorted((p["indexedAt"] for p in posts), reverse=True)
        for post in posts:
            assert set(real) - {"embed"} <= set(post) and list(post)[:4] == ["uri", "cid", "author", "record"]
            assert list(post["author"]) == list(real["author"])
            assert (post["author"]["did"], post["author"]["handle"]) == (persona.did, persona.handle)
            assert re.fullmatch(rf"at://{persona.did}/app\.bsky\.feed\.post/{TID}", post["uri"])
            assert re.fullmatch(r"bafyrei[a-z2-7]{52}", post["cid"])
            record = post["record"]
            assert record["$type"] == "app.bsky.feed.post" and list(record) == sorted(record)
            assert record["langs"] == ["en"] and re.fullmatch(ISO_MS, record["createdAt"])
            assert post["indexedAt"] == record["createdAt"]
            assert len({p["uri"] for p in posts}) == len(posts)
    [kasper_image] = [p for p in await demo.posts("kasper") if "embed" in p]
    embed = kasper_image["embed"]
    assert embed["$type"] == "app.bsky.embed.images#view"
    [image] = embed["images"]
    assert image["alt"] and set(image) == {"thumb", "fullsize", "alt", "aspectRatio"}
    for url in (image["thumb"], image["fullsize"]):
        assert url.startswith(demo.base + "/img/") and (await demo.get(url))[0] == 200
    blob = kasper_image["record"]["embed"]["images"][0]["image"]
    assert blob["$type"] == "blob" and re.fullmatch(r"bafkrei[a-z2-7]{52}", blob["ref"]["$link"])
    assert await demo.posts("kasper", filter="posts_with_media") == [kasper_image]


@pytest.mark.asyncio
async def test_facets_point_at_the_right_utf8_bytes(demo: Demo) -> None:
    demo.advance_to(EVERY * 58)  # one whole cycle
    checked, after_non_ascii, links = 0, 0, []
    for key in keys_by_format(demo, "bluesky"):
        for post in await demo.posts(key):
            text = post["record"]["text"]
            data = text.encode("utf-8")
            for facet in post["record"].get("facets", []):
                start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
                covered = data[start:end].decode("utf-8")  # never splits a character
                [feature] = facet["features"]
                if feature["$type"] == "app.bsky.richtext.facet#tag":
                    assert covered == "#" + feature["tag"]
                else:
                    assert feature["$type"] == "app.bsky.richtext.facet#link"
                    shown = covered.removesuffix("...")
                    assert covered.endswith("...") and feature["uri"].removeprefix("http://").startswith(shown)
                    links.append((post, feature["uri"]))
                checked += 1
                after_non_ascii += not data[:start].isascii()
    assert checked >= 4 and after_non_ascii >= 2 and links
    post, uri = links[0]
    assert (await demo.get(uri))[0] == 200  # the linked press release opens offline
    external = post["embed"]["external"]
    assert post["embed"]["$type"] == "app.bsky.embed.external#view" and external["uri"] == uri
    assert external["title"].startswith("Stage win!") and post["record"]["embed"]["external"]["uri"] == uri


@pytest.mark.asyncio
async def test_author_feed_pages_backwards_with_its_cursor(demo: Demo) -> None:
    demo.advance_to(EVERY * 58 * 3)
    query = {"actor": demo.persona("teo").handle, "limit": "3"}
    status, _, first = await demo.api("/xrpc/app.bsky.feed.getAuthorFeed", query)
    assert status == 200 and len(first["feed"]) == 3 and isinstance(first["cursor"], str)
    _, _, second = await demo.api("/xrpc/app.bsky.feed.getAuthorFeed", {**query, "cursor": first["cursor"]})
    everything = await demo.posts("teo")
    assert [i["post"]["uri"] for i in first["feed"] + second["feed"]] == [p["uri"] for p in everything[:6]]
    status, _, body = await demo.api("/xrpc/app.bsky.feed.getAuthorFeed", {**query, "limit": "101"})
    assert status == 400 and body["error"] == "InvalidRequest"


@pytest.mark.asyncio
async def test_profiles_and_posts_by_uri(demo: Demo) -> None:
    teo, kasper = demo.persona("teo"), demo.persona("kasper")
    actors = [("actors", teo.did), ("actors", "nobody.bsky.social"), ("actors", kasper.handle)]
    status, _, body = await demo.api("/xrpc/app.bsky.actor.getProfiles", actors)
    assert status == 200
    assert [(p["did"], p["handle"], p["displayName"]) for p in body["profiles"]] == [
        (teo.did, teo.handle, teo.name),
        (kasper.did, kasper.handle, kasper.name),
    ]
    assert (await demo.get(body["profiles"][0]["avatar"]))[0] == 200
    posts = await demo.posts("teo")
    status, _, body = await demo.api("/xrpc/app.bsky.feed.getPosts", [("uris", p["uri"]) for p in posts])
    assert body == {"posts": posts}


# -- Jetstream ------------------------------------------------------------------------------------


def time_us(demo: Demo, index: int) -> int:
    return WALL_US + int(demo.offset_of(index) * 1_000_000)


@pytest.mark.asyncio
async def test_jetstream_sends_each_rider_post_at_its_release_in_the_v1_shape(demo: Demo) -> None:
    real = json.loads((FIXTURES / "bluesky" / "jetstream_v1_posts.jsonl").read_text().splitlines()[1])
    teo = demo.persona("teo")
    everyone, kasper_only = await demo.jetstream(), await demo.jetstream(demo.persona("kasper").did)
    release = demo.step("teo-descent")
    demo.advance_to(demo.offset_of(release))
    event, raw = await frame(everyone)
    assert raw == json.dumps(event, ensure_ascii=False, separators=(",", ":"))  # compact, UTF-8
    assert list(event) == list(real) and list(event["commit"]) == list(real["commit"])
    assert (event["did"], event["kind"], event["time_us"]) == (teo.did, "commit", time_us(demo, release))
    commit = event["commit"]
    assert (commit["operation"], commit["collection"]) == ("create", "app.bsky.feed.post")
    assert re.fullmatch(TID, commit["rev"]) and re.fullmatch(TID, commit["rkey"])
    [post] = [p for p in await demo.posts("teo") if p["uri"].endswith("/" + commit["rkey"])]
    assert (commit["record"], commit["cid"]) == (post["record"], post["cid"])  # the AppView's very record

    kasper_post = demo.step("kasper-evening")
    demo.advance_to(demo.offset_of(kasper_post))
    event, _ = await frame(kasper_only)  # every post of the others in between was filtered out
    assert event["did"] == demo.persona("kasper").did and event["time_us"] == time_us(demo, kasper_post)
    assert "Mancuso was very strong" in event["commit"]["record"]["text"]


@pytest.mark.asyncio
async def test_jetstream_sends_the_delete_and_the_appview_forgets_the_post(demo: Demo) -> None:
    real = json.loads((FIXTURES / "bluesky" / "jetstream_v1_posts.jsonl").read_text().splitlines()[6])
    assert real["commit"]["operation"] == "delete"
    teo = demo.persona("teo")
    ws = await demo.jetstream(teo.did)
    created, deleted = demo.step("teo-noo"), demo.step("teo-noo", "delete")
    demo.advance_to(demo.offset_of(created))
    event = (await frame(ws))[0]
    if "on the ground" not in event["commit"]["record"]["text"]:
        event = (await frame(ws))[0]  # teo-descent first
    rkey = event["commit"]["rkey"]
    uri = f"at://{teo.did}/app.bsky.feed.post/{rkey}"
    assert uri in {p["uri"] for p in await demo.posts("teo")}

    demo.advance_to(demo.offset_of(deleted))
    event, _ = await frame(ws)
    assert list(event) == list(real) and list(event["commit"]) == list(real["commit"])
    assert event["commit"]["operation"] == "delete" and event["commit"]["rkey"] == rkey
    assert (event["did"], event["time_us"]) == (teo.did, time_us(demo, deleted))
    assert uri not in {p["uri"] for p in await demo.posts("teo")}
    assert (await demo.api("/xrpc/app.bsky.feed.getPosts", {"uris": uri}))[2] == {"posts": []}


@pytest.mark.asyncio
async def test_jetstream_replays_from_the_cursor(demo: Demo) -> None:
    teo = demo.persona("teo")
    descent, noo = demo.step("teo-descent"), demo.step("teo-noo")
    demo.advance_to(demo.offset_of(noo) + 1)
    ws = await demo.jetstream(teo.did, cursor=str(time_us(demo, descent)))
    first, second = (await frame(ws))[0], (await frame(ws))[0]
    assert [first["time_us"], second["time_us"]] == [time_us(demo, descent), time_us(demo, noo)]
    assert "wrist hurt" in first["commit"]["record"]["text"] and "on the ground" in second["commit"]["record"]["text"]

    later = await demo.jetstream(teo.did, cursor=str(time_us(demo, descent) + 1))
    assert (await frame(later))[0]["time_us"] == time_us(demo, noo)

    # from before the start: the first batch too, its picture as a blob (collectors map it to the CDN)
    history = await demo.jetstream(cursor=str(WALL_US - 90 * 60 * 1_000_000))
    early = [(await frame(history))[0] for _ in range(3)]
    assert [e["did"] for e in early] == [demo.persona(k).did for k in ("aurelien", "kasper", "teo")]
    assert [e["time_us"] for e in early] == sorted(e["time_us"] for e in early) and early[2]["time_us"] < WALL_US
    [image] = early[1]["commit"]["record"]["embed"]["images"]
    assert image["image"]["$type"] == "blob" and image["image"]["mimeType"] == "image/jpeg"

    future = await demo.jetstream(teo.did, cursor=str(WALL_US + 3600 * 1_000_000))
    demo.advance_to(demo.offset_of(demo.step("teo-pieter")))
    live = [(await frame(future))[0]["commit"] for _ in range(2)]  # a future cursor is live
    assert live[0]["operation"] == "delete" and "tough as nails" in live[1]["record"]["text"]


@pytest.mark.asyncio
async def test_jetstream_options_update_changes_the_filters(demo: Demo) -> None:
    teo, kasper = demo.persona("teo"), demo.persona("kasper")
    ws = await demo.jetstream(kasper.did)
    await ws.send_str(json.dumps({"type": "options_update", "payload": {"wantedDids": [teo.did]}}))
    await asyncio.sleep(0.1)  # the update travels before the release
    demo.advance_to(demo.offset_of(demo.step("teo-descent")))
    assert (await frame(ws))[0]["did"] == teo.did

    hello = await demo.jetstream(teo.did, requireHello="true")
    demo.advance_to(demo.offset_of(demo.step("teo-noo")))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(hello.receive(), 0.2)  # nothing before the client's hello
    await hello.send_str(json.dumps({"type": "options_update", "payload": {"wantedDids": [teo.did]}}))
    assert "on the ground" in (await frame(hello))[0]["commit"]["record"]["text"]

    await ws.send_str(json.dumps({"type": "options_update", "payload": {"wantedDids": "not-a-list"}}))
    message = await asyncio.wait_for(ws.receive(), 3)
    while message.type is aiohttp.WSMsgType.TEXT:  # teo-noo was released meanwhile
        message = await asyncio.wait_for(ws.receive(), 3)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == aiohttp.WSCloseCode.POLICY_VIOLATION


@pytest.mark.asyncio
async def test_jetstream_refuses_a_bad_subscription(demo: Demo) -> None:
    for params in ({"wantedDids": "castagnede"}, {"cursor": "yesterday"}, {"wantedCollections": "not an nsid"}):
        status, _, body = await demo.get(demo.base + "/subscribe", params)
        assert status == 400 and b"invalid subscription" in body


@pytest.mark.asyncio
async def test_stop_closes_open_jetstream_sockets() -> None:
    upstream = DemoUpstream(clock=FakeClock(), wall_clock=fixed(WALL))
    base = await upstream.start()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(base.replace("http", "ws") + "/subscribe")
        await asyncio.wait_for(upstream.stop(), 5)
        message = await asyncio.wait_for(ws.receive(), 3)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


# -- through the real collectors ------------------------------------------------------------------


def _status_of(source: Source) -> SourceStatus:
    return SourceStatus(id=source.id, kind=str(source.kind), url=source.url)


async def _poll(collector: Any, source: Source, status: SourceStatus) -> Any:
    """One poll as the runner does it: the cursor moves forward, the first import is then done."""
    result = await collector.poll(source, status)
    if result.cursor is not None:
        status.cursor = result.cursor
    status.imported = True
    return result


@pytest.mark.asyncio
async def test_the_mastodon_collector_reads_the_reporters_edits_and_deletes(demo: Demo) -> None:
    from curation.collectors import mastodon

    async with Fetcher(trusted_origins={demo.upstream.origin}) as fetcher:
        collector = mastodon.MastodonCollector(CollectorContext(fetcher))
        ruairi, maelle = demo.sources["demo-ruairi"], demo.sources["demo-maelle"]
        ruairi_status, maelle_status = _status_of(ruairi), _status_of(maelle)
        first = await _poll(collector, ruairi, ruairi_status)
        _, statuses = await demo.statuses("ruairi")
        assert {e.key for e in first.entries} == {s["uri"] for s in statuses}
        [preview] = [e for e in first.entries if e.card is not None]
        assert preview.card.kind == "link" and preview.card.url.startswith(demo.base + "/news/")
        assert preview.author.name == "Ruairí Dempsey" and preview.author.avatar.startswith(demo.base)
        await _poll(collector, maelle, maelle_status)

        demo.advance_to(demo.offset_of(demo.step("ruairi-abandon")))  # ruairi-tempo came out before
        [tempo, wrong] = sorted((await _poll(collector, ruairi, ruairi_status)).entries, key=lambda e: e.key)
        assert "riding tempo" in (tempo.text or "") and "abandoned" in (wrong.text or "")
        demo.advance_to(demo.offset_of(demo.step("maelle-crash")))
        [descent, crash] = sorted((await _poll(collector, maelle, maelle_status)).entries, key=lambda e: e.key)
        assert "Descent" in (descent.text or "") and "Ostendrop" in (crash.text or "")

        demo.advance_to(demo.offset_of(demo.step("ruairi-abandon", "delete")))
        assert (await _poll(collector, ruairi, ruairi_status)).deleted == [wrong.key]
        demo.advance_to(demo.offset_of(demo.step("maelle-crash", "edit")))
        [edited] = (await _poll(collector, maelle, maelle_status)).entries
        assert edited.key == crash.key and edited.content_hash != crash.content_hash
        assert edited.updated_at is not None and "Ostendorp sitting" in (edited.text or "")


@pytest.mark.asyncio
async def test_the_bluesky_collector_reads_the_riders_from_the_appview(demo: Demo) -> None:
    from curation.collectors import bluesky

    async with Fetcher(trusted_origins={demo.upstream.origin}) as fetcher:
        collector = bluesky.BlueskyCollector(CollectorContext(fetcher))
        kasper = demo.sources["demo-kasper"]
        entries = (await _poll(collector, kasper, _status_of(kasper))).entries
        assert {e.key for e in entries} == {p["uri"] for p in await demo.posts("kasper")}
        [photo] = [e for e in entries if e.media]
        assert photo.media[0].url.startswith(demo.base + "/img/") and photo.media[0].alt
        assert 'href="https://bsky.app/hashtag/TDF2026"' in (photo.html or "")

        demo.advance_to(EVERY * 58)
        aurelien = demo.sources["demo-aurelien"]
        entries = (await _poll(collector, aurelien, _status_of(aurelien))).entries
        [linked] = [e for e in entries if e.card is not None]
        assert linked.card.url.startswith(demo.base + "/team/news/") and linked.card.url in (linked.html or "")


@pytest.mark.asyncio
async def test_the_bluesky_collector_streams_posts_and_deletes_from_the_demo_jetstream() -> None:
    """Real clocks, fast releases: Jetstream's cursors are wall-clock microseconds."""
    from curation.collectors import bluesky

    upstream = DemoUpstream(release_every=0.1, stream_poll=0.02)
    await upstream.start()
    _, sources = upstream.config()
    teo = next(s for s in sources if s.id == "demo-teo")
    status = _status_of(teo)
    results: asyncio.Queue[Any] = asyncio.Queue()
    try:
        async with Fetcher(trusted_origins={upstream.origin}) as fetcher:
            collector = bluesky.BlueskyCollector(CollectorContext(fetcher), settle=0.01, checkpoint=0.2)
            await _poll(collector, teo, status)
            task = asyncio.create_task(collector.stream(teo, status, results.put))
            try:
                created: dict[str, str] = {}
                deleted: list[str] = []
                async with asyncio.timeout(15):
                    while not deleted:
                        result = await results.get()
                        created.update({e.key: e.text or "" for e in result.entries})
                        deleted += result.deleted
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, SourceError):
                    await task
    finally:
        await upstream.stop()
    assert any("wrist hurt" in text for text in created.values())
    [gone] = deleted
    assert "on the ground" in created[gone]
    assert status.details["stream"]["state"] == "open"

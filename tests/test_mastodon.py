"""The Mastodon collector against a fake instance on loopback: conversion of real statuses, gap-free polling,
boosts and replies, edits and deletes (polled and streamed), stream drops, rate limits, errors, and one run
through a real Fil to a websocket reader."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from curation.collectors import REGISTRY, CollectorContext, PollResult
from curation.collectors import mastodon as mastodon_module
from curation.collectors.fetch import Fetcher
from curation.collectors.mastodon import MastodonCollector, streaming_url
from curation.collectors.mastodon_status import (
    convert,
    is_newer,
    newest,
    read_status,
    read_statuses,
    status_entry,
    wanted,
)
from curation.collectors.runner import SourceRunner
from curation.errors import RetryLaterError, SourceError, StoreError
from curation.models import Author, Card, Entry, ItemKind, Media, Moderation, Role, Source, SourceKind, SourceStatus
from curation.store import Store
from tests.conftest import make_event, make_source, start_fil, start_tags
from tests.fake_mastodon import APP_TOKEN, TOKEN, FakeMastodon, fixture_json, mastodon  # noqa: F401

ENV = "FIL_TEST_MASTODON_TOKEN"
WAIT = 20.0  # generous: tests wait for outcomes, they never time them
ACCOUNT_ID = "117020565966271181"
NEWEST_FIXTURE_ID = "117020580518794573"
FIXTURE_TEXTS = [f"Toot number {n}!" for n in range(5, 10)]


# -- helpers ------------------------------------------------------------------------------------------------


def mastodon_source(fake: FakeMastodon, source_id: str = "reporter", **options: Any) -> Source:
    settings = {k: options.pop(k) for k in ("backfill", "interval", "moderation") if k in options}
    values: dict[str, Any] = {"instance": fake.base_url, "replies": False, "boosts": True}
    if "hashtag" not in options:
        values["account"] = "mastodonpy_test"
    values.update(options)
    return make_source(
        source_id,
        kind=SourceKind.MASTODON,
        role=Role.JOURNALIST,
        url=None,
        options=values,
        **{"backfill": 5, "interval": 3600.0, "moderation": Moderation.AUTO, **settings},
    )


def new_status(source: Source) -> SourceStatus:
    return SourceStatus(id=source.id, kind="mastodon")


async def poll(collector: MastodonCollector, source: Source, status: SourceStatus) -> PollResult:
    """One poll, keeping the cursor as the runner does."""
    result = await collector.poll(source, status)
    if result.cursor is not None:
        status.cursor = result.cursor
    return result


async def primed(
    collector: MastodonCollector, fake: FakeMastodon, source_id: str = "reporter", **options: Any
) -> tuple[Source, SourceStatus]:
    """A source whose first poll (its backfill) has run: the next poll sees only what changed since."""
    source = mastodon_source(fake, source_id, **options)
    status = new_status(source)
    await poll(collector, source, status)
    return source, status


def texts(entries: list[Entry]) -> list[str | None]:
    return [e.text for e in entries]


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest_asyncio.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(allow_private=True, total_timeout=5, connect_timeout=2, per_host_limit=0) as f:
        yield f


@pytest.fixture
def collector(fetcher: Fetcher) -> MastodonCollector:
    return MastodonCollector(CollectorContext(fetcher))


# -- real statuses to Entries ---------------------------------------------------------------------------------


def test_a_remote_status_with_cw_gifv_emoji_and_an_edit() -> None:
    entry = status_entry(fixture_json("status_remote_cw_gifv_emoji_edited.json"), "mastodon.social")
    assert entry.key == "https://icosahedron.website/users/halcy/statuses/110446222386355655"
    assert entry.url == "https://icosahedron.website/@halcy/110446222386355655"
    assert entry.kind is ItemKind.POST and entry.title is None
    assert entry.content_warning == "test post for mastodon.py stuff"
    assert entry.published_at == datetime(2023, 5, 28, 12, 6, 50, tzinfo=UTC)
    assert entry.updated_at == datetime(2023, 5, 28, 12, 9, 44, tzinfo=UTC)
    # the display name keeps its shortcode as text; a remote acct already names its host
    assert entry.author == Author(
        name="halcy\u200b :icosahedron:",
        handle="@halcy@icosahedron.website",
        url="https://icosahedron.website/@halcy",
        avatar="https://files.mastodon.social/cache/accounts/avatars/000/023/972/original/9c900052b7f670db.jpg",
    )
    files = "https://files.mastodon.social/cache/media_attachments/files/110/446/234/379/794/171"
    assert entry.media == (
        Media(
            type="video",
            url=f"{files}/original/e6bdbd614788c2d1.mp4",
            alt="a furry cube breakdancing",
            thumbnail=f"{files}/small/e6bdbd614788c2d1.png",
        ),
    )
    emoji = "https://files.mastodon.social/cache/custom_emojis/images/000/008/320/static/3b2fccb2fb601fc2.png"
    assert entry.html is not None and entry.text is not None
    assert f'<img class="emoji" src="{emoji}" alt=":trans_heart:" title=":trans_heart:"' in entry.html
    assert 'href="https://icosahedron.website/tags/ThisIsAHashtag"' in entry.html
    assert entry.text.startswith("@halcy you're a doo-doo head edit:") and ":trans_heart:" in entry.text
    assert entry.card is None and entry.reposted_by is None


def test_a_local_status_with_a_video_card_never_takes_the_card_html() -> None:
    data = fixture_json("status_local_card.json")
    entry = status_entry(data, "mastodon.social")
    assert entry.card == Card(
        kind="link",
        url="https://soundcloud.com/wakarangirl/popstars-dj-wakaran-girl-khard-bass-flex-1",
        title="K/DA - POP/STARS (DJ WAKARAN GIRL Хард Басс FLEX)",
        description=(
            "←ここすき mayolazrbeam.at.gmail.dot.com @mayolazr @yaminomayore 's rival @commonjellyproject member"
            " 1/2 of @officialpegi18"
        ),
        image=None,
    )
    assert "iframe" not in repr(entry) and "w.soundcloud.com/player" not in repr(entry)
    # a local account's acct has no host: the instance's domain is added
    assert entry.author.handle == "@halcy@mastodon.social" and entry.author.name == "autumnal halcy"
    assert entry.html is not None and '<span class="invisible">https://</span>' in entry.html
    assert entry.text == (
        "https://soundcloud.com/wakarangirl/popstars-dj-wakaran-girl-khard-bass-flex-1 link to soundcloud that should"
        " generate a card"
    )
    # it is followers-only: converted on request, but never taken by a source
    ref = read_status(data)
    assert ref is not None and not ref.visible and not wanted(ref, replies=True, boosts=True)


def test_a_local_image_status_and_a_thread_reply_to_oneself() -> None:
    data = fixture_json("status_local_image.json")
    entry = status_entry(data, "mastodon.social")
    files = "https://files.mastodon.social/media_attachments/files/110/447/002/079/181/641"
    assert entry.media == (
        Media("image", f"{files}/original/97232afa341c291e.jpg", "furry cube", f"{files}/small/97232afa341c291e.jpg"),
    )
    assert entry.html == "<p>image post</p>" and entry.content_warning is None
    ref = read_status(data)
    # in_reply_to_account_id is the author's own: a thread, which `replies: false` keeps (as Mastodon does)
    assert ref is not None and not ref.reply
    assert wanted(replace(ref, visible=True), replies=False, boosts=True)


def test_a_bridged_bluesky_quote_becomes_a_quote_card() -> None:
    data = fixture_json("status_bridged_bsky_quote.json")
    entry = status_entry(data, "mastodon.social")
    quoted = "https://bsky.brid.gy/r/https://bsky.app/profile/did:plc:5syfqzormjkutgo5hi2u2gpr/post/3lwlumdwf522i"
    assert entry.card == Card(
        kind="quote",
        url=quoted,
        title=None,
        description="actual reply that quotes a bsky post bsky.app/profile/h4lc...",
        image=None,
        author=Author(
            name="h4lcy.bsky.social",
            handle="@h4lcy.bsky.social@bsky.brid.gy",
            url="https://bsky.brid.gy/r/https://bsky.app/profile/h4lcy.bsky.social",
            avatar=(
                "https://files.mastodon.social/cache/accounts/avatars/115/043/949/422/165/680/original/"
                "3e1dd77d9101ba91.png"
            ),
        ),
    )
    # the "RE: <link>" fallback for quote-less clients goes: the card shows the quote
    assert entry.text == "actual reply that quotes a post that quotes a post bsky.app/profile/h4lc..."
    assert entry.html is not None and "RE:" not in entry.html
    assert entry.author.name == "h4lcy.bsky.social"  # empty display name: the username
    ref = read_status(data)
    assert ref is not None and ref.reply and ref.visible
    assert not wanted(ref, replies=False, boosts=True) and wanted(ref, replies=True, boosts=True)


def test_the_hashtag_timeline_and_the_account_page_convert_whole() -> None:
    refs, malformed = read_statuses(fixture_json("account_statuses_limit5.json"))
    assert malformed == 0 and [r.id for r in refs][0] == NEWEST_FIXTURE_ID
    entries, failed = convert([r.data for r in refs], "localhost:3000")
    assert failed == 0
    assert texts(entries) == list(reversed(FIXTURE_TEXTS))
    first = entries[0]
    assert first.key == f"http://localhost:3000/ap/users/{ACCOUNT_ID}/statuses/{NEWEST_FIXTURE_ID}"
    assert first.url == f"http://localhost:3000/@mastodonpy_test/{NEWEST_FIXTURE_ID}"
    assert first.author.name == "John Lennon" and first.author.handle == "@mastodonpy_test@localhost:3000"
    assert first.published_at == datetime(2026, 8, 1, 13, 52, 34, 108000, tzinfo=UTC)
    (hoot,), _ = convert(fixture_json("timeline_tag_hoot.json"), "localhost:3000")
    assert hoot.text == "#hoot (hashtag toot)" and hoot.author.name == "mastodonpy_test_2"
    assert hoot.html == (
        '<p><a href="http://localhost:3000/tags/hoot" target="_blank" rel="noopener noreferrer nofollow">'
        "#<span>hoot</span></a> (hashtag toot)</p>"
    )


def test_a_boost_is_the_original_credited_to_its_author() -> None:
    original = fixture_json("status_remote_cw_gifv_emoji_edited.json")
    booster = fixture_json("account_statuses_limit5.json")[0]
    boost = {**booster, "id": "117020580518794999", "content": "", "reblog": original, "uri": "x/activity"}
    entry = status_entry(boost, "localhost:3000")
    assert entry.key == original["uri"] and entry.author.handle == "@halcy@icosahedron.website"
    assert entry.reposted_by is not None and entry.reposted_by.name == "John Lennon"
    assert entry.reposted_by.handle == "@mastodonpy_test@localhost:3000"
    ref = read_status(boost)
    assert ref is not None and ref.boost and ref.key == original["uri"] and ref.id == "117020580518794999"
    assert not wanted(ref, replies=False, boosts=False)


def test_hostile_statuses_come_out_inert() -> None:
    data = fixture_json("account_statuses_limit5.json")[0]
    data.update(
        content=(
            '<p onclick="alert(1)">Hi<script>alert(2)</script><img src="x" onerror="alert(3)">'
            '<a href="javascript:alert(4)">click</a><iframe src="https://evil.example/"></iframe> :evil: :ok: '
            '<a href="https://ok.example/:ok:" title=":ok: > <img src=x onerror=alert(5)>">:ok:</a></p>'
        ),
        spoiler_text="<script>alert(6)</script>Careful",
        emojis=[
            {"shortcode": "evil", "url": "javascript:alert(7)", "static_url": "javascript:alert(7)"},
            {"shortcode": "ok", "url": 'https://img.example/ok.png" onerror="alert(8)', "static_url": None},
            {"shortcode": "<b>", "url": "https://img.example/b.png"},
        ],
        card={
            "url": "https://card.example/",
            "title": "<b>Title</b><script>alert(9)</script>",
            "description": '<img src=x onerror="alert(10)">Described',
            "html": '<iframe src="https://evil.example/embed"></iframe>',
            "image": "javascript:alert(11)",
            "type": "video",
        },
        media_attachments=[
            {"type": "image", "url": "javascript:alert(12)", "preview_url": "data:image/png;base64,AAAA"},
            {"type": "image", "url": "https://img.example/a.png", "description": "<img src=x onerror=alert(13)>Alt"},
        ],
    )
    data["account"] = {
        **data["account"],
        "display_name": '<script>alert(14)</script><img src=x onerror=alert(15)>Evil <a href="javascript:x">name</a>',
        "url": "javascript:alert(16)",
        "avatar_static": "javascript:alert(17)",
        "avatar": "https://img.example/avatar.png",
    }
    entry = status_entry(data, "localhost:3000")
    assert entry.html is not None
    for tag, attributes in start_tags(entry.html):
        assert tag not in ("script", "iframe")
        assert not [name for name in attributes if name.startswith("on")], (tag, attributes)
        for name in ("href", "src"):
            if name in attributes:
                assert attributes[name].startswith(("https://", "http://")), attributes
    # the hostile emoji URL never leaves its attribute; the shortcode inside href and title stays text
    assert 'href="https://ok.example/:ok:"' in entry.html and entry.html.count('class="emoji"') == 2
    assert ":evil:" in entry.html and "javascript" not in entry.html
    plain = json.dumps(
        [entry.text, entry.content_warning, asdict(entry.author), asdict(entry.card or Card("x", "x"))]
        + [asdict(m) for m in entry.media]
    )
    for bad in ("<script", "onerror", "javascript:", "<iframe", "<img", "data:"):
        assert bad not in plain, bad
    assert entry.author == Author(name="Evil name", handle="@mastodonpy_test@localhost:3000", url=None,
                                  avatar="https://img.example/avatar.png")  # fmt: skip
    assert entry.content_warning == "Careful"
    assert entry.card == Card(kind="link", url="https://card.example/", title="Title", description="Described")
    assert entry.media == (Media("image", "https://img.example/a.png", "Alt"),)


def test_malformed_statuses_are_skipped_and_the_rest_kept() -> None:
    good = fixture_json("account_statuses_limit5.json")[0]
    page = [
        {},
        "a string",
        {"id": 117020580518794573, "uri": "x", "account": {"id": "1"}},  # a numeric id
        {"id": "1", "uri": "x", "account": "nobody"},
        {**good, "uri": ["not", "a", "string"]},
        {**good, "reblog": "not an object"},
        good,
    ]
    refs, malformed = read_statuses(page)
    assert [r.id for r in refs] == [NEWEST_FIXTURE_ID] and malformed == 6
    with pytest.raises(ValueError):
        read_statuses({"error": "Record not found"})
    entries, failed = convert([{"id": "1"}, good], "localhost:3000")
    assert failed == 1 and texts(entries) == ["Toot number 9!"]


def test_ids_compare_by_length_then_text() -> None:
    assert is_newer("100", "99") and not is_newer("99", "100") and is_newer("1", None)
    assert newest("117020580489281910", "117020580518794573", None) == "117020580518794573"
    assert newest("9", "10") == "10" and newest() is None


def test_the_streaming_host_comes_from_the_instance() -> None:
    info = {"configuration": {"urls": {"streaming": "wss://streaming.mastodon.social"}}}
    assert streaming_url(info, "https://mastodon.social") == "wss://streaming.mastodon.social/api/v1/streaming"
    assert streaming_url({}, "https://mastodon.social") == "wss://mastodon.social/api/v1/streaming"
    assert streaming_url({}, "http://127.0.0.1:8080") == "ws://127.0.0.1:8080/api/v1/streaming"
    hostile = {"configuration": {"urls": {"streaming": "javascript:alert(1)"}}}
    assert streaming_url(hostile, "https://mastodon.social") == "wss://mastodon.social/api/v1/streaming"


# -- the fake speaks the real wire format ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_fake_serves_the_recorded_bytes_and_headers(mastodon: FakeMastodon) -> None:  # noqa: F811
    recorded = fixture_json("account_statuses_limit5.headers.json")["headers"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{mastodon.base_url}/api/v1/accounts/{ACCOUNT_ID}/statuses?limit=5") as response:
            body = await response.read()
            link = response.headers["Link"]
            assert response.headers["Content-Type"] == recorded["content-type"]
            assert response.headers["X-RateLimit-Remaining"] == "299"
            assert "Transfer-Encoding" not in response.headers
        assert body == (Path(__file__).parent / "fixtures/mastodon/account_statuses_limit5.json").read_bytes()
        assert link == recorded["link"].replace("http://localhost:3000", mastodon.base_url)
        # 4.2+: no stream without a user token
        for headers in ({}, {"Authorization": f"Bearer {APP_TOKEN}"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"ws://{mastodon.netloc}/api/v1/streaming", headers=headers)
            assert refused.value.status == 401
        async with session.ws_connect(
            f"ws://{mastodon.netloc}/api/v1/streaming", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as ws:
            await ws.send_str('{"type":"subscribe","stream":"hashtag","tag":"Hoot"}')
            await mastodon.wait_subscribed(1)
            status = mastodon.post("mastodonpy_test", "<p>#hoot again</p>", tags=["hoot"])
            frame = json.loads(await asyncio.wait_for(ws.receive_str(), WAIT))
            assert frame["stream"] == ["hashtag", "hoot"] and frame["event"] == "update"
            assert json.loads(frame["payload"])["id"] == status.id  # the payload is a JSON string


# -- polling ----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_first_poll_backfills_the_newest_page_and_sets_the_cursor(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    source = mastodon_source(mastodon, backfill=3)
    status = new_status(source)
    result = await poll(collector, source, status)
    assert texts(result.entries) == ["Toot number 7!", "Toot number 8!", "Toot number 9!"]
    assert result.cursor == NEWEST_FIXTURE_ID and status.memo["account_id"] == ACCOUNT_ID
    (listing,) = mastodon.calls(f"/api/v1/accounts/{ACCOUNT_ID}/statuses")
    assert listing.query == {"exclude_replies": "true", "exclude_reblogs": "false", "limit": "3"}
    again = await poll(collector, source, status)
    assert again.entries == [] and again.deleted == [] and again.cursor is None
    # the account id was looked up once, then remembered
    assert len(mastodon.calls("/api/v1/accounts/lookup")) == 1
    assert mastodon.calls(f"/api/v1/accounts/{ACCOUNT_ID}/statuses")[-1].query["limit"] == "40"


@pytest.mark.asyncio
async def test_more_than_a_page_between_polls_arrives_whole_and_once(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    source, status = await primed(collector, mastodon)
    posted = mastodon.post_many("mastodonpy_test", 95)
    result = await poll(collector, source, status)
    assert [e.key for e in result.entries] == [s.uri for s in posted]  # oldest first, none twice
    assert result.cursor == posted[-1].id
    walked = [c.query.get("min_id") for c in mastodon.calls(f"/api/v1/accounts/{ACCOUNT_ID}/statuses")[1:]]
    assert walked == [None, NEWEST_FIXTURE_ID, posted[39].id]  # newest page, then up from the cursor
    assert (await poll(collector, source, status)).entries == []


@pytest.mark.asyncio
async def test_a_backlog_longer_than_one_poll_goes_on_at_the_next_without_a_gap(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mastodon_module, "MAX_PAGES", 2)
    source, status = await primed(collector, mastodon)
    posted = mastodon.post_many("mastodonpy_test", 200)
    keys: list[str] = []
    for _ in range(4):
        keys += [e.key for e in (await poll(collector, source, status)).entries]
    assert sorted(keys) == sorted(s.uri for s in posted) and len(keys) == 200
    assert status.memo["polled"] == posted[-1].id


@pytest.mark.asyncio
async def test_boosts_are_credited_or_skipped(mastodon: FakeMastodon, collector: MastodonCollector) -> None:  # noqa: F811
    mastodon.account("rider", display_name="Rider :bike:")
    original = mastodon.post("rider", "<p>Breakaway!</p>")
    for boosts in (True, False):
        source, status = await primed(collector, mastodon, f"boosts-{boosts}", boosts=boosts)
        boost = mastodon.post("mastodonpy_test", boost_of=original)
        result = await poll(collector, source, status)
        assert mastodon.requests[-1].query["exclude_reblogs"] == ("false" if boosts else "true")
        if boosts:
            (entry,) = result.entries
            assert entry.key == original.uri and entry.text == "Breakaway!"
            assert entry.author.name == "Rider :bike:" and entry.author.handle == f"@rider@{mastodon.netloc}"
            assert entry.reposted_by is not None and entry.reposted_by.name == "John Lennon"
            # the boost undone: the original leaves this source's timeline
            mastodon.delete(boost)
            assert (await poll(collector, source, status)).deleted == [original.uri]
        else:
            assert result.entries == []


@pytest.mark.asyncio
async def test_replies_to_others_are_skipped_unless_asked(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    mastodon.account("fan")
    question = mastodon.post("fan", "<p>Who wins?</p>")
    for replies in (False, True):
        source, status = await primed(collector, mastodon, f"replies-{replies}", replies=replies)
        start = mastodon.post("mastodonpy_test", f"<p>Thread 1 ({replies})</p>")
        mastodon.post("mastodonpy_test", f"<p>Answer ({replies})</p>", reply_to=question)
        mastodon.post("mastodonpy_test", f"<p>Thread 2 ({replies})</p>", reply_to=start)
        result = await poll(collector, source, status)
        expected = ["Thread 1", "Answer", "Thread 2"] if replies else ["Thread 1", "Thread 2"]
        assert texts(result.entries) == [f"{t} ({replies})" for t in expected]
    # a hashtag timeline cannot exclude replies: they are dropped here
    source, status = await primed(collector, mastodon, "tag", hashtag="tdf")
    mastodon.account("other-fan")
    mastodon.post("other-fan", "<p>#tdf go!</p>", tags=["tdf"], reply_to=question)
    mastodon.post("fan", "<p>#tdf stage 1</p>", tags=["tdf"])
    assert texts((await poll(collector, source, status)).entries) == ["#tdf stage 1"]


@pytest.mark.asyncio
async def test_an_edit_is_found_by_edited_at_and_keeps_the_key(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    source, status = await primed(collector, mastodon)
    post = mastodon.post("mastodonpy_test", "<p>Crash at km 12</p>")
    (first,) = (await poll(collector, source, status)).entries
    mastodon.edit(post, "<p>Crash at km 14</p>")
    (edited,) = (await poll(collector, source, status)).entries
    assert edited.key == first.key and edited.text == "Crash at km 14"
    assert edited.content_hash != first.content_hash
    assert edited.updated_at == datetime.fromisoformat(post.data["edited_at"])
    assert (await poll(collector, source, status)).entries == []


@pytest.mark.asyncio
async def test_a_delete_is_confirmed_by_a_404_and_removed(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    source, status = await primed(collector, mastodon)
    post = mastodon.post("mastodonpy_test", "<p>Wrong result</p>")
    await poll(collector, source, status)
    mastodon.delete(post)
    result = await poll(collector, source, status)
    assert result.deleted == [post.uri] and result.entries == []
    assert [c.status for c in mastodon.calls(f"/api/v1/statuses/{post.id}")] == [404]
    # confirmed once, never asked again
    assert (await poll(collector, source, status)).deleted == []
    assert len(mastodon.calls(f"/api/v1/statuses/{post.id}")) == 1


class FlakyStore:
    """A store whose next ingest fails once when armed (a disk full, a Redis blip)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.armed = False

    async def ingest(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            raise StoreError("disk full")
        return await self.store.ingest(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.asyncio
async def test_statuses_whose_poll_could_not_be_stored_are_taken_again(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
    store: Store,
) -> None:
    source = mastodon_source(mastodon)
    event = make_event(sources=(source.id,))
    flaky = FlakyStore(store)
    runner = SourceRunner(source, collector, flaky, new_status(source), lambda _: [event])  # type: ignore[arg-type]
    await runner.poll_once()
    posted = mastodon.post_many("mastodonpy_test", 45)  # more than a page: the walk's notes are undone too
    post = mastodon.post("mastodonpy_test", "<p>Lost?</p>")
    flaky.armed = True
    await runner.poll_once()
    assert runner.status.last_error == "store unavailable: disk full"  # not the source's fault: no backoff
    assert runner.status.error_count == 0
    await runner.poll_once()
    assert str(runner.status.state) == "ok"
    page = await store.page(event.slug, limit=100)
    assert {i.key for i in page.items} >= {s.uri for s in [*posted, post]} and len(page.items) == 5 + 46


@pytest.mark.asyncio
async def test_an_unknown_account_is_a_clear_source_status(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
    store: Store,
) -> None:
    source = mastodon_source(mastodon, account="nobody")
    runner = SourceRunner(source, collector, store, new_status(source), lambda _: [make_event(sources=(source.id,))])
    await runner.poll_once()
    assert runner.status.last_error == f"no account nobody on {mastodon.base_url}"
    assert str(runner.status.state) == "error"


@pytest.mark.asyncio
@pytest.mark.parametrize("refusal", [401, 422])
async def test_a_refused_hashtag_timeline_is_named(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
    refusal: int,
) -> None:
    mastodon.tag_refusal = refusal
    source = mastodon_source(mastodon, hashtag="tdf")
    with pytest.raises(SourceError) as error:
        await collector.poll(source, new_status(source))
    assert error.value.message == (
        f"hashtag timeline of {mastodon.base_url} requires login / is disabled"
        f" (HTTP {refusal}: This method requires an authenticated user);"
        " a token of that instance (token_env) may open it"
    )


@pytest.mark.asyncio
async def test_timelines_access_says_what_an_empty_hashtag_timeline_means(
    mastodon: FakeMastodon,  # noqa: F811
    fetcher: Fetcher,
) -> None:
    source = mastodon_source(mastodon, hashtag="hoot")
    mastodon.timelines_access = {"hashtag_feeds": {"local": "disabled", "remote": "authenticated"}}
    with pytest.raises(SourceError) as error:
        await MastodonCollector(CollectorContext(fetcher)).poll(source, new_status(source))
    assert "requires login / is disabled (timelines_access: local disabled, remote authenticated)" in str(error.value)
    assert not mastodon.calls("/api/v1/timelines/tag/hoot")
    mastodon.timelines_access = {"hashtag_feeds": {"local": "public", "remote": "authenticated"}}
    status = new_status(source)
    result = await MastodonCollector(CollectorContext(fetcher)).poll(source, status)
    assert texts(result.entries) == ["#hoot (hashtag toot)"]
    assert status.details["note"] == f"only posts local to {mastodon.netloc}: its hashtag feeds hide remote posts"


@pytest.mark.asyncio
async def test_remaining_zero_stops_paging_and_waits_for_the_reset(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    source, status = await primed(collector, mastodon)
    posted = mastodon.post_many("mastodonpy_test", 100)
    mastodon.reset_at = datetime.now(UTC) + timedelta(seconds=120)
    mastodon.remaining = 2  # the newest page, one page up from the cursor, and then none
    first = [e.key for e in (await poll(collector, source, status)).entries]
    assert len(first) == 80 and len(mastodon.requests) == 5
    with pytest.raises(RetryLaterError) as later:
        await poll(collector, source, status)
    assert later.value.retry_after is not None and 100 < later.value.retry_after <= 122
    assert f"rate limit of {mastodon.netloc} used up until" in later.value.message
    assert len(mastodon.requests) == 5  # nothing was asked while the limit was used up
    # the window resets: the rest arrives, nothing twice
    mastodon.remaining = 300
    collector._limited.clear()
    rest = [e.key for e in (await poll(collector, source, status)).entries]
    assert sorted(first + rest) == sorted(s.uri for s in posted)


@pytest.mark.asyncio
async def test_429_is_retry_later_for_every_source_of_the_instance(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    source = mastodon_source(mastodon)
    mastodon.too_many = True
    with pytest.raises(RetryLaterError) as error:
        await collector.poll(source, new_status(source))
    assert error.value.status == 429
    asked = len(mastodon.requests)
    other = mastodon_source(mastodon, "tag", hashtag="hoot")
    with pytest.raises(RetryLaterError):
        await collector.poll(other, new_status(other))
    assert len(mastodon.requests) == asked


@pytest.mark.asyncio
async def test_a_malformed_status_in_a_page_is_skipped(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    source, status = await primed(collector, mastodon)
    mastodon.post("mastodonpy_test", "<p>Broken</p>", uri=12345)
    mastodon.post("mastodonpy_test", "<p>Fine</p>")
    assert texts((await poll(collector, source, status)).entries) == ["Fine"]


@pytest.mark.asyncio
async def test_a_source_pointed_elsewhere_starts_afresh(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
) -> None:
    _, status = await primed(collector, mastodon)
    mastodon.account("rider")
    mastodon.post_many("rider", 3, prefix="Rider")
    moved = mastodon_source(mastodon, account="rider", backfill=2)
    result = await poll(collector, moved, status)
    assert texts(result.entries) == ["Rider 2", "Rider 3"]
    assert status.memo["target"] == f"{mastodon.base_url} @rider"


def test_without_a_token_there_is_no_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMastodon()
    monkeypatch.delenv(ENV, raising=False)
    collector = MastodonCollector(CollectorContext(Fetcher()))
    assert not collector.streams(mastodon_source(fake, token_env=ENV))
    assert not collector.streams(mastodon_source(fake))
    monkeypatch.setenv(ENV, TOKEN)
    assert collector.streams(mastodon_source(fake, token_env=ENV))


# -- streaming through the runner ----------------------------------------------------------------------------


class Stage:
    """A SourceRunner for one mastodon source feeding one event, and what the store says."""

    def __init__(self, store: Store, collector: MastodonCollector, source: Source) -> None:
        self.store = store
        self.event = make_event(sources=(source.id,))
        self.runner = SourceRunner(source, collector, store, new_status(source), lambda _: [self.event])
        self.runner.stream_retry = 0.05

    async def changes(self) -> list[tuple[str, str, int]]:
        changes = await self.store.changes_since(self.event.slug, 0) or []
        return [(c.op, c.item.key if c.item else "", c.item.version if c.item else 0) for c in changes]

    async def until(self, want: tuple[str, str, int], what: str) -> None:
        async def present() -> bool:
            return want in await self.changes()

        await wait_for(present, what)

    async def item_text(self, key: str) -> str | None:
        page = await self.store.page(self.event.slug)
        return next((i.text for i in page.items if i.key == key), None)

    @property
    def stream_state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.runner.status.details.get("stream", {})
        return state


@pytest_asyncio.fixture
async def stage(
    store: Store,
    collector: MastodonCollector,
    mastodon: FakeMastodon,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stage]:
    monkeypatch.setenv(ENV, TOKEN)
    stage = Stage(store, collector, mastodon_source(mastodon, token_env=ENV))
    stage.runner.start()
    await wait_for(lambda: _true(stage.runner.status.imported), "the first poll")
    yield stage
    await stage.runner.stop()


async def _true(value: bool) -> bool:
    return value


@pytest.mark.asyncio
async def test_the_stream_delivers_posts_edits_and_deletes_at_once(stage: Stage, mastodon: FakeMastodon) -> None:  # noqa: F811
    await mastodon.wait_subscribed(1)
    assert stage.stream_state["state"] == "open"
    assert len(await stage.changes()) == 5
    polls = len(mastodon.calls(f"/api/v1/accounts/{ACCOUNT_ID}/statuses"))
    mastodon.account("stranger")
    mastodon.post("stranger", "<p>Not ours</p>")  # on the user stream too, but another account
    post = mastodon.post("mastodonpy_test", "<p>Attack!</p>")
    await stage.until(("upsert", post.uri, 1), "the streamed post")
    mastodon.edit(post, "<p>Attack, 30 s gap</p>")
    await stage.until(("upsert", post.uri, 2), "the streamed edit")
    assert await stage.item_text(post.uri) == "Attack, 30 s gap"
    mastodon.delete(post)
    await stage.until(("remove", post.uri, 3), "the streamed delete")
    # all of it came by the stream: no poll ran, and the cursor followed the stream
    assert len(mastodon.calls(f"/api/v1/accounts/{ACCOUNT_ID}/statuses")) == polls
    assert stage.runner.status.cursor == post.id
    assert len(await stage.changes()) == 8


@pytest.mark.asyncio
async def test_a_dropped_stream_resumes_with_no_gap_and_no_duplicate(
    stage: Stage,
    mastodon: FakeMastodon,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    await mastodon.wait_subscribed(1)
    before = mastodon.post("mastodonpy_test", "<p>Before the drop</p>")
    await stage.until(("upsert", before.uri, 1), "the streamed post")
    mastodon.broadcast = False  # lost on the wire: only a poll can find these
    lost = mastodon.post_many("mastodonpy_test", 3, prefix="While down")
    mastodon.broadcast = True
    await mastodon.drop_streams()
    for status in lost:
        await stage.until(("upsert", status.uri, 1), "the runner's poll after the drop")
    await mastodon.wait_subscribed(2)
    assert stage.runner.status.details["stream"]["state"] == "open"
    after = mastodon.post("mastodonpy_test", "<p>After the drop</p>")
    await stage.until(("upsert", after.uri, 1), "the post on the new stream")
    await asyncio.sleep(0.2)  # room for a duplicate to show up, if there were one
    keys = [key for _, key, _ in await stage.changes()]
    assert len(keys) == len(set(keys)) == 5 + 1 + 3 + 1
    assert stage.stream_state["state"] == "open" and mastodon.stream_attempts == [101, 101]
    dropped = f"the stream from {mastodon.netloc} closed (code 1001)"
    assert f"reporter: stream dropped ({dropped}); polling until it is back" in caplog.messages


@pytest.mark.asyncio
async def test_a_status_missed_between_a_poll_and_the_stream_is_found_by_the_next_poll(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    source, status = await primed(collector, mastodon, token_env=ENV, backfill=2)
    delivered: list[PollResult] = []

    async def deliver(result: PollResult) -> None:
        delivered.append(result)
        status.cursor = result.cursor or status.cursor

    mastodon.broadcast = False
    missed = mastodon.post("mastodonpy_test", "<p>Posted while the stream was reconnecting</p>")
    mastodon.broadcast = True
    streaming = asyncio.create_task(collector.stream(source, status, deliver))
    try:
        await mastodon.wait_subscribed(1)
        mastodon.push("update", "{not json")  # garbage is skipped, the stream goes on
        mastodon.edit(mastodon.statuses["117020580489281910"], "<p>Toot 5, edited</p>")  # never taken: stays out
        streamed = mastodon.post("mastodonpy_test", "<p>Streamed</p>")

        async def arrived() -> bool:
            return bool(delivered)

        await wait_for(arrived, "the streamed status")
        (result,) = delivered
        assert texts(result.entries) == ["Streamed"] and result.cursor == streamed.id
        # the stream moved the cursor past `missed`; polling still starts from what it has seen itself
        assert texts((await poll(collector, source, status)).entries) == ["Posted while the stream was reconnecting"]
        assert status.cursor == streamed.id and is_newer(streamed.id, missed.id)
        mastodon.push("update", None)  # an update without payload: ignored
        mastodon.push("filters_changed", None)
        mastodon.edit(streamed, "<p>Streamed, now followers only</p>", visibility="private")

        async def removed() -> bool:
            return len(delivered) == 2

        await wait_for(removed, "the edit that made it private")
        assert delivered[1].deleted == [streamed.uri] and delivered[1].entries == []
        mastodon.push_raw('{"error":"Unknown stream type","status":400}')
        with pytest.raises(SourceError) as refused:
            await asyncio.wait_for(streaming, WAIT)
        assert refused.value.message == f"streaming on {mastodon.netloc}: Unknown stream type"
    finally:
        streaming.cancel()


@pytest.mark.asyncio
async def test_the_documented_websocket_frames_are_read(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    source = mastodon_source(mastodon, hashtag="hoot", token_env=ENV, replies=True)
    status = new_status(source)
    delivered: list[PollResult] = []

    async def deliver(result: PollResult) -> None:
        delivered.append(result)

    streaming = asyncio.create_task(collector.stream(source, status, deliver))
    try:
        await mastodon.wait_subscribed(1)
        assert status.details["stream"]["state"] == "open"
        update, delete, filters_changed = fixture_json("streaming_ws_docs.json")["server_to_client"]
        for frame in (delete, filters_changed, update):  # the delete names a status never taken: nothing
            mastodon.push_raw(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))
        mastodon.push_raw(json.dumps({**delete, "payload": "108913983692647032"}))

        async def both() -> bool:
            return len(delivered) == 2

        await wait_for(both, "the update and its delete")
        key = "https://fosstodon.org/users/tobtobxx/statuses/108913983628474640"
        (entry,) = delivered[0].entries
        assert entry.key == key and entry.url == "https://fosstodon.org/@tobtobxx/108913983628474640"
        assert entry.text == "And now I can't exit the inner nvim because I mapped escape to the parent vim instance 😂"
        assert entry.author.handle == "@tobtobxx@fosstodon.org" and entry.author.name == "TobTobXX"
        assert delivered[0].cursor == "108913983692647032"
        assert delivered[1].deleted == [key] and delivered[1].entries == []
    finally:
        streaming.cancel()


@pytest.mark.asyncio
async def test_a_hashtag_stream_takes_only_its_tag(
    store: Store,
    collector: MastodonCollector,
    mastodon: FakeMastodon,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    stage = Stage(store, collector, mastodon_source(mastodon, "tag", hashtag="TDF", token_env=ENV))
    stage.runner.start()
    try:
        await mastodon.wait_subscribed(1)
        await wait_for(lambda: _true(stage.runner.status.imported), "the first poll")
        mastodon.account("fan")
        mastodon.post("fan", "<p>Off topic</p>")
        question = mastodon.post("mastodonpy_test", "<p>Who wins?</p>")
        mastodon.post("fan", "<p>#tdf reply</p>", tags=["tdf"], reply_to=question)
        tagged = mastodon.post("fan", "<p>#TDF stage 1</p>", tags=["tdf"])
        await stage.until(("upsert", tagged.uri, 1), "the tagged post")
        mastodon.delete(tagged)
        await stage.until(("remove", tagged.uri, 2), "the streamed delete")
        assert [key for _, key, _ in await stage.changes()] == [tagged.uri, tagged.uri]
    finally:
        await stage.runner.stop()


@pytest.mark.asyncio
async def test_a_refused_stream_is_shown_down_and_polling_goes_on(
    store: Store,
    collector: MastodonCollector,
    mastodon: FakeMastodon,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, APP_TOKEN)  # an app token: the API takes it, streaming does not (4.2+)
    stage = Stage(store, collector, mastodon_source(mastodon, token_env=ENV))
    stage.runner.start()
    try:

        async def down() -> bool:
            return stage.stream_state.get("state") == "down"

        await wait_for(down, "the stream to be refused")
        assert stage.stream_state["error"] == (
            f"streaming on {mastodon.netloc} refused the token in ${ENV} (HTTP 401):"
            " it needs a user token with read:statuses; polling goes on"
        )
        await wait_for(lambda: _true(stage.runner.status.imported), "the first poll")
        assert len(await stage.changes()) == 5 and str(stage.runner.status.state) == "ok"
        assert 401 in mastodon.stream_attempts and 101 not in mastodon.stream_attempts
    finally:
        await stage.runner.stop()


@pytest.mark.asyncio
async def test_an_unset_token_variable_is_shown_and_polling_works(
    mastodon: FakeMastodon,  # noqa: F811
    collector: MastodonCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    source = mastodon_source(mastodon, token_env=ENV)
    status = new_status(source)
    assert len((await collector.poll(source, status)).entries) == 5
    assert status.details["stream"] == {
        "state": "off",
        "error": f"${ENV} is empty or unset: no streaming, polling only",
    }


# -- end to end: fake Mastodon -> Fil -> a websocket reader ---------------------------------------------------


@pytest.fixture
def registered() -> Iterator[None]:
    previous = REGISTRY.get("mastodon")
    REGISTRY["mastodon"] = MastodonCollector
    yield
    if previous is None:
        REGISTRY.pop("mastodon", None)
    else:
        REGISTRY["mastodon"] = previous


@pytest.mark.asyncio
async def test_a_post_its_edit_and_its_deletion_reach_a_reader(
    registered: None,
    mastodon: FakeMastodon,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        textwrap.dedent(
            f"""\
            events:
              - slug: stage-1
                title: "Stage 1"
                sources:
                  - id: reporter
                    kind: mastodon
                    instance: {mastodon.base_url}
                    account: mastodonpy_test
                    role: journalist
                    token_env: {ENV}
                    interval: 30s
                    backfill: 5
            """
        )
    )
    fil = await start_fil(sources, tmp_path / "data")
    try:
        await mastodon.wait_subscribed(1)

        async def imported() -> bool:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{fil.base}/api/events/stage-1/items") as response:
                    return len((await response.json())["items"]) == 5

        await wait_for(imported, "the first import")
        async with connect(f"{fil.ws_base}/api/events/stage-1/live") as ws:

            async def next_message(*types: str) -> dict[str, Any]:
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    if message["type"] in types:
                        return message  # type: ignore[no-any-return]

            await next_message("hello")
            post = mastodon.post("mastodonpy_test", "<p>Live from the finish :flag:</p>")
            upsert = await next_message("upsert")
            item = upsert["item"]
            assert item["url"] == post.data["url"] and item["version"] == 1
            assert "Live from the finish" in item["html"] and item["author"]["name"] == "John Lennon"
            assert item["source"]["id"] == "reporter" and item["role"] == "journalist"
            mastodon.edit(post, "<p>Live from the finish line</p>")
            edit = await next_message("upsert")
            assert edit["item"]["id"] == item["id"] and edit["item"]["version"] == 2
            assert "finish line" in edit["item"]["html"]
            mastodon.delete(post)
            removed = await next_message("remove")
            assert removed["id"] == item["id"]
    finally:
        await fil.stop()

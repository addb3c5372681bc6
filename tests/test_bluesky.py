"""The Bluesky collector against a fake AppView, PDS and Jetstream on 127.0.0.1, and once through a real Fil."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from curation.collectors import REGISTRY, CollectorContext, PollResult
from curation.collectors.bluesky import BlueskyCollector
from curation.collectors.fetch import Fetcher
from curation.collectors.jetstream import RESUME_MARGIN_US, JetstreamPool, Opened
from curation.errors import FetchError, RetryLaterError, SourceError
from curation.models import Entry, Source, SourceKind, SourceStatus
from tests.conftest import make_source, start_fil
from tests.fake_bluesky import BSKY_APP_DID, FakeBluesky, jetstream_lines, minutes_ago
from tests.test_live_e2e import next_message

WAIT = 10.0  # generous: tests wait for outcomes, they never time them
AUTH_ENV = "FIL_TEST_BSKY_AUTH"


@pytest.fixture
async def bsky() -> AsyncIterator[FakeBluesky]:
    async with FakeBluesky() as fake:
        yield fake


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(allow_private=True) as f:
        yield f


@pytest.fixture
def collector(fetcher: Fetcher) -> BlueskyCollector:
    return BlueskyCollector(CollectorContext(fetcher), settle=0.05, checkpoint=0.3)


def source(bsky: FakeBluesky, source_id: str = "rider", **options: Any) -> Source:
    values = {"appview": bsky.base, "jetstream": bsky.jetstream_url, **options}
    return make_source(source_id, kind=SourceKind.BLUESKY, url=None, options=values)


def status_of(src: Source, *, imported: bool = True, cursor: str | None = None) -> SourceStatus:
    return SourceStatus(id=src.id, kind="bluesky", imported=imported, cursor=cursor)


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Streamer:
    """Runs collector.stream() for one source, storing deliveries as the runner would (cursor included)."""

    def __init__(self, collector: BlueskyCollector, src: Source, status: SourceStatus) -> None:
        self.collector, self.source, self.status = collector, src, status
        self.results: list[PollResult] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Streamer:
        self.task = asyncio.create_task(self.collector.stream(self.source, self.status, self.deliver))
        return self

    async def deliver(self, result: PollResult) -> None:
        self.results.append(result)
        if result.cursor is not None:
            assert int(result.cursor) >= int(self.status.cursor or 0), "a cursor never moves backwards"
            self.status.cursor = result.cursor

    @property
    def entries(self) -> list[Entry]:
        return [e for r in self.results for e in r.entries]

    @property
    def deleted(self) -> list[str]:
        return [k for r in self.results for k in r.deleted]

    @property
    def open(self) -> bool:
        return bool(self.status.details.get("stream", {}).get("state") == "open")

    async def ended(self) -> BaseException | None:
        assert self.task is not None
        await asyncio.wait_for(asyncio.wait({self.task}), WAIT)
        return self.task.exception()

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task})


@pytest.fixture
async def streamers() -> AsyncIterator[list[Streamer]]:
    started: list[Streamer] = []
    yield started
    for streamer in started:
        await streamer.stop()


def stream(streamers: list[Streamer], collector: BlueskyCollector, src: Source, status: SourceStatus) -> Streamer:
    streamer = Streamer(collector, src, status).start()
    streamers.append(streamer)
    return streamer


# --- polling accounts -------------------------------------------------------------------------------------


async def test_the_first_poll_takes_a_page_then_only_new_posts(bsky: FakeBluesky, collector: BlueskyCollector) -> None:
    rider = bsky.add_account("rider.test", display_name="Tadej")
    for n in range(35):
        bsky.add_post(rider, f"post {n}", indexed_at=minutes_ago(100 - n))
    src, status = source(bsky, actor="rider.test"), status_of(source(bsky), imported=False)
    first = await collector.poll(src, status)
    assert [e.text for e in first.entries] == [f"post {n}" for n in range(34, 4, -1)]
    call = bsky.calls("app.bsky.feed.getAuthorFeed")[-1]
    assert call.query == [("actor", "rider.test"), ("filter", "posts_no_replies"), ("limit", "30")]
    assert "authorization" not in call.headers
    assert first.entries[0].author.name == "Tadej" and first.entries[0].author.handle == "@rider.test"
    assert first.entries[0].url.startswith("https://bsky.app/profile/rider.test/post/")  # type: ignore[union-attr]
    assert status.memo["did"] == rider.did

    someone = bsky.add_account("someone.test")
    original = bsky.post_view(someone, "someone else's post")
    bsky.add_repost(rider, original)
    bsky.add_post(rider, "new 1")
    bsky.add_post(rider, "a reply", reply={"root": {"uri": original["uri"]}, "parent": {"uri": original["uri"]}})
    bsky.add_post(rider, "new 2")
    bsky.add_pin(rider, bsky.post_view(rider, "pinned"))
    requests = len(bsky.requests)
    second = await collector.poll(src, status)
    assert [e.text for e in second.entries] == ["new 2", "new 1"]
    assert len(bsky.requests) == requests + 1  # stopped at the first post already seen
    third = await collector.poll(src, status)
    assert third.entries == []


async def test_a_burst_longer_than_a_page_walks_back_to_the_first_seen_post(
    bsky: FakeBluesky, collector: BlueskyCollector
) -> None:
    rider = bsky.add_account("rider.test")
    bsky.add_post(rider, "old")
    src, status = source(bsky, actor="rider.test"), status_of(source(bsky))
    await collector.poll(src, status)
    for n in range(45):
        bsky.add_post(rider, f"burst {n}")
    result = await collector.poll(src, status)
    assert [e.text for e in result.entries] == [f"burst {n}" for n in range(44, -1, -1)]
    cursors = [c.param("cursor") for c in bsky.calls("app.bsky.feed.getAuthorFeed")[-2:]]
    assert cursors == [None, "30"]


async def test_appview_errors_name_the_account(bsky: FakeBluesky, collector: BlueskyCollector) -> None:
    with pytest.raises(FetchError) as missing:
        await collector.poll(source(bsky, actor="nobody.test"), status_of(source(bsky)))
    assert "Bluesky account nobody.test not found" in str(missing.value)
    assert "InvalidRequest: Profile not found" in str(missing.value)
    rider = bsky.add_account("rider.test")
    bsky.blocked.add(rider.did)
    with pytest.raises(FetchError) as blocked:
        await collector.poll(source(bsky, actor="rider.test"), status_of(source(bsky)))
    assert "rider.test cannot be read: blocked (BlockedActor)" in str(blocked.value)
    bsky.rate_limited = True
    with pytest.raises(RetryLaterError) as limited:
        await collector.poll(source(bsky, actor="rider.test"), status_of(source(bsky)))
    assert limited.value.retry_after == 30


async def test_an_account_hidden_from_logged_out_viewers_is_not_collected(
    bsky: FakeBluesky, collector: BlueskyCollector
) -> None:
    rider = bsky.add_account("quiet.test", labels=["!no-unauthenticated"])
    bsky.add_post(rider, "for logged-in eyes")
    with pytest.raises(SourceError) as hidden:
        await collector.poll(source(bsky, actor="quiet.test"), status_of(source(bsky)))
    assert "@quiet.test asks not to be shown to logged-out viewers" in str(hidden.value)
    assert "!no-unauthenticated" in str(hidden.value)


# --- hashtags ---------------------------------------------------------------------------------------------


def tagged(bsky: FakeBluesky, text: str, tag: str = "TDF2027") -> dict[str, Any]:
    fan = bsky.account("fan.test") or bsky.add_account("fan.test")
    start = text.encode().index(f"#{tag}".encode())
    facets = [
        {
            "index": {"byteStart": start, "byteEnd": start + len(tag) + 1},
            "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
        }
    ]
    return bsky.add_post(fan, text, facets=facets)


async def test_a_hashtag_without_credentials_has_a_clear_status(
    bsky: FakeBluesky, collector: BlueskyCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    src = source(bsky, hashtag="TDF2027", auth_env=AUTH_ENV)
    with pytest.raises(SourceError) as error:
        await collector.poll(src, status_of(src))
    assert str(error.value).startswith("rider: hashtag search on Bluesky needs auth_env with an app password")
    assert f"set {AUTH_ENV} to HANDLE:APP_PASSWORD" in str(error.value)
    assert bsky.requests == []
    # the fake is faithful: the AppView refuses a search without a session
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{bsky.base}/xrpc/app.bsky.feed.searchPosts?q=%23TDF2027") as response:
            assert response.status == 403
    assert not collector.streams(src) and collector.streams(source(bsky, actor="rider.test"))


async def test_a_hashtag_with_an_app_password_logs_in_once_and_searches(
    bsky: FakeBluesky, collector: BlueskyCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    bsky.logins["searcher.test"] = "abcd-efgh-ijkl-mnop"
    monkeypatch.setenv(AUTH_ENV, f"searcher.test:abcd-efgh-ijkl-mnop@{bsky.base}")
    tagged(bsky, "Go go #TDF2027")
    tagged(bsky, "Off topic #Giro", tag="Giro")
    src = source(bsky, hashtag="TDF2027", auth_env=AUTH_ENV)
    status = status_of(src)
    first = await collector.poll(src, status)
    assert [e.text for e in first.entries] == ["Go go #TDF2027"]
    assert first.entries[0].html is not None and 'href="https://bsky.app/hashtag/TDF2027"' in first.entries[0].html
    login = bsky.calls("com.atproto.server.createSession")
    assert len(login) == 1 and json.loads(login[0].body) == {
        "identifier": "searcher.test",
        "password": "abcd-efgh-ijkl-mnop",
    }
    search = bsky.calls("app.bsky.feed.searchPosts")[-1]
    assert search.param("q") == "#TDF2027" and search.param("sort") == "latest"
    assert search.headers["authorization"].startswith("Bearer ")
    tagged(bsky, "Stage 2 #TDF2027")
    second = await collector.poll(src, status)
    assert [e.text for e in second.entries] == ["Stage 2 #TDF2027"]
    assert len(bsky.calls("com.atproto.server.createSession")) == 1

    bsky.expire_tokens()
    tagged(bsky, "Stage 3 #TDF2027")
    third = await collector.poll(src, status)
    assert [e.text for e in third.entries] == ["Stage 3 #TDF2027"]
    assert len(bsky.calls("com.atproto.server.refreshSession")) == 1
    assert len(bsky.calls("com.atproto.server.createSession")) == 1


async def test_bad_credentials_say_so_without_echoing_them(
    bsky: FakeBluesky, collector: BlueskyCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    bsky.logins["searcher.test"] = "right-pass-word-abcd"
    monkeypatch.setenv(AUTH_ENV, f"searcher.test:wrong-pass-word-zzzz@{bsky.base}")
    src = source(bsky, hashtag="TDF2027", auth_env=AUTH_ENV)
    with pytest.raises(FetchError) as wrong:
        await collector.poll(src, status_of(src))
    assert "Bluesky login failed for the login of searcher.test" in str(wrong.value)
    assert "Invalid identifier or password" in str(wrong.value) and "wrong-pass" not in str(wrong.value)
    monkeypatch.setenv(AUTH_ENV, "no-colon-secret-value")
    with pytest.raises(SourceError) as malformed:
        await collector.poll(src, status_of(src))
    assert f"{AUTH_ENV} must hold HANDLE:APP_PASSWORD" in str(malformed.value)
    assert "no-colon-secret-value" not in str(malformed.value)


# --- Jetstream --------------------------------------------------------------------------------------------


async def test_two_sources_share_one_socket_and_get_their_posts_and_deletes(
    bsky: FakeBluesky, collector: BlueskyCollector, streamers: list[Streamer]
) -> None:
    alice = bsky.add_account("alice.test", display_name="Alice")
    bob = bsky.add_account("bob.test", display_name="Bob")
    stranger = bsky.add_account("stranger.test")
    a_src, b_src = source(bsky, "alice", actor="alice.test"), source(bsky, "bob", actor=bob.did)
    a = stream(streamers, collector, a_src, status_of(a_src))
    b = stream(streamers, collector, b_src, status_of(b_src))
    await eventually(lambda: a.open and b.open, "both streams to open")
    assert len(bsky.sockets) == 1
    socket = bsky.sockets[0]
    assert sorted(socket.dids) == sorted([alice.did, bob.did])
    assert [v for k, v in socket.query if k == "wantedCollections"] == ["app.bsky.feed.post"]
    assert not any(k == "cursor" for k, _ in socket.query)  # new sources start live
    assert len(bsky.calls("com.atproto.identity.resolveHandle")) == 1  # alice's handle; bob is a DID

    first = bsky.post_event(alice, "Attack on the Tourmalet! #TDF2027", rkey="3mpost1")
    await bsky.push(
        bsky.post_event(stranger, "not followed"),
        first,
        bsky.post_event(bob, "Chasing"),
        bsky.post_event(alice, "a reply", reply={"root": {"uri": "at://x"}, "parent": {"uri": "at://x"}}),
        bsky.post_event(alice, "and again", rkey="3mpost2"),
    )
    # frames Jetstream might send regardless of the filter: identity/account events, other collections, garbage
    await bsky.push_raw(json.dumps({"did": alice.did, "time_us": bsky.now_us(), "kind": "identity", "identity": {}}))
    await bsky.push_raw(
        json.dumps(
            {
                "did": alice.did,
                "time_us": bsky.now_us(),
                "kind": "commit",
                "commit": {
                    "rev": "r",
                    "operation": "create",
                    "collection": "app.bsky.feed.like",
                    "rkey": "3l",
                    "record": {},
                },
            }
        )
    )
    await bsky.push_raw("this is not json")
    await bsky.push_raw('{"did": 5}')
    await eventually(lambda: len(a.entries) == 2 and len(b.entries) == 1, "the posts")
    assert [e.text for e in a.entries] == ["Attack on the Tourmalet! #TDF2027", "and again"]
    assert a.entries[0].key == f"at://{alice.did}/app.bsky.feed.post/3mpost1"
    assert a.entries[0].url == "https://bsky.app/profile/alice.test/post/3mpost1"
    assert a.entries[0].author.name == "Alice" and a.entries[0].author.handle == "@alice.test"
    assert [e.text for e in b.entries] == ["Chasing"]
    # one profile lookup per DID, not per post
    assert sorted(c.param("actors") or "" for c in bsky.calls("app.bsky.actor.getProfiles")) == sorted(
        [alice.did, bob.did]
    )
    assert collector.jetstream.connections[bsky.jetstream_url].garbage == 2

    delete = bsky.delete_event(alice, "3mpost1")
    await bsky.push(delete)
    await eventually(lambda: a.deleted == [f"at://{alice.did}/app.bsky.feed.post/3mpost1"], "the delete")
    assert int(a.status.cursor or 0) >= json.loads(delete)["time_us"]
    assert b.deleted == []


async def test_a_new_source_joins_the_open_socket_and_the_last_one_closes_it(
    bsky: FakeBluesky, collector: BlueskyCollector, streamers: list[Streamer]
) -> None:
    alice, carol = bsky.add_account("alice.test"), bsky.add_account("carol.test")
    a_src, c_src = source(bsky, "alice", actor=alice.did), source(bsky, "carol", actor=carol.did)
    a = stream(streamers, collector, a_src, status_of(a_src))
    await eventually(lambda: a.open, "alice's stream")
    c = stream(streamers, collector, c_src, status_of(c_src))
    await eventually(lambda: c.open, "carol's stream")
    assert len(bsky.sockets) == 1, "a newcomer must not open a second socket"
    socket = bsky.sockets[0]
    assert socket.updates[-1] == {
        "wantedCollections": ["app.bsky.feed.post"],
        "wantedDids": sorted([alice.did, carol.did]),
        "maxMessageSizeBytes": 0,
    }
    await bsky.push(bsky.post_event(carol, "I joined late"))
    await eventually(lambda: [e.text for e in c.entries] == ["I joined late"], "carol's post")

    await c.stop()
    await eventually(lambda: bool(socket.updates) and socket.updates[-1]["wantedDids"] == [alice.did], "the filter")
    await bsky.push(bsky.post_event(carol, "nobody listens"))
    await a.stop()
    await eventually(lambda: socket.ws.closed, "the socket to close with its last source")
    assert collector.jetstream.connections == {}
    assert [e.text for e in c.entries] == ["I joined late"]


async def test_a_drop_ends_every_stream_and_they_resume_from_their_cursor_without_gap_or_duplicate(
    bsky: FakeBluesky, fetcher: Fetcher, streamers: list[Streamer]
) -> None:
    # no checkpoint during the test: bob's cursor can only come from the position handed over at the drop
    collector = BlueskyCollector(CollectorContext(fetcher), settle=0.05, checkpoint=60)
    alice, bob = bsky.add_account("alice.test"), bsky.add_account("bob.test")
    a_src, b_src = source(bsky, "alice", actor=alice.did), source(bsky, "bob", actor=bob.did)
    a_status, b_status = status_of(a_src), status_of(b_src)
    a = stream(streamers, collector, a_src, a_status)
    b = stream(streamers, collector, b_src, b_status)
    await eventually(lambda: a.open and b.open, "both streams")
    before = bsky.post_event(alice, "before the drop", rkey="3mbefore")
    await bsky.push(before)
    await eventually(lambda: len(a.entries) == 1, "the first post")

    bsky.drop()
    errors = [await a.ended(), await b.ended()]
    assert all(isinstance(e, SourceError) and "Jetstream" in str(e) for e in errors), errors
    assert a_status.cursor is not None and int(a_status.cursor) >= json.loads(before)["time_us"]
    # posted while nobody was connected: only a replay from the cursor can bring it
    during = bsky.post_event(alice, "during the drop", rkey="3mduring")
    bsky.record(during)
    bsky.record(bsky.post_event(bob, "bob, during the drop"))

    # the runner opens the streams again (each after its own backoff); they resume from the cursor each persisted
    a2 = stream(streamers, collector, a_src, a_status)
    await eventually(lambda: len(a2.entries) >= 1, "the replayed post")
    b2 = stream(streamers, collector, b_src, b_status)  # joins a live socket, yet must catch up
    await eventually(lambda: len(b2.entries) >= 1, "bob's replayed post")
    await bsky.push(bsky.post_event(alice, "after the drop", rkey="3mafter"))
    await eventually(lambda: len(a2.entries) >= 2, "the live post")
    await asyncio.sleep(0.2)  # room for a duplicate to show up, if any were sent
    assert [e.text for e in a.entries + a2.entries] == ["before the drop", "during the drop", "after the drop"]
    assert [e.text for e in b.entries + b2.entries] == ["bob, during the drop"]
    resumed = bsky.sockets[-1]
    cursor = int(dict(resumed.query)["cursor"])
    assert cursor <= json.loads(during)["time_us"]
    assert any(line == before for line in resumed.sent), "the replay window reaches back before the drop"
    assert len(bsky.open_sockets) == 1


async def test_a_source_with_an_old_cursor_makes_the_open_socket_replay(
    bsky: FakeBluesky, collector: BlueskyCollector, streamers: list[Streamer]
) -> None:
    alice, bob = bsky.add_account("alice.test"), bsky.add_account("bob.test")
    a_src, b_src = source(bsky, "alice", actor=alice.did), source(bsky, "bob", actor=bob.did)
    a = stream(streamers, collector, a_src, status_of(a_src))
    await eventually(lambda: a.open, "alice's stream")
    now = bsky.now_us()
    missed = bsky.post_event(bob, "posted while Fil was down", time_us=now - 60_000_000)
    bsky.record(missed)
    b = stream(streamers, collector, b_src, status_of(b_src, cursor=str(now - 70_000_000)))
    await eventually(lambda: [e.text for e in b.entries] == ["posted while Fil was down"], "bob's replay")
    assert len(bsky.sockets) == 2 and bsky.sockets[0].closed and len(bsky.open_sockets) == 1
    assert int(dict(bsky.sockets[1].query)["cursor"]) == now - 70_000_000 - RESUME_MARGIN_US
    await bsky.push(bsky.post_event(alice, "still here"))
    await eventually(lambda: [e.text for e in a.entries] == ["still here"], "alice's post on the new socket")


async def test_fixture_lines_go_over_the_wire_byte_for_byte(
    bsky: FakeBluesky, collector: BlueskyCollector, streamers: list[Streamer]
) -> None:
    posts = jetstream_lines("jetstream_v1_posts.jsonl")
    golden = jetstream_lines("jetstream_v1_golden.jsonl")
    japanese, deleter = "did:plc:amnbije7mr5g3pgxuun7q44o", "did:plc:4smmjsqf6l5jkzczvw6vsrqc"
    j_src, d_src = source(bsky, "ja", actor=japanese), source(bsky, "del", actor=deleter)
    j = stream(streamers, collector, j_src, status_of(j_src))
    d = stream(streamers, collector, d_src, status_of(d_src))
    await eventually(lambda: j.open and d.open, "the streams")
    await bsky.push(*golden, *posts)
    await eventually(lambda: bool(j.entries) and bool(d.deleted), "the fixture events")
    assert bsky.sockets[0].sent == [posts[1], posts[6]]  # the exact lines, no more
    assert j.entries[0].text == json.loads(posts[1])["commit"]["record"]["text"]
    assert j.entries[0].text.endswith("ネトフリでも観られるっぽいよかった💦")  # type: ignore[union-attr]
    assert d.deleted == [f"at://{deleter}/app.bsky.feed.post/3mpt73z3ejc2p"]


async def test_streamed_events_wait_for_the_first_import(
    bsky: FakeBluesky, collector: BlueskyCollector, streamers: list[Streamer]
) -> None:
    alice = bsky.add_account("alice.test")
    src = source(bsky, actor=alice.did)
    status = status_of(src, imported=False)
    a = stream(streamers, collector, src, status)
    await eventually(lambda: a.open, "the stream")
    await bsky.push(bsky.post_event(alice, "early"))
    await asyncio.sleep(0.5)
    assert a.results == [], "nothing may be stored before the first poll imported the account"
    status.imported = True
    await eventually(lambda: [e.text for e in a.entries] == ["early"], "the held post")


async def test_a_quiet_account_still_advances_its_cursor(
    bsky: FakeBluesky, collector: BlueskyCollector, streamers: list[Streamer]
) -> None:
    alice = bsky.add_account("alice.test")
    src = source(bsky, actor=alice.did)
    status = status_of(src)
    a = stream(streamers, collector, src, status)
    await eventually(lambda: status.cursor is not None, "a checkpoint")
    assert a.entries == []
    assert abs(int(status.cursor or 0) - time.time_ns() // 1000) < 60_000_000


async def test_a_handle_is_resolved_once_and_kept_in_the_memo(
    bsky: FakeBluesky, collector: BlueskyCollector, streamers: list[Streamer]
) -> None:
    src = source(bsky, actor="bsky.app")  # the fake answers with the real resolveHandle fixture
    status = status_of(src)
    first = stream(streamers, collector, src, status)
    await eventually(lambda: first.open, "the stream")
    assert status.memo["did"] == BSKY_APP_DID
    assert bsky.sockets[0].dids == {BSKY_APP_DID}
    await first.stop()
    second = stream(streamers, collector, src, status)
    await eventually(lambda: second.open, "the stream again")
    assert len(bsky.calls("com.atproto.identity.resolveHandle")) == 1
    missing = stream(streamers, collector, source(bsky, "ghost", actor="ghost.test"), status_of(src))
    error = await missing.ended()
    assert isinstance(error, FetchError) and "Bluesky handle ghost.test does not resolve" in str(error)


async def test_many_dids_are_sent_in_a_hello_message(bsky: FakeBluesky, fetcher: Fetcher) -> None:
    pool = JetstreamPool(fetcher, settle=0.05, max_query_dids=1)
    dids = ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"]
    subscriptions = [pool.subscribe(bsky.jetstream_url, did, None) for did in dids]
    try:
        opened = [await s.next(WAIT) for s in subscriptions]
        assert all(isinstance(n[0], Opened) for n in opened)
        socket = bsky.sockets[0]
        assert ("requireHello", "true") in socket.query and not any(k == "wantedDids" for k, _ in socket.query)
        await eventually(lambda: bool(socket.updates), "the hello")
        assert socket.updates[0]["wantedDids"] == dids
        await bsky.push(bsky.post_event(dids[1], "hello"))
        event = (await subscriptions[1].next(WAIT))[0]
        assert getattr(event, "did", None) == dids[1]
    finally:
        for s in subscriptions:
            pool.unsubscribe(s)


# --- end to end -------------------------------------------------------------------------------------------


def write_sources(path: Path, bsky: FakeBluesky) -> None:
    path.write_text(
        textwrap.dedent(
            f"""\
            events:
              - slug: stage-1
                title: "Stage 1"
                sources:
                  - id: rider
                    kind: bluesky
                    actor: rider.test
                    role: athlete
                    appview: {bsky.base}
                    jetstream: {bsky.jetstream_url}
                    interval: 1h
            """
        )
    )


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(int(WAIT / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_end_to_end_a_streamed_post_and_its_delete_reach_a_reader(
    bsky: FakeBluesky, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "bluesky", lambda context: BlueskyCollector(context, settle=0.05))
    rider = bsky.add_account("rider.test", display_name="Rider <b>One</b>")
    bsky.add_post(rider, "Warming up", indexed_at=minutes_ago(5))
    write_sources(tmp_path / "sources.yaml", bsky)
    fil = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    try:

        async def streaming() -> bool:
            listing = await fil.sources()
            rider_status = next(s for s in listing["sources"] if s["id"] == "rider")
            return bool(rider_status["details"].get("stream", {}).get("state") == "open" and rider_status["items_seen"])

        await wait_until(streaming, "the first poll and an open stream")
        async with connect(f"{fil.ws_base}/api/events/stage-1/live") as ws:
            hello = await next_message(ws)
            assert hello["type"] == "hello"
            await bsky.push(bsky.post_event(rider, "Breakaway with @team! Live now", rkey="3mlive"))
            upsert = await next_message(ws, "upsert")
            item = upsert["item"]
            assert item["text"] == "Breakaway with @team! Live now"
            assert item["url"] == "https://bsky.app/profile/rider.test/post/3mlive"
            assert item["author"]["name"] == "Rider One" and item["role"] == "athlete"
            await bsky.push(bsky.delete_event(rider, "3mlive"))
            removed = await next_message(ws, "remove")
            assert removed["id"] == item["id"]
        page = await get_json(f"{fil.base}/api/events/stage-1/items")
        assert [i["text"] for i in page["items"]] == ["Warming up"]
    finally:
        await fil.stop()

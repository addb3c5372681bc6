"""Network abuse (issue 7 §3): every outbound entry point refuses private targets, and hostile upstreams are bounded.

tests/test_fetch.py covers the Fetcher's rule itself (the common private ranges, localhost after DNS, redirects
from a trusted origin). Here: the spellings and tricks it does not list, DNS rebinding, redirects to every kind
of private target, each entry point that makes requests (feeds, Mastodon and its stream, Bluesky and Jetstream,
WebSub hubs, pasted URLs, the image proxy), and upstreams that trickle, flood, or send frames past the cap.
Nothing here sends a packet beyond 127.0.0.0/8: `connections` fails any connection attempt that gets that far.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from curation.collectors import CollectorContext, atproto, mastodon
from curation.collectors.bluesky import BlueskyCollector
from curation.collectors.feed import FeedCollector
from curation.collectors.feed_parser import MAX_ENTRIES, parse_document
from curation.collectors.fetch import Fetcher
from curation.collectors.jetstream import (
    MAX_PENDING,
    Dropped,
    JetstreamConnection,
    JetstreamPool,
    RecentKeys,
    Subscription,
)
from curation.collectors.mastodon import MastodonCollector
from curation.collectors.websub import WebSubManager
from curation.config import Settings
from curation.errors import BlockedAddressError, FetchError, TooLargeError
from curation.models import SourceKind, SourceStatus
from curation.paste import PasteError, resolve
from curation.web.images import ImageProxy
from tests.conftest import make_source, start_fil
from tests.loopback import LoopbackServer
from tests.test_fetch import Connections, FakeDNS, connections  # noqa: F401 - fixture
from tests.upstreams import FakeUpstream, fixture, rss_document, upstream  # noqa: F401 - fixture

FEED = fixture("fetch_mastodon_rss_account.xml")
STATUS = json.loads((Path(__file__).parent / "fixtures" / "mastodon" / "status_local_card.json").read_text())
POST_VIEW = json.loads(
    (Path(__file__).parent / "fixtures" / "bluesky" / "getPostThread_recordWithMedia.json").read_text()
)["thread"]["post"]


# -- address spellings, on every kind of request ------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "0x7f.1",  # hex, short form
        "0x7f.0.0.1",
        "0X7F000001",
        "017700000001",  # octal, one part
        "0177.1",
        "127.000.000.001",
        "127.0.0.1.",  # trailing dot
        "0",  # 0.0.0.0
        "①②⑦.0.0.1",  # IDNA-normalized digits
        "[::ffff:10.0.0.1]",  # IPv4-mapped
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",  # IPv4-compatible (deprecated)
        "[64:ff9b::7f00:1]",  # NAT64 to loopback
        "[64:ff9b::10.0.0.1]",  # NAT64 to a private network
        "[64:ff9b:1::a00:1]",  # local-use NAT64
        "[fd12:3456::1]",  # unique local, fc00::/7
        "[febf::1]",  # the end of fe80::/10
        "[fe80::1%25eth0]",  # with a zone
        "[fec0::1]",  # site-local: ipaddress calls it global
    ],
)
async def test_other_private_spellings_are_refused_for_get_post_and_websockets(
    connections: Connections,  # noqa: F811
    host: str,
) -> None:
    async with Fetcher() as f:
        with pytest.raises(BlockedAddressError):
            await f.get(f"http://{host}/feed.xml")
        with pytest.raises(BlockedAddressError):
            await f.post(f"https://{host}/hub", data={"hub.mode": "subscribe"})
        with pytest.raises(BlockedAddressError):
            await f.ws_connect(f"wss://{host}/subscribe")
    assert connections.attempts == []


async def test_the_operator_switch_lets_private_addresses_through(connections: Connections) -> None:  # noqa: F811
    """The control for the test above: with CURATION_ALLOW_PRIVATE_HOSTS the same request reaches connect."""
    async with Fetcher(allow_private=True) as f:
        with pytest.raises(FetchError) as caught:
            await f.get("http://[::ffff:10.0.0.1]/feed.xml")
    assert not isinstance(caught.value, BlockedAddressError)
    assert connections.attempts != []


@pytest.mark.parametrize(
    "addresses",
    [
        ["fd00::1"],
        ["fec0::1"],
        ["64:ff9b::a00:1"],
        ["0.0.0.0"],
        ["::ffff:127.0.0.1"],
        ["::1"],
        ["2606:4700::1", "fe80::1"],
    ],
)
async def test_a_name_resolving_to_a_private_address_is_refused_for_get_post_and_websockets(
    connections: Connections,  # noqa: F811
    addresses: list[str],
) -> None:
    dns = FakeDNS({"inside.example": addresses})
    async with Fetcher(resolver=dns) as f:
        for request in (
            f.get("http://inside.example/feed.xml"),
            f.post("https://inside.example/hub", data={"a": "b"}),
            f.ws_connect("wss://inside.example/subscribe"),
        ):
            with pytest.raises(BlockedAddressError, match="inside.example resolves to"):
                await request
    assert connections.attempts == []


class RebindingDNS(AbstractResolver):
    """A DNS server with a zero TTL that changes its answer after the first lookup (DNS rebinding)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)]

    async def close(self) -> None:
        pass


async def test_dns_rebinding_the_connection_uses_the_very_address_that_was_checked(
    connections: Connections,  # noqa: F811
) -> None:
    """One lookup per connection, and the socket is opened to that lookup's answer: there is no second lookup
    between the check and the connect for a rebinding DNS server to answer differently."""
    dns = RebindingDNS("93.184.216.34", "127.0.0.1")
    async with Fetcher(resolver=dns) as f:
        with pytest.raises(FetchError) as first:
            await f.get("http://rebind.example/feed.xml")
        assert not isinstance(first.value, BlockedAddressError)
        assert (dns.lookups, connections.attempts) == (1, [[("93.184.216.34", 80)]])
        # the next connection looks the name up again, and its new (private) answer is refused
        with pytest.raises(BlockedAddressError, match="rebind.example resolves to 127.0.0.1"):
            await f.get("http://rebind.example/feed.xml")
    assert (dns.lookups, connections.attempts) == (2, [[("93.184.216.34", 80)]])


async def test_dns_rebinding_the_other_way_round_is_refused_at_once(connections: Connections) -> None:  # noqa: F811
    dns = RebindingDNS("10.0.0.1", "93.184.216.34")
    async with Fetcher(resolver=dns) as f:
        with pytest.raises(BlockedAddressError):
            await f.get("http://rebind.example/feed.xml")
    assert (dns.lookups, connections.attempts) == (1, [])


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://0x7f.1:{port}/secret",
        "http://2130706433:{port}/secret",
        "http://inside.example:{port}/secret",
        "/hop",  # a second, trusted hop first: every hop is checked, not only the first
    ],
)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_a_private_target_is_refused_at_every_hop(
    upstream: FakeUpstream,  # noqa: F811
    target: str,
    status: int,
) -> None:
    upstream.add("/secret", FEED)
    upstream.redirect("/hop", f"http://inside.example:{upstream.port}/secret", status=status)
    upstream.redirect("/feed.xml", target.format(port=upstream.port), status=status)
    dns = FakeDNS({"inside.example": ["127.0.0.1"]})
    async with Fetcher(trusted_origins={upstream.origin}, resolver=dns, total_timeout=5) as f:
        with pytest.raises(BlockedAddressError):
            await f.get(upstream.url("/feed.xml"))
    assert upstream.hits("/secret") == 0


# -- every entry point that makes requests ------------------------------------------------------------------


async def test_a_feed_source_at_a_private_address_is_refused(connections: Connections) -> None:  # noqa: F811
    source = make_source("f", url="http://192.168.1.1/feed.xml")
    async with Fetcher() as f:
        with pytest.raises(BlockedAddressError, match="192.168.1.1 is 192.168.1.1, a private address"):
            await FeedCollector(CollectorContext(f)).poll(source, SourceStatus(id="f", kind="feed"))
    assert connections.attempts == []


def _mastodon(instance: str, *, backfill: int = 20, **options: str) -> Any:
    settings: dict[str, object] = {"instance": instance, **options}
    return make_source("m", kind=SourceKind.MASTODON, url=None, backfill=backfill, options=settings)


@pytest.mark.parametrize("instance", ["http://10.0.0.1", "https://[fd00::1]", "https://intranet.example"])
async def test_a_mastodon_instance_at_a_private_address_is_refused(
    connections: Connections,  # noqa: F811
    instance: str,
) -> None:
    dns = FakeDNS({"intranet.example": ["10.1.2.3"]})
    async with Fetcher(resolver=dns) as f:
        for source in (_mastodon(instance, hashtag="tdf"), _mastodon(instance, account="rider")):
            with pytest.raises(BlockedAddressError):
                await MastodonCollector(CollectorContext(f)).poll(source, SourceStatus(id="m", kind="mastodon"))
    assert connections.attempts == []


async def test_a_mastodon_instance_cannot_point_its_stream_at_a_private_address(
    upstream: FakeUpstream,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The streaming host comes from the instance's own answer (configuration.urls.streaming): a hostile
    instance naming a private address there is refused like any other target."""
    monkeypatch.setenv("MASTO_TOKEN", "t0ken")
    streaming = {"configuration": {"urls": {"streaming": f"ws://127.0.0.2:{upstream.port}"}}}
    upstream.add("/api/v2/instance", json.dumps(streaming), content_type="application/json")
    source = _mastodon(upstream.base_url, hashtag="tdf", token_env="MASTO_TOKEN")
    async with Fetcher(trusted_origins={upstream.origin}) as f:
        collector = MastodonCollector(CollectorContext(f))

        async def deliver(result: Any) -> None:
            raise AssertionError("nothing may arrive")

        with pytest.raises(BlockedAddressError, match="127.0.0.2 is 127.0.0.2, a loopback address"):
            await collector.stream(source, SourceStatus(id="m", kind="mastodon"), deliver)
    assert upstream.hits("/api/v2/instance") == 1


def _bluesky(**options: Any) -> Any:
    return make_source("b", kind=SourceKind.BLUESKY, url=None, options=options)


async def test_a_bluesky_appview_or_pds_at_a_private_address_is_refused(
    connections: Connections,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BSKY_AUTH", "desk.example:abcd-efgh-ijkl-mnop@https://10.0.0.1")
    async with Fetcher() as f:
        collector = BlueskyCollector(CollectorContext(f), settle=0)
        status = SourceStatus(id="b", kind="bluesky")
        with pytest.raises(FetchError, match=r"10\.0\.0\.2 is 10\.0\.0\.2, a private address"):
            await collector.poll(_bluesky(actor="rider.bsky.social", appview="http://10.0.0.2"), status)
        with pytest.raises(FetchError, match=r"Bluesky login failed .*10\.0\.0\.1, a private address"):
            await collector.poll(_bluesky(hashtag="tdf", auth_env="BSKY_AUTH"), status)
    assert connections.attempts == []


async def test_a_jetstream_endpoint_at_a_private_address_is_refused(connections: Connections) -> None:  # noqa: F811
    async with Fetcher() as f:
        pool = JetstreamPool(f, settle=0)
        subscription = pool.subscribe("wss://[::ffff:192.168.0.1]/subscribe", "did:plc:abc", None)
        notices = await subscription.next(10)
        pool.unsubscribe(subscription)
    assert [type(n) for n in notices] == [Dropped]
    assert "a private address" in notices[0].reason  # type: ignore[union-attr]
    assert connections.attempts == []


async def test_a_websub_hub_at_a_private_address_is_refused(connections: Connections) -> None:  # noqa: F811
    status = SourceStatus(id="f", kind="feed")
    saved: list[SourceStatus] = []

    async def save_status(value: SourceStatus) -> None:
        saved.append(value)

    collection = SimpleNamespace(statuses={"f": status}, store=SimpleNamespace(save_status=save_status), poll_now=print)
    async with Fetcher() as f:
        manager = WebSubManager(collection, f, public_url="https://fil.example")  # type: ignore[arg-type]
        source = make_source("f", url="https://news.example/feed.xml")
        manager.ensure(source, status, ["https://169.254.169.254/hub"], "https://news.example/feed.xml")
        for _ in range(200):
            if status.details["websub"]["state"] == "failed":
                break
            await asyncio.sleep(0.02)
        await manager.stop()
    websub = status.details["websub"]
    assert websub["state"] == "failed" and "169.254.169.254, a link-local address" in websub["reason"]
    assert connections.attempts == []


@pytest.mark.parametrize(
    ("url", "settings"),
    [
        ("http://10.0.0.1/@rider/110000000000000001", {}),
        ("https://[::ffff:127.0.0.1]/@rider/110000000000000001", {}),
        ("https://bsky.app/profile/rider.bsky.social/post/3kabc", {"bluesky_appview": "http://192.168.0.1"}),
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", {"youtube_oembed": "http://169.254.169.254/oembed"}),
        ("https://x.com/rider/status/1234567890", {"x_oembed": "http://[fd00::1]/oembed"}),
    ],
)
async def test_a_pasted_url_never_reaches_a_private_address(
    connections: Connections,  # noqa: F811
    url: str,
    settings: dict[str, str],
) -> None:
    async with Fetcher() as f:
        with pytest.raises(PasteError, match="private addresses are refused") as caught:
            await resolve(url, fetcher=f, settings=Settings(**settings))  # type: ignore[arg-type]
    assert caught.value.status == 502
    assert connections.attempts == []


async def test_the_image_proxy_fetches_through_the_same_guard(connections: Connections) -> None:  # noqa: F811
    """The proxy has a Fetcher of its own (its own size cap), under the same address rule and trusted origins.
    tests/test_image_proxy.py checks the refusal end to end (403 naming the address)."""
    async with Fetcher() as shared:
        fil = SimpleNamespace(settings=Settings(image_proxy=True), fetcher=shared)
        proxy = ImageProxy(fil)  # type: ignore[arg-type]
        try:
            fetcher = proxy.fetcher()
            assert isinstance(fetcher, Fetcher) and not fetcher.allow_private
            assert fetcher.trusted_origins is shared.trusted_origins
            with pytest.raises(BlockedAddressError):
                await fetcher.get("http://169.254.169.254/latest/meta-data/iam.png")
        finally:
            await proxy.close()
    assert connections.attempts == []


# -- caps on what a hostile upstream sends ------------------------------------------------------------------


async def test_an_oversized_mastodon_or_bluesky_answer_is_cut_at_the_cap(upstream: FakeUpstream) -> None:  # noqa: F811
    """CURATION_MAX_BODY holds after decompression on the API paths too, not only for feeds."""
    upstream.gzip_bomb("/api/v1/timelines/tag/tdf", 8 * 1024 * 1024)
    upstream.gzip_bomb("/xrpc/app.bsky.feed.getAuthorFeed", 8 * 1024 * 1024)
    async with Fetcher(trusted_origins={upstream.origin}, max_body=256 * 1024) as f:
        context = CollectorContext(f)
        with pytest.raises(TooLargeError, match="body larger than 262144 bytes"):
            await MastodonCollector(context).poll(
                _mastodon(upstream.base_url, hashtag="tdf"), SourceStatus(id="m", kind="mastodon")
            )
        with pytest.raises(FetchError, match="body larger than 262144 bytes"):
            await BlueskyCollector(context, settle=0).poll(
                _bluesky(actor="rider.bsky.social", appview=upstream.base_url), SourceStatus(id="b", kind="bluesky")
            )


class FloodingSocket(LoopbackServer):
    """A websocket upstream (Jetstream or Mastodon streaming) that sends one frame of `size` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._socket)
        return app

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("x" * self.size)
        await ws.receive()  # until the client goes
        return ws


async def test_a_websocket_frame_over_the_cap_drops_the_stream() -> None:
    """Outbound websockets read at most 4 MiB per frame: a bigger one ends the connection (the sources poll)."""
    async with FloodingSocket(5 * 1024 * 1024) as flood:
        async with Fetcher(trusted_origins={flood.origin}) as f:
            pool = JetstreamPool(f, settle=0)
            subscription = pool.subscribe(flood.base_url.replace("http", "ws", 1) + "/subscribe", "did:plc:abc", None)
            notices: list[Any] = []
            while not any(isinstance(n, Dropped) for n in notices):
                notices += await subscription.next(10) or [Dropped("timed out", None)]
            pool.unsubscribe(subscription)
    assert "exceeds limit" in notices[-1].reason or "too big" in notices[-1].reason.lower()


def test_a_feed_listing_thousands_of_entries_keeps_its_newest() -> None:
    start = datetime(2027, 7, 1, tzinfo=UTC)
    items = [
        {"title": f"Story {n}", "link": f"https://news.example/{n}", "guid": f"g{n}",
         "pubDate": format_datetime(start + timedelta(minutes=n))}
        for n in random.Random(3).sample(range(5000), 5000)  # in no particular order
    ]  # fmt: skip
    parsed = parse_document(rss_document(items), content_type=None, url="https://news.example/feed.xml")
    assert len(parsed.entries) == MAX_ENTRIES == 500
    assert {e.key for e in parsed.entries} == {f"g{n}" for n in range(4500, 5000)}


async def test_a_mastodon_instance_flooding_thousands_of_statuses_gives_at_most_a_page_per_request(
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    def statuses(first: int) -> bytes:
        listed = []
        for n in range(first + 2000, first, -1):  # newest first, as the API lists them
            status = copy.deepcopy(STATUS)
            status.update(id=str(10**17 + n), uri=f"https://social.example/users/u/statuses/{n}", visibility="public")
            listed.append(status)
        return json.dumps(listed).encode()

    upstream.add("/api/v1/timelines/tag/tdf", statuses(0), content_type="application/json")
    source = _mastodon(upstream.base_url, hashtag="tdf", backfill=500)
    status = SourceStatus(id="m", kind="mastodon")
    async with Fetcher(trusted_origins={upstream.origin}) as f:
        collector = MastodonCollector(CollectorContext(f))
        first = await collector.poll(source, status)
        assert len(first.entries) <= mastodon.PAGE
        upstream.add("/api/v1/timelines/tag/tdf", statuses(5000), content_type="application/json")
        second = await collector.poll(source, status)
    # the newest page, and the walk up from the last poll (which stops as soon as it meets that page)
    assert mastodon.PAGE <= len(second.entries) <= mastodon.PAGE * (1 + mastodon.MAX_PAGES)
    assert all(r.query and "limit=40" in r.query for r in upstream.requests if r.path.endswith("/tdf"))


def test_an_appview_page_of_thousands_of_posts_gives_at_most_the_lexicon_limit() -> None:
    feed = []
    for n in range(5000):
        view = copy.deepcopy(POST_VIEW)
        view["uri"] = view["uri"].rsplit("/", 1)[0] + f"/3kflood{n}"
        feed.append({"post": view})
    page = atproto.read_feed(json.dumps({"feed": feed}).encode())
    assert len(page.entries) == atproto.MAX_PAGE_POSTS == 100


def test_a_jetstream_flood_for_one_account_cuts_that_subscription_only() -> None:
    """More than MAX_PENDING events waiting for one source: it is dropped (it catches up by polling), the
    connection and the other accounts' subscriptions go on."""
    connection = JetstreamConnection("wss://jetstream.example/subscribe", None, recent=RecentKeys(), on_closed=id)  # type: ignore[arg-type]
    flooded, calm = Subscription(connection, "did:plc:flood", None), Subscription(connection, "did:plc:calm", None)
    connection.subscriptions = {"did:plc:flood": [flooded], "did:plc:calm": [calm]}
    record = {"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2027-07-12T12:00:00Z"}
    for n in range(MAX_PENDING + 1):
        commit = {"operation": "create", "collection": "app.bsky.feed.post", "rkey": f"3k{n}", "record": record}
        connection._frame(json.dumps({"did": "did:plc:flood", "time_us": n + 1, "kind": "commit", "commit": commit}))
    assert flooded.closed and flooded.backlog == MAX_PENDING + 1
    assert isinstance(list(flooded._pending)[-1], Dropped)
    assert list(connection.subscriptions) == ["did:plc:calm"] and not connection.closed


# -- a trickling upstream stalls nobody else ----------------------------------------------------------------


@pytest.fixture
async def slow_upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(host="127.0.0.2") as server:
        yield server


async def test_a_trickling_upstream_times_out_while_other_sources_are_polled_on_time(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    slow_upstream: FakeUpstream,
) -> None:
    timeout = 1.5
    slow_upstream.trickle("/slow.xml", FEED[:200] * 4, chunk_size=1, chunk_delay=0.05)  # ~40 s if waited for
    upstream.add("/fast.xml", FEED)
    (tmp_path / "sources.yaml").write_text(
        "events:\n  - slug: stage-1\n    title: Stage 1\n    sources:\n"
        f"      - {{id: slow, kind: feed, role: editorial, url: '{slow_upstream.url('/slow.xml')}', interval: 60s}}\n"
        f"      - {{id: fast, kind: feed, role: editorial, url: '{upstream.url('/fast.xml')}', interval: 0.3s}}\n"
    )
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data", fetch_timeout=timeout)
    try:
        for _ in range(400):
            sources = {s["id"]: s for s in (await running.sources())["sources"]}
            if sources["slow"]["last_error"]:
                break
            await asyncio.sleep(0.05)
    finally:
        await running.stop()
    assert f"timed out after {timeout:g}s" in sources["slow"]["last_error"]
    assert sources["fast"]["state"] == "ok"
    started = slow_upstream.last("/slow.xml").at
    during = [r for r in upstream.requests if started <= r.at <= started + timeout]
    assert len(during) >= 2, [r.at - started for r in upstream.requests]

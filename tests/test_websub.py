"""WebSub end to end: a feed advertising a fake hub, a real Fil subscribing, deliveries reaching readers.

Also the pure pieces (Link headers, signatures, the missed-entry rule) and the feed collector's discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import textwrap
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from curation.collectors import CollectorContext
from curation.collectors.feed import FeedCollector
from curation.collectors.fetch import Fetcher
from curation.collectors.websub import (
    Signature,
    check_signature,
    discover,
    links_with_rel,
    may_send_secret,
    missed_entries,
    parse_link_header,
    poll_interval,
    sign,
)
from curation.models import SourceStatus, parse_rfc3339
from tests.conftest import RunningFil, free_port, make_entry, make_source, start_fil
from tests.fake_websub_hub import ATOM, FakeHub, hub  # noqa: F401 - fixture
from tests.test_live_e2e import next_message, wait_for
from tests.upstreams import JSON_FEED, FakeUpstream, fixture, rss_document, upstream  # noqa: F401 - fixture

SLUG = "stage-1"
#: the rel=self of tests/fixtures/feeds/youtube_channel_tagesschau.xml: the topic Fil must subscribe to
TOPIC = "http://www.youtube.com/feeds/videos.xml?channel_id=UC5NOEUbkLheQcaaRldYW5GA"
CHANNEL = "UC5NOEUbkLheQcaaRldYW5GA"


def youtube_notification(video_id: str, title: str, *, published: str = "2027-07-12T12:00:00+00:00") -> bytes:
    """A push notification in the shape YouTube's hub delivers (developers.google.com, YouTube Data API
    "Subscribe to push notifications"): the channel feed's Atom with just the new or changed video."""
    return textwrap.dedent(
        f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom">
          <link rel="hub" href="https://pubsubhubbub.appspot.com"/>
          <link rel="self" href="https://www.youtube.com/xml/feeds/videos.xml?channel_id={CHANNEL}"/>
          <title>YouTube video feed</title>
          <updated>{published}</updated>
          <entry>
            <id>yt:video:{video_id}</id>
            <yt:videoId>{video_id}</yt:videoId>
            <yt:channelId>{CHANNEL}</yt:channelId>
            <title>{title}</title>
            <link rel="alternate" href="http://www.youtube.com/watch?v={video_id}"/>
            <author>
              <name>tagesschau</name>
              <uri>http://www.youtube.com/channel/{CHANNEL}</uri>
            </author>
            <published>{published}</published>
            <updated>{published}</updated>
          </entry>
        </feed>
        """
    ).encode()


def write_sources(path: Path, *sources: tuple[str, str]) -> None:
    """An event with one feed source per (id, url)."""
    lines = [f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"]
    for source_id, url in sources:
        lines.append(
            f"      - id: {source_id}\n        kind: feed\n        url: {url}\n"
            "        role: editorial\n        interval: 0.3s\n"
        )
    path.write_text("".join(lines))


async def start_public(tmp_path: Path, port: int | None = None, **settings: Any) -> RunningFil:
    """A Fil whose CURATION_PUBLIC_URL is its own address (the port is chosen first, then passed on)."""
    port = port or free_port()
    return await start_fil(
        tmp_path / "sources.yaml", tmp_path / "data", port=port, public_url=f"http://127.0.0.1:{port}", **settings
    )


@contextlib.asynccontextmanager
async def serving(starting: Awaitable[RunningFil]) -> AsyncIterator[RunningFil]:
    """The Fil that `starting` starts, stopped when the block ends (whatever it raised)."""
    fil = await starting
    try:
        yield fil
    finally:
        await fil.stop()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def source_status(fil: RunningFil, source_id: str = "desk") -> dict[str, Any]:
    listing = await fil.sources()
    return next(s for s in listing["sources"] if s["id"] == source_id)


async def websub(fil: RunningFil, source_id: str = "desk") -> dict[str, Any]:
    return (await source_status(fil, source_id))["details"].get("websub") or {}


async def wait_state(fil: RunningFil, state: str, source_id: str = "desk") -> dict[str, Any]:
    async def reached() -> bool:
        return (await websub(fil, source_id)).get("state") == state

    await wait_for(reached, f"websub state {state!r}")
    return await websub(fil, source_id)


async def titles(fil: RunningFil) -> list[str]:
    page = await get_json(f"{fil.base}/api/events/{SLUG}/items")
    return [i["title"] for i in page["items"]]


async def wait_for_title(fil: RunningFil, title: str, what: str) -> None:
    """Until an item titled `title` is on the event's timeline."""

    async def shown() -> bool:
        return title in await titles(fil)

    await wait_for(shown, what)


async def http(method: str, url: str, **kwargs: Any) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        return response.status, await response.text(), response.content_type


def poll_gap(status: dict[str, Any]) -> float:
    """Seconds between the last poll and the next one scheduled."""
    last, upcoming = parse_rfc3339(status["last_poll_at"]), parse_rfc3339(status["next_poll_at"])
    assert last is not None and upcoming is not None
    return (upcoming - last).total_seconds()


@dataclass
class Subscribed:
    fil: RunningFil
    upstream: FakeUpstream
    hub: FakeHub


async def subscribe_youtube(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
    **settings: Any,
) -> RunningFil:
    """The real YouTube channel feed, its hub advertised in a Link header as hubs do; Fil running and active."""
    upstream.add(
        "/videos.xml",
        fixture("youtube_channel_tagesschau.xml"),
        content_type=ATOM,
        etag="auto",
        headers={"Link": f'<{hub.url}>; rel="hub"'},
    )
    write_sources(tmp_path / "sources.yaml", ("desk", upstream.url("/videos.xml")))
    fil = await start_public(tmp_path, **settings)
    await wait_state(fil, "active")
    await hub_holds(hub, TOPIC)
    return fil


async def hub_holds(hub: FakeHub, topic: str) -> None:  # noqa: F811
    """Fil answers the verification before the hub records the subscription: wait for the hub's side too."""

    async def held() -> bool:
        return hub.subscription(topic) is not None

    await wait_for(held, f"the hub holding a subscription to {topic}")


@pytest.fixture
async def subscribed(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> AsyncIterator[Subscribed]:
    fil = await subscribe_youtube(tmp_path, upstream, hub, websub_safety_interval=3600.0)
    yield Subscribed(fil, upstream, hub)
    await fil.stop()


# --- end to end ---------------------------------------------------------------------------------------


async def test_a_pushed_entry_reaches_a_websocket_reader_at_once(subscribed: Subscribed) -> None:
    fil, fake_hub = subscribed.fil, subscribed.hub
    (request,) = fake_hub.requests_of("subscribe")
    assert request.callback == f"{fil.base}/websub/desk"
    assert request.topic == TOPIC  # the document's rel=self, not the URL Fil fetched
    assert request.secret is not None and len(request.secret) == 64 and int(request.secret, 16) >= 0
    assert request.lease_seconds == 86400
    (verification,) = fake_hub.verifications
    assert verification.confirmed and verification.content_type == "text/plain"
    assert "Verhandlungen über Haushalt werden fortgesetzt" in await titles(fil)

    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        await next_message(ws, "hello")
        assert await fake_hub.publish(TOPIC, youtube_notification("pUsH0000001", "Zieleinlauf in Paris")) == [202]
        message = await next_message(ws, "upsert")
    # the upstream feed never had this video: only the push can have brought it
    assert message["item"]["title"] == "Zieleinlauf in Paris"
    assert message["item"]["url"] == "http://www.youtube.com/watch?v=pUsH0000001"
    assert message["item"]["source"]["id"] == "desk"

    status = await source_status(fil)
    details = status["details"]["websub"]
    assert details["state"] == "active" and details["hub"] == fake_hub.url and details["topic"] == TOPIC
    assert details["deliveries"] == 1 and details["rejected"] == 0 and details["last_delivery_at"]
    assert parse_rfc3339(details["lease_expires"]) > datetime.now(UTC) + timedelta(hours=23)  # type: ignore[operator]
    listing = json.dumps(await fil.sources())
    assert request.secret not in listing, "the secret must never be shown"

    async def slowed() -> bool:
        return poll_gap(await source_status(fil)) >= 3600

    await wait_for(slowed, "polling slowed to the safety interval while push is healthy")


async def test_a_hub_that_verifies_before_answering_and_link_headers_win(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> None:
    hub.verify_first = True
    topic = upstream.url("/videos.xml")
    # the header's rel=self wins over the document's (the YouTube URL)
    upstream.add(
        "/videos.xml",
        fixture("youtube_channel_tagesschau.xml"),
        content_type=ATOM,
        headers={"Link": f'<{hub.url}>; rel="hub", <{topic}>; rel="self"'},
    )
    write_sources(tmp_path / "sources.yaml", ("desk", topic))
    async with serving(start_public(tmp_path)) as fil:
        details = await wait_state(fil, "active")
        assert details["topic"] == topic and hub.requests[0].topic == topic
        await hub_holds(hub, topic)
        assert await hub.publish(topic, youtube_notification("pUsH0000002", "Sprintwertung")) == [202]

        await wait_for_title(fil, "Sprintwertung", "the pushed entry")


async def test_verification_is_answered_only_for_a_request_of_ours(subscribed: Subscribed) -> None:
    fil = subscribed.fil
    before = (await websub(fil))["lease_expires"]
    callback = f"{fil.base}/websub/desk"

    def query(**params: str) -> dict[str, str]:
        values = {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.challenge": "abc123", "hub.lease_seconds": "5"}
        values.update(params)
        return {k: v for k, v in values.items() if v}

    assert (await http("GET", callback, params=query(**{"hub.topic": "https://evil.example/feed"})))[0] == 404
    assert (await http("GET", callback, params=query(**{"hub.mode": "unsubscribe"})))[0] == 404
    assert (await http("GET", callback, params=query(**{"hub.mode": "bogus"})))[0] == 404
    assert (await http("GET", callback, params=query(**{"hub.challenge": ""})))[0] == 404
    assert (await http("GET", f"{fil.base}/websub/nobody", params=query()))[0] == 404
    # the active subscription is still wanted: the challenge comes back as inert text...
    status, body, content_type = await http("GET", callback, params=query(**{"hub.challenge": "<b>x</b>"}))
    assert (status, body, content_type) == (200, "<b>x</b>", "text/plain")
    # ...but a verification nobody asked for does not move the lease
    assert (await websub(fil))["lease_expires"] == before


async def test_a_denial_is_recorded_with_its_reason(subscribed: Subscribed) -> None:
    fil, fake_hub = subscribed.fil, subscribed.hub

    async def slowed() -> bool:
        return poll_gap(await source_status(fil)) >= 3600

    await wait_for(slowed, "the runner asleep for the safety interval")
    assert await fake_hub.deny(TOPIC, reason="quota exceeded\nfor this\x00callback") == 200
    details = await wait_state(fil, "denied")
    assert details["reason"] == "the hub denied the subscription: quota exceeded for this callback"
    assert details["lease_expires"] is None
    # a denial for a topic of nobody's is refused
    status, _, _ = await http(
        "GET", f"{fil.base}/websub/desk", params={"hub.mode": "denied", "hub.topic": "https://other.example/"}
    )
    assert status == 404

    async def polled_at_interval() -> bool:
        status = await source_status(fil)
        return status["last_poll_at"] > details["since"] and poll_gap(status) < 60

    # push is gone: the source is polled at once (whatever was missed), then at its own interval
    await wait_for(polled_at_interval, "polling at the source's own interval once push is denied")


async def test_bad_and_unsigned_deliveries_are_answered_but_dropped(subscribed: Subscribed) -> None:
    fil, fake_hub = subscribed.fil, subscribed.hub
    forged = youtube_notification("fOrGeD00001", "Forged by a stranger")
    assert await fake_hub.publish(TOPIC, forged, signature="bad") == [202]
    assert await fake_hub.publish(TOPIC, youtube_notification("fOrGeD00002", "Unsigned"), signature="none") == [202]
    # a genuine delivery afterwards (and another legal method) still gets through
    genuine = youtube_notification("pUsH0000003", "Bergwertung")
    assert await fake_hub.publish(TOPIC, genuine, algorithm="sha512") == [202]

    await wait_for_title(fil, "Bergwertung", "the genuine delivery")
    shown = await titles(fil)
    assert "Forged by a stranger" not in shown and "Unsigned" not in shown
    details = await websub(fil)
    assert details["rejected"] == 2 and details["deliveries"] == 1
    assert details["last_rejected"]["reason"] == "unsigned delivery"


async def test_an_oversize_delivery_is_refused_with_413(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> None:
    async with serving(subscribe_youtube(tmp_path, upstream, hub, max_body=64 * 1024)) as fil:
        padding = "x" * (80 * 1024)
        huge = youtube_notification("hUgE0000001", f"Huge {padding}")
        assert await hub.publish(TOPIC, huge) == [413]
        assert await hub.publish(TOPIC, youtube_notification("sMaLl000001", "Small")) == [202]

        await wait_for_title(fil, "Small", "the small delivery")
        assert not any(t.startswith("Huge") for t in await titles(fil))


async def test_the_lease_is_renewed_before_it_ends(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    async with FakeHub(lease_seconds=3) as short_hub:
        async with serving(subscribe_youtube(tmp_path, upstream, short_hub)) as fil:
            first = await websub(fil)

            async def renewed() -> bool:
                return len([v for v in short_hub.verifications_of("subscribe") if v.confirmed]) >= 2

            await wait_for(renewed, "a renewed subscription")
            initial, renewal = short_hub.requests_of("subscribe")[:2]
            expiry = short_hub.verifications[0].at + 3
            assert renewal.at < expiry, "the renewal must come before the lease ends"
            assert renewal.secret == initial.secret and renewal.topic == initial.topic
            assert short_hub.subscription(TOPIC) is not None
            details = await wait_state(fil, "active")
            assert details["lease_expires"] > first["lease_expires"]


async def test_removing_a_source_unsubscribes_it(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> None:
    upstream.add("/wire.rss", rss_document([{"title": "Wire 1", "guid": "w1", "link": "https://wire.example/1"}]))
    async with serving(subscribe_youtube(tmp_path, upstream, hub)) as fil:
        write_sources(tmp_path / "sources.yaml", ("wire", upstream.url("/wire.rss")))

        async def unsubscribed() -> bool:
            return any(v.confirmed for v in hub.verifications_of("unsubscribe"))

        await wait_for(unsubscribed, "a verified unsubscription")
        (request,) = hub.requests_of("unsubscribe")
        assert request.topic == TOPIC and request.callback == f"{fil.base}/websub/desk"
        assert hub.subscriptions == {}
        # a late delivery is told there is no such subscription any more
        status, _, _ = await http("POST", f"{fil.base}/websub/desk", data=b"<feed/>", headers={"Content-Type": ATOM})
        assert status == 410


def json_feed(hub_url: str, feed_url: str, items: list[dict[str, str]]) -> bytes:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Desk",
        "feed_url": feed_url,
        "hubs": [{"type": "WebSub", "url": hub_url}],
        "items": items,
    }
    return json.dumps(document).encode()


def story(n: int, published: datetime) -> dict[str, str]:
    return {
        "id": f"story-{n}",
        "url": f"https://news.example/story-{n}",
        "title": f"Story {n}",
        "content_text": f"Body of story {n}",
        "date_published": published.isoformat(),
    }


async def test_a_safety_net_poll_finding_a_missed_entry_marks_push_unhealthy(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> None:
    feed_url = upstream.url("/feed.json")
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    route = upstream.add("/feed.json", json_feed(hub.url, feed_url, [story(1, earlier)]), content_type=JSON_FEED)
    write_sources(tmp_path / "sources.yaml", ("desk", feed_url))
    async with serving(start_public(tmp_path, websub_safety_interval=1.5)) as fil:
        assert fil.fil.websub is not None
        fil.fil.websub.missed_grace = 0.0  # the test's entry is published a moment before the poll
        active = await wait_state(fil, "active")

        async def safety_poll() -> bool:
            status = await source_status(fil)
            return status["last_poll_at"] > active["since"] and poll_gap(status) >= 1.5

        await wait_for(safety_poll, "a safety-net poll while push is healthy")
        # entries from before the subscription are not push's to deliver
        assert (await websub(fil))["state"] == "active"

        route.body = json_feed(hub.url, feed_url, [story(2, datetime.now(UTC)), story(1, earlier)])
        details = await wait_state(fil, "unhealthy")
        assert "https://news.example/story-2" in details["reason"] and details["unhealthy_since"]
        assert "Story 2" in await titles(fil)
        assert poll_gap(await source_status(fil)) < 1.0, "back to the source's own interval"


@pytest.mark.parametrize("trouble", ["refused", "never verified"])
async def test_a_failed_subscription_is_shown_and_retried(
    trouble: str,
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> None:
    route = upstream.add("/videos.xml", fixture("youtube_channel_tagesschau.xml"), content_type=ATOM)
    write_sources(tmp_path / "sources.yaml", ("desk", upstream.url("/videos.xml")))
    async with serving(start_public(tmp_path)) as fil:
        assert fil.fil.websub is not None
        fil.fil.websub.verify_timeout = fil.fil.websub.retry_failed = 0.3
        if trouble == "refused":
            hub.answer_status = 400
        else:
            hub.verify = False
        route.headers["Link"] = f'<{hub.url}>; rel="hub"'  # the feed starts advertising its hub
        details = await wait_state(fil, "failed")
        expected = "HTTP 400" if trouble == "refused" else "did not verify within 0.3s"
        assert expected in details["reason"] and details["hub"] == hub.url
        assert poll_gap(await source_status(fil)) < 60
        hub.answer_status, hub.verify = 202, True
        await wait_state(fil, "active")
        assert len(hub.requests_of("subscribe")) >= 2


async def test_a_plain_http_hub_is_not_subscribed(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    feed = upstream.url("/feed.rss")
    upstream.add(
        "/feed.rss",
        rss_document([{"title": "One", "guid": "1", "link": "https://news.example/1"}]),
        headers={"Link": f'<http://hub.example/>; rel="hub", <{feed}>; rel="self"'},
    )
    write_sources(tmp_path / "sources.yaml", ("desk", feed))
    async with serving(start_public(tmp_path)) as fil:
        details = await wait_state(fil, "failed")
        assert "plain HTTP" in details["reason"] and details["hub"] == "http://hub.example/"
        status = await source_status(fil)
        assert status["state"] == "ok" and poll_gap(status) < 60


async def test_without_a_public_url_nothing_is_subscribed(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> None:
    upstream.add("/videos.xml", fixture("youtube_channel_tagesschau.xml"), content_type=ATOM)
    upstream.route("/videos.xml").headers["Link"] = f'<{hub.url}>; rel="hub"'
    write_sources(tmp_path / "sources.yaml", ("desk", upstream.url("/videos.xml")))
    async with serving(start_fil(tmp_path / "sources.yaml", tmp_path / "data")) as fil:

        async def polled_twice() -> bool:
            return upstream.hits("/videos.xml") >= 2

        await wait_for(polled_twice, "two polls")
        assert hub.requests == [] and "websub" not in (await source_status(fil))["details"]
        params = {"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.challenge": "x"}
        assert (await http("GET", f"{fil.base}/websub/desk", params=params))[0] == 404
        assert (await http("POST", f"{fil.base}/websub/desk", data=b"<feed/>"))[0] == 404


async def test_a_restart_keeps_the_subscription_and_its_secret(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    hub: FakeHub,  # noqa: F811
) -> None:
    fil = await subscribe_youtube(tmp_path, upstream, hub)
    port = int(fil.base.rsplit(":", 1)[1])
    await fil.stop()
    async with serving(start_public(tmp_path, port=port)) as fil:
        assert (await websub(fil))["state"] == "active"
        assert await hub.publish(TOPIC, youtube_notification("pUsH0000004", "Nach dem Neustart")) == [202]

        await wait_for_title(fil, "Nach dem Neustart", "a delivery signed with the secret from before the restart")
        assert len(hub.requests) == 1, "no new subscription: the stored one is still valid"


# --- the feed collector's discovery ---------------------------------------------------------------------


async def test_the_feed_collector_reports_hubs_from_document_header_and_json_feed(
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>'
        '<id>urn:t</id><updated>2024-05-01T12:00:00Z</updated><link rel="hub" href="https://hub.example/"/>'
        '<link rel="self" href="/self.atom"/></feed>'
    )
    upstream.add("/doc.atom", atom, content_type=ATOM)
    upstream.add(
        "/header.atom",
        atom,
        content_type=ATOM,
        headers={"Link": '<https://other-hub.example/>; rel="hub", </canonical.atom>; rel="self"'},
    )
    upstream.json_feed("/feed.json", json_feed("https://json-hub.example/", "https://news.example/feed.json", []))
    async with Fetcher(allow_private=True) as fetcher:
        collector = FeedCollector(CollectorContext(fetcher))
        results = {}
        for path in ("/doc.atom", "/header.atom", "/feed.json"):
            source = make_source("desk", url=upstream.url(path))
            results[path] = await collector.poll(source, SourceStatus(id="desk", kind="feed", url=source.url))
    assert results["/doc.atom"].hubs == ["https://hub.example/"]
    assert results["/doc.atom"].self_url == upstream.url("/self.atom")
    assert results["/header.atom"].hubs == ["https://other-hub.example/"]
    assert results["/header.atom"].self_url == upstream.url("/canonical.atom")
    assert results["/feed.json"].hubs == ["https://json-hub.example/"]
    assert results["/feed.json"].self_url == "https://news.example/feed.json"


# --- pure helpers ---------------------------------------------------------------------------------------


def test_link_headers_are_parsed_like_rfc_8288() -> None:
    header = (
        '<https://hub.example/a,b>; rel="hub", <https://pubsubhubbub.appspot.com/>; REL=hub; title="x, y", '
        '</feeds/self.xml>; rel="self alternate", garbage, <https://no-rel.example/>'
    )
    links = parse_link_header(header)
    assert [url for url, _ in links] == [
        "https://hub.example/a,b",
        "https://pubsubhubbub.appspot.com/",
        "/feeds/self.xml",
        "https://no-rel.example/",
    ]
    assert links[1][1] == {"rel": "hub", "title": "x, y"}
    base = "https://news.example/feeds/x.xml"
    assert links_with_rel(header, "hub", base) == ["https://hub.example/a,b", "https://pubsubhubbub.appspot.com/"]
    assert links_with_rel(header, "self", base) == ["https://news.example/feeds/self.xml"]
    assert links_with_rel('<javascript:alert(1)>; rel="hub"', "hub", base) == []
    assert discover({}, ["https://doc-hub.example/"], "https://doc/self", base) == (
        ["https://doc-hub.example/"],
        "https://doc/self",
    )
    assert discover({"link": header}, ["https://doc-hub.example/"], "https://doc/self", base)[1] == (
        "https://news.example/feeds/self.xml"
    )


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
def test_every_legal_signature_method_is_verified(algorithm: str) -> None:
    body = b"<feed>entry</feed>"
    header = f"{algorithm}={hmac.new(b'k', body, getattr(hashlib, algorithm)).hexdigest()}"
    assert sign(b"k", body, algorithm) == header
    assert check_signature(b"k", header, body) is Signature.VALID
    assert check_signature(b"k", header.upper().replace(algorithm.upper(), algorithm), body) is Signature.VALID
    assert check_signature(b"other", header, body) is Signature.BAD
    assert check_signature(b"k", header, body + b" ") is Signature.BAD


def test_missing_and_malformed_signatures_are_refused() -> None:
    body = b"x"
    assert check_signature(b"k", None, body) is Signature.MISSING
    assert check_signature(b"k", "  ", body) is Signature.MISSING
    assert check_signature(b"k", "md5=" + hashlib.md5(body).hexdigest(), body) is Signature.BAD
    assert check_signature(b"k", hmac.new(b"k", body, "sha256").hexdigest(), body) is Signature.BAD  # no method
    assert check_signature(b"k", "sha256=é", body) is Signature.BAD


def test_the_secret_travels_only_over_https_or_to_this_machine() -> None:
    assert may_send_secret("https://pubsubhubbub.appspot.com/")
    assert may_send_secret("http://127.0.0.1:8080/hub") and may_send_secret("http://[::1]:80/")
    assert may_send_secret("http://localhost:9/hub")
    assert not may_send_secret("http://hub.example/")
    assert not may_send_secret("http://10.0.0.1/hub")


def test_only_a_healthy_push_slows_polling() -> None:
    assert poll_interval(30, {"websub": {"state": "active"}}, 900) == 900
    assert poll_interval(3600, {"websub": {"state": "active"}}, 900) == 3600
    for state in ("pending", "unhealthy", "denied", "failed"):
        assert poll_interval(30, {"websub": {"state": state}}, 900) == 30
    assert poll_interval(30, {}, 900) == 30


def test_only_entries_published_while_push_was_active_count_as_missed() -> None:
    since = datetime(2027, 7, 12, 12, 0, tzinfo=UTC)
    before = since + timedelta(minutes=10)
    old = make_entry("old", published=since - timedelta(seconds=1))
    missed = make_entry("missed", published=since + timedelta(minutes=1))
    in_flight = make_entry("in-flight", published=before + timedelta(seconds=30))
    undated = make_entry("undated", published=None)
    known = make_entry("known", published=since + timedelta(minutes=2))
    entries = [old, missed, in_flight, undated, known]
    new = {"old", "missed", "in-flight", "undated"}
    assert missed_entries(entries, new, active_since=since, before=before) == [missed]


async def test_an_undeclared_oversize_body_is_cut_off_at_the_cap(subscribed: Subscribed) -> None:
    fil = subscribed.fil
    assert fil.fil.settings.max_body < 11 * 1024 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b"x" * (1024 * 1024)
            await asyncio.sleep(0)

    status, _, _ = await http("POST", f"{fil.base}/websub/desk", data=chunks(), headers={"Content-Type": ATOM})
    assert status == 413

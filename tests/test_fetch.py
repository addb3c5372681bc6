"""The Fetcher against a fake upstream on loopback: conditional GET, redirects, errors, caps, limits, SSRF.

Nothing here sends a packet beyond 127.0.0.0/8: the private-address tests for other ranges patch the
connection step so that reaching it fails the test, and the refusal must come first.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohappyeyeballs
import pytest
import pytest_asyncio
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from curation.collectors.fetch import (
    ACCEPT_ENCODING,
    DEFAULT_USER_AGENT,
    FEED_ACCEPT,
    Fetcher,
    blocked_reason,
    literal_address,
    origin_of,
)
from curation.errors import BlockedAddressError, FetchError, GoneError, RetryLaterError, TooLargeError
from tests import upstreams
from tests.upstreams import JSON_FEED, MALFORMED_XML, FakeUpstream, Route, fixture, rss_document

#: the fake-server fixture, bound here too so this module runs whatever conftest registers
upstream = upstreams.upstream

FEED = fixture("fetch_mastodon_rss_account.xml")
LAST_MODIFIED = "Sun, 29 Jan 2023 17:00:00 GMT"


@pytest_asyncio.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    """A fetcher allowed onto loopback, with no per-host limit (every fake upstream is on 127.0.0.1)."""
    async with Fetcher(allow_private=True, total_timeout=5.0, connect_timeout=2.0, per_host_limit=0) as f:
        yield f


class Connections:
    """Records every attempt to open a TCP connection, and fails it: no packet leaves the test."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    async def __call__(self, addr_infos: Any, *args: Any, **kwargs: Any) -> socket.socket:
        self.attempts.append([info[4] for info in addr_infos])
        raise OSError("connection attempt blocked by the test")


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connections]:
    record = Connections()
    # aiohttp's TCPConnector opens every socket through aiohappyeyeballs.start_connection
    monkeypatch.setattr(aiohappyeyeballs, "start_connection", record)
    yield record


class FakeDNS(AbstractResolver):
    """Answers names from a table, so DNS-based tests never query a real resolver."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=port,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for addr in self.table[host]
        ]

    async def close(self) -> None:
        pass


# -- what is sent ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sends_identifiable_user_agent_accept_and_accept_encoding(
    upstream: FakeUpstream, fetcher: Fetcher
) -> None:
    upstream.add("/feed.xml", FEED)
    await fetcher.get(upstream.url("/feed.xml"))
    sent = upstream.last("/feed.xml").headers
    assert sent["user-agent"] == DEFAULT_USER_AGENT
    assert "+https://" in sent["user-agent"]
    for kind in ("application/atom+xml", "application/rss+xml", "application/rdf+xml", "application/feed+json"):
        assert kind in sent["accept"]
    assert "xml" in sent["accept"].replace("+xml", "")
    assert sent["accept"] == FEED_ACCEPT
    assert {e.strip() for e in sent["accept-encoding"].split(",")} >= {"gzip", "br"}
    assert sent["accept-encoding"] == ACCEPT_ENCODING


@pytest.mark.asyncio
async def test_custom_user_agent_and_accept(upstream: FakeUpstream) -> None:
    upstream.add("/feed.json", b"{}", content_type=JSON_FEED)
    async with Fetcher(allow_private=True, user_agent="Fil-test/1 (+https://example.org/contact)") as f:
        await f.get(upstream.url("/feed.json"), accept="application/json")
    assert upstream.last().headers["user-agent"] == "Fil-test/1 (+https://example.org/contact)"
    assert upstream.last().headers["accept"] == "application/json"


@pytest.mark.asyncio
async def test_first_fetch_sends_no_validators(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", FEED, etag='"v1"', last_modified=LAST_MODIFIED)
    await fetcher.get(upstream.url("/feed.xml"))
    sent = upstream.last().headers
    assert "if-none-match" not in sent
    assert "if-modified-since" not in sent


# -- a 200 ---------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_200_result(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", FEED, etag='"v1"', last_modified=LAST_MODIFIED, headers={"X-Custom": "yes"})
    result = await fetcher.get(upstream.url("/feed.xml"))
    assert result.status == 200
    assert result.body == FEED
    assert result.url == upstream.url("/feed.xml")
    assert result.permanent_url is None
    assert result.etag == '"v1"'
    assert result.last_modified == LAST_MODIFIED
    assert result.date is not None and result.date.endswith("GMT")
    assert result.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert result.headers["x-custom"] == "yes"
    assert all(name == name.lower() for name in result.headers)
    assert "content-length" not in result.headers


@pytest.mark.asyncio
async def test_body_bytes_are_passed_through_untouched(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    """Odd encodings and broken XML are the parser's business: the fetcher hands over the exact bytes."""
    cyrillic = rss_document([{"title": "Новости", "guid": "1"}], encoding="windows-1251")
    upstream.add("/cp1251.xml", cyrillic, content_type="application/rss+xml")
    upstream.add("/broken.xml", MALFORMED_XML)
    assert (await fetcher.get(upstream.url("/cp1251.xml"))).body == cyrillic
    assert (await fetcher.get(upstream.url("/broken.xml"))).body == MALFORMED_XML


@pytest.mark.asyncio
async def test_json_feed_content_type_is_kept(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    doc = fixture("fetch_jsonfeed_microblog.json")
    upstream.json_feed("/feed.json", doc)
    result = await fetcher.get(upstream.url("/feed.json"))
    assert result.headers["content-type"] == JSON_FEED
    assert result.body == doc


# -- conditional GET -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_etag_is_replayed_verbatim_and_304_has_no_body(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    etag = 'W/"a b,c"'
    upstream.add("/feed.xml", FEED, etag=etag)
    first = await fetcher.get(upstream.url("/feed.xml"))
    second = await fetcher.get(upstream.url("/feed.xml"), etag=first.etag)
    assert upstream.last().headers["if-none-match"] == etag
    assert second.status == 304
    assert second.body == b""
    assert second.etag == etag
    assert upstream.served("/feed.xml", 200) == 1
    assert upstream.served("/feed.xml", 304) == 1


@pytest.mark.asyncio
async def test_last_modified_is_replayed_verbatim(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", FEED, last_modified=LAST_MODIFIED)
    first = await fetcher.get(upstream.url("/feed.xml"))
    assert first.etag is None
    second = await fetcher.get(upstream.url("/feed.xml"), last_modified=first.last_modified)
    assert upstream.last().headers["if-modified-since"] == LAST_MODIFIED
    assert "if-none-match" not in upstream.last().headers
    assert second.status == 304
    assert second.last_modified == LAST_MODIFIED


@pytest.mark.asyncio
async def test_odd_last_modified_is_not_reformatted(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    odd = "Sunday, 29-Jan-23 17:00:00 GMT"
    upstream.add("/feed.xml", FEED)
    await fetcher.get(upstream.url("/feed.xml"), last_modified=odd)
    assert upstream.last().headers["if-modified-since"] == odd


@pytest.mark.asyncio
async def test_304_without_validators_keeps_the_stored_ones(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", status=304, content_type=None)
    result = await fetcher.get(upstream.url("/feed.xml"), etag='"old"', last_modified=LAST_MODIFIED)
    assert result.status == 304
    assert (result.etag, result.last_modified) == ('"old"', LAST_MODIFIED)


@pytest.mark.asyncio
async def test_304_with_new_validators_reports_them(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", status=304, content_type=None, etag='"new"')
    result = await fetcher.get(upstream.url("/feed.xml"), etag='"old"', last_modified=LAST_MODIFIED)
    assert (result.etag, result.last_modified) == ('"new"', LAST_MODIFIED)


@pytest.mark.asyncio
async def test_200_with_the_stored_etag_counts_as_unchanged(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", FEED, etag='"v1"', conditional=False)
    result = await fetcher.get(upstream.url("/feed.xml"), etag='"v1"')
    assert upstream.served("/feed.xml", 200) == 1
    assert result.status == 304
    assert result.body == b""


@pytest.mark.asyncio
async def test_200_with_another_etag_is_a_change(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", FEED, etag='"v2"', conditional=False)
    result = await fetcher.get(upstream.url("/feed.xml"), etag='"v1"')
    assert (result.status, result.etag, result.body) == (200, '"v2"', FEED)


@pytest.mark.asyncio
async def test_unconditional_sends_no_validators_and_returns_the_body(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feed.xml", FEED, etag='"v1"', last_modified=LAST_MODIFIED, conditional=False)
    result = await fetcher.get(upstream.url("/feed.xml"), etag='"v1"', last_modified=LAST_MODIFIED, unconditional=True)
    sent = upstream.last().headers
    assert "if-none-match" not in sent and "if-modified-since" not in sent
    assert (result.status, result.body) == (200, FEED)


@pytest.mark.asyncio
async def test_updated_document_is_fetched_again(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    route = upstream.add("/feed.xml", rss_document([{"guid": "1", "title": "First"}]), etag="auto")
    first = await fetcher.get(upstream.url("/feed.xml"))
    assert (await fetcher.get(upstream.url("/feed.xml"), etag=first.etag)).status == 304
    route.body = rss_document([{"guid": "1", "title": "First, corrected"}, {"guid": "2", "title": "Second"}])
    third = await fetcher.get(upstream.url("/feed.xml"), etag=first.etag)
    assert third.status == 200
    assert b"First, corrected" in third.body
    assert third.etag != first.etag


# -- compression and size -------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_compressed_body_is_decoded_once(upstream: FakeUpstream, fetcher: Fetcher, encoding: str) -> None:
    upstream.add("/feed.xml", FEED, encoding=encoding)
    result = await fetcher.get(upstream.url("/feed.xml"))
    assert result.body == FEED
    assert "content-encoding" not in result.headers


@pytest.mark.asyncio
async def test_brotli_helper(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.brotli("/feed.xml", FEED)
    assert (await fetcher.get(upstream.url("/feed.xml"))).body == FEED


@pytest.mark.asyncio
async def test_body_at_the_cap_is_accepted(upstream: FakeUpstream) -> None:
    upstream.oversize("/exact.xml", 4096)
    async with Fetcher(allow_private=True, max_body=4096) as f:
        assert len((await f.get(upstream.url("/exact.xml"))).body) == 4096


@pytest.mark.asyncio
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversize_body_is_refused(upstream: FakeUpstream, chunked: bool) -> None:
    upstream.oversize("/big.xml", 300_000, chunked=chunked)
    async with Fetcher(allow_private=True, max_body=100_000) as f:
        with pytest.raises(TooLargeError, match="100000 bytes") as caught:
            await f.get(upstream.url("/big.xml"))
    assert caught.value.url == upstream.url("/big.xml")


@pytest.mark.asyncio
async def test_gzip_bomb_is_refused_without_inflating_it(upstream: FakeUpstream) -> None:
    cap = 1024 * 1024
    upstream.gzip_bomb("/bomb.xml", 64 * cap)
    assert len(upstream.route("/bomb.xml").body) < cap // 4
    async with Fetcher(allow_private=True, max_body=cap) as f:
        tracemalloc.start()
        try:
            with pytest.raises(TooLargeError):
                await f.get(upstream.url("/bomb.xml"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # a 64 MiB expansion never materialised: memory stayed within a few times the 1 MiB cap
    assert peak < 8 * cap


@pytest.mark.asyncio
async def test_gzip_body_just_under_the_cap_is_accepted(upstream: FakeUpstream) -> None:
    body = b"<rss>" + b"a" * 50_000 + b"</rss>"
    upstream.add("/feed.xml", gzip.compress(body), headers={"Content-Encoding": "gzip"})
    async with Fetcher(allow_private=True, max_body=len(body)) as f:
        assert (await f.get(upstream.url("/feed.xml"))).body == body


# -- redirects ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("statuses", "permanent"),
    [
        ([301], True),
        ([308], True),
        ([301, 308, 301], True),
        ([302], False),
        ([303], False),
        ([307], False),
        ([301, 302], False),
        ([307, 301], False),
    ],
)
async def test_redirects_and_permanent_url(
    upstream: FakeUpstream, fetcher: Fetcher, statuses: list[int], permanent: bool
) -> None:
    upstream.add("/new.xml", FEED)
    upstream.redirect_chain("/old.xml", statuses, "/new.xml")
    result = await fetcher.get(upstream.url("/old.xml"))
    assert result.status == 200
    assert result.body == FEED
    assert result.url == upstream.url("/new.xml")
    assert result.permanent_url == (upstream.url("/new.xml") if permanent else None)
    assert upstream.hits("/new.xml") == 1


@pytest.mark.asyncio
async def test_redirect_then_304_reports_the_move(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/new.xml", FEED, etag='"v1"')
    upstream.redirect("/old.xml", "/new.xml", status=301)
    result = await fetcher.get(upstream.url("/old.xml"), etag='"v1"')
    assert upstream.last("/new.xml").headers["if-none-match"] == '"v1"'
    assert (result.status, result.permanent_url) == (304, upstream.url("/new.xml"))


@pytest.mark.asyncio
async def test_relative_location_is_resolved(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/feeds/main.xml", FEED)
    upstream.redirect("/blog/feed", "../feeds/main.xml", status=301)
    result = await fetcher.get(upstream.url("/blog/feed"))
    assert result.url == upstream.url("/feeds/main.xml")


@pytest.mark.asyncio
async def test_redirect_limit(upstream: FakeUpstream) -> None:
    upstream.add("/end.xml", FEED)
    upstream.redirect_chain("/a", [302] * 3, "/end.xml")
    async with Fetcher(allow_private=True, max_redirects=3) as f:
        assert (await f.get(upstream.url("/a"))).body == FEED
    async with Fetcher(allow_private=True, max_redirects=2) as f:
        with pytest.raises(FetchError, match="too many redirects"):
            await f.get(upstream.url("/a"))


@pytest.mark.asyncio
async def test_redirect_loop_stops(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.redirect("/a", "/b")
    upstream.redirect("/b", "/a")
    with pytest.raises(FetchError, match="too many redirects"):
        await fetcher.get(upstream.url("/a"))
    assert upstream.hits("/a") + upstream.hits("/b") == 6


@pytest.mark.asyncio
async def test_redirect_without_location(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.add("/a", status=302, content_type=None)
    with pytest.raises(FetchError, match="without a Location"):
        await fetcher.get(upstream.url("/a"))


@pytest.mark.asyncio
async def test_redirect_to_another_scheme_is_refused(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.redirect("/a", "file:///etc/passwd", status=301)
    with pytest.raises(FetchError, match="unsupported URL"):
        await fetcher.get(upstream.url("/a"))


# -- HTTP errors ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_410_is_gone(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.gone("/feed.xml")
    with pytest.raises(GoneError) as caught:
        await fetcher.get(upstream.url("/feed.xml"))
    assert caught.value.status == 410
    assert str(caught.value) == f"HTTP 410 Gone ({upstream.url('/feed.xml')})"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "retry_after", "date", "expected"),
    [
        (429, "120", None, 120.0),
        (503, "7200", None, 7200.0),
        (429, None, None, None),
        (503, "later please", None, None),
        # an HTTP-date counts from the response's Date header, whatever our clock says
        (429, "Wed, 21 Oct 2015 07:30:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 120.0),
        (503, "Wed, 21 Oct 2015 08:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 3600.0),
    ],
)
async def test_retry_later(
    upstream: FakeUpstream,
    fetcher: Fetcher,
    status: int,
    retry_after: str | None,
    date: str | None,
    expected: float | None,
) -> None:
    upstream.retry_later("/feed.xml", status=status, retry_after=retry_after, date=date)
    with pytest.raises(RetryLaterError) as caught:
        await fetcher.get(upstream.url("/feed.xml"))
    assert caught.value.status == status
    assert caught.value.retry_after == expected


@pytest.mark.asyncio
async def test_a_429_without_retry_after_waits_for_the_rate_limit_reset(
    upstream: FakeUpstream, fetcher: Fetcher
) -> None:
    """Mastodon answers 429 with X-RateLimit-Reset (an ISO time), Bluesky with RateLimit-Reset, not Retry-After."""
    reset = (datetime.now(UTC) + timedelta(seconds=240)).isoformat().replace("+00:00", "Z")
    upstream.add("/api", b"{}", status=429, content_type="application/json", headers={"X-RateLimit-Reset": reset})
    with pytest.raises(RetryLaterError) as caught:
        await fetcher.get(upstream.url("/api"))
    assert caught.value.retry_after is not None and 200 < caught.value.retry_after <= 240


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "message"),
    [(500, "HTTP 500 Internal Server Error"), (404, "HTTP 404 Not Found"), (403, "HTTP 403 Forbidden")],
)
async def test_http_errors(upstream: FakeUpstream, fetcher: Fetcher, status: int, message: str) -> None:
    upstream.add("/feed.xml", b"no", status=status, content_type="text/plain")
    with pytest.raises(FetchError) as caught:
        await fetcher.get(upstream.url("/feed.xml"))
    assert type(caught.value) is FetchError
    assert caught.value.status == status
    assert caught.value.message == message
    assert upstream.url("/feed.xml") in str(caught.value)


@pytest.mark.asyncio
async def test_500_storm_then_success(upstream: FakeUpstream, fetcher: Fetcher) -> None:
    upstream.storm("/feed.xml", 3, FEED)
    for _ in range(3):
        with pytest.raises(FetchError, match="HTTP 500"):
            await fetcher.get(upstream.url("/feed.xml"))
    assert (await fetcher.get(upstream.url("/feed.xml"))).body == FEED
    assert upstream.served("/feed.xml", 500) == 3


# -- transport failures and timeouts -------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_connection_refused(fetcher: Fetcher) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/feed.xml"
    with pytest.raises(FetchError, match="connection refused") as caught:
        await fetcher.get(url)
    assert caught.value.url == url
    assert url in str(caught.value)


@pytest.mark.asyncio
async def test_dns_failure_names_the_host() -> None:
    async with Fetcher(resolver=FakeDNS({})) as f:
        with pytest.raises(FetchError, match="DNS lookup failed for nowhere.example") as caught:
            await f.get("http://nowhere.example/feed.xml")
    assert caught.value.url == "http://nowhere.example/feed.xml"


@pytest.mark.asyncio
async def test_trickling_body_hits_the_total_timeout(upstream: FakeUpstream) -> None:
    # 400 bytes at 10 ms each: about 4 s, while every single read succeeds quickly
    upstream.trickle("/slow.xml", b"x" * 400, chunk_size=1, chunk_delay=0.01)
    async with Fetcher(allow_private=True, total_timeout=0.5) as f:
        with pytest.raises(FetchError, match=r"timed out after 0\.5s") as caught:
            await f.get(upstream.url("/slow.xml"))
    assert caught.value.url == upstream.url("/slow.xml")


@pytest.mark.asyncio
async def test_stalled_response_times_out(upstream: FakeUpstream) -> None:
    upstream.add("/stall.xml", FEED, delay=3.0)
    async with Fetcher(allow_private=True, total_timeout=0.3) as f:
        with pytest.raises(FetchError, match="timed out"):
            await f.get(upstream.url("/stall.xml"))


@pytest.mark.asyncio
async def test_total_timeout_covers_all_redirect_hops(upstream: FakeUpstream) -> None:
    for path, nxt in (("/a", "/b"), ("/b", "/c"), ("/c", "/d")):
        upstream.add(path, status=302, location=nxt, content_type=None, delay=0.2)
    upstream.add("/d", FEED)
    async with Fetcher(allow_private=True, total_timeout=0.5) as f:
        with pytest.raises(FetchError, match="timed out"):
            await f.get(upstream.url("/a"))
    assert upstream.hits("/d") == 0


@pytest.mark.asyncio
async def test_connect_timeout() -> None:
    """A listener whose backlog is full never completes the handshake: the connect timeout fires."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        async with Fetcher(allow_private=True, connect_timeout=0.3, total_timeout=5.0) as f:
            with pytest.raises(FetchError, match=r"connect timed out after 0\.3s"):
                await f.get(f"http://127.0.0.1:{port}/feed.xml")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.asyncio
async def test_unsupported_scheme_is_refused(connections: Connections) -> None:
    async with Fetcher(allow_private=True) as f:
        for url in ("file:///etc/passwd", "ftp://example.org/feed.xml", "gopher://x/", "/relative/feed.xml"):
            with pytest.raises(FetchError, match="unsupported URL scheme|no host"):
                await f.get(url)
    assert connections.attempts == []


# -- per-host politeness ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("limit", "expected"), [(2, 2), (0, 4)], ids=["limit-2", "unlimited"])
async def test_per_host_concurrency_limit(upstream: FakeUpstream, limit: int, expected: int) -> None:
    upstream.add("/feed.xml", FEED, delay=0.25)
    async with Fetcher(allow_private=True, per_host_limit=limit) as f:
        results = await asyncio.gather(*(f.get(upstream.url("/feed.xml")) for _ in range(4)))
    assert all(r.status == 200 for r in results)
    assert upstream.max_in_flight == expected


@pytest.mark.asyncio
async def test_host_spacing(upstream: FakeUpstream) -> None:
    upstream.add("/feed.xml", FEED)
    async with Fetcher(allow_private=True, host_spacing=0.15, per_host_limit=0) as f:
        await asyncio.gather(*(f.get(upstream.url("/feed.xml")) for _ in range(3)))
    times = [r.at for r in upstream.requests]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 2
    assert all(gap >= 0.14 for gap in gaps), gaps


# -- private addresses (SSRF) ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/feed.xml",
        "http://[::1]:{port}/feed.xml",
        "http://[::ffff:127.0.0.1]:{port}/feed.xml",
        "http://2130706433:{port}/feed.xml",
        "http://0x7f000001:{port}/feed.xml",
        "http://0177.0.0.1:{port}/feed.xml",
        "http://127.1:{port}/feed.xml",
        "http://10.0.0.1/feed.xml",
        "http://10.255.1.2:8080/feed.xml",
        "http://172.16.0.1/feed.xml",
        "http://192.168.1.1/feed.xml",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/feed.xml",
        "http://0.0.0.0:{port}/feed.xml",
        "http://224.0.0.1/feed.xml",
        "http://[fe80::1]/feed.xml",
        "http://[fc00::1]/feed.xml",
        "http://[::]/feed.xml",
        "http://[2002:a00:1::]/feed.xml",
        "http://[64:ff9b::a9fe:a9fe]/feed.xml",
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/feed.xml",
    ],
)
async def test_private_literal_is_refused_before_connecting(
    upstream: FakeUpstream, connections: Connections, url: str
) -> None:
    upstream.add("/feed.xml", FEED)
    target = url.format(port=upstream.port)
    async with Fetcher() as f:
        with pytest.raises(BlockedAddressError) as caught:
            await f.get(target)
    assert URL(caught.value.url) == URL(target)
    assert connections.attempts == []
    assert upstream.requests == []


@pytest.mark.asyncio
async def test_invalid_numeric_host_is_refused(connections: Connections) -> None:
    async with Fetcher() as f:
        with pytest.raises(BlockedAddressError, match="not a valid IPv4 address"):
            await f.get("http://1.2.3.4.5/feed.xml")
    assert connections.attempts == []


@pytest.mark.asyncio
async def test_localhost_is_refused_after_dns(upstream: FakeUpstream) -> None:
    upstream.add("/feed.xml", FEED)
    async with Fetcher() as f:
        with pytest.raises(BlockedAddressError, match=r"localhost resolves to (127\.0\.0\.1|::1), a loopback"):
            await f.get(f"http://localhost:{upstream.port}/feed.xml")
    assert upstream.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "addresses",
    [["10.1.2.3"], ["192.168.0.10"], ["169.254.169.254"], ["93.184.216.34", "10.0.0.7"], ["::ffff:10.0.0.1"]],
)
async def test_name_resolving_to_a_private_address_is_refused(connections: Connections, addresses: list[str]) -> None:
    dns = FakeDNS({"intranet.example": addresses})
    async with Fetcher(resolver=dns) as f:
        with pytest.raises(BlockedAddressError, match="intranet.example resolves to") as caught:
            await f.get("http://intranet.example/feed.xml")
    assert dns.asked == ["intranet.example"]
    assert connections.attempts == []
    assert caught.value.url == "http://intranet.example/feed.xml"


@pytest.mark.asyncio
async def test_name_resolving_to_a_public_address_is_let_through(connections: Connections) -> None:
    """The control for the test above: the same path with a public answer reaches the (patched) connect."""
    async with Fetcher(resolver=FakeDNS({"news.example": ["93.184.216.34"]})) as f:
        with pytest.raises(FetchError) as caught:
            await f.get("http://news.example/feed.xml")
    assert not isinstance(caught.value, BlockedAddressError)
    assert connections.attempts == [[("93.184.216.34", 80)]]


@pytest.mark.asyncio
async def test_allow_private_reaches_loopback(upstream: FakeUpstream) -> None:
    upstream.add("/feed.xml", FEED)
    async with Fetcher(allow_private=True) as f:
        assert (await f.get(f"http://localhost:{upstream.port}/feed.xml")).body == FEED


@pytest.mark.asyncio
async def test_trusted_origin_is_exempt_and_the_set_is_live(upstream: FakeUpstream) -> None:
    upstream.add("/feed.xml", FEED)
    trusted: set[str] = set()
    async with Fetcher(trusted_origins=trusted) as f:
        with pytest.raises(BlockedAddressError):
            await f.get(upstream.url("/feed.xml"))
        trusted.add(upstream.origin)
        assert (await f.get(upstream.url("/feed.xml"))).body == FEED
        # the same host on another port is not trusted
        with pytest.raises(BlockedAddressError):
            await f.get(f"http://127.0.0.1:{_closed_port()}/feed.xml")
    assert upstream.hits("/feed.xml") == 1


@pytest.mark.asyncio
async def test_trusted_name_origin_passes_the_resolver(upstream: FakeUpstream) -> None:
    upstream.add("/feed.xml", FEED)
    async with Fetcher(trusted_origins={f"localhost:{upstream.port}"}) as f:
        assert (await f.get(f"http://localhost:{upstream.port}/feed.xml")).body == FEED


@pytest.mark.asyncio
async def test_redirect_from_trusted_origin_to_localhost_is_refused(upstream: FakeUpstream) -> None:
    upstream.add("/secret.xml", FEED)
    upstream.redirect("/feed.xml", f"http://localhost:{upstream.port}/secret.xml", status=301)
    async with Fetcher(trusted_origins={upstream.origin}) as f:
        with pytest.raises(BlockedAddressError, match="localhost resolves to") as caught:
            await f.get(upstream.url("/feed.xml"))
    assert caught.value.url == f"http://localhost:{upstream.port}/secret.xml"
    assert upstream.hits("/secret.xml") == 0


@pytest.mark.asyncio
async def test_redirect_from_trusted_origin_to_another_loopback_server_is_refused(upstream: FakeUpstream) -> None:
    async with FakeUpstream(host="127.0.0.2") as other:
        other.add("/secret.xml", FEED)
        upstream.redirect("/feed.xml", other.url("/secret.xml"), status=302)
        async with Fetcher(trusted_origins={upstream.origin}) as f:
            with pytest.raises(BlockedAddressError, match="127.0.0.2 is 127.0.0.2, a loopback"):
                await f.get(upstream.url("/feed.xml"))
        # the control: with the rule off, the very same redirect does reach the other server
        async with Fetcher(allow_private=True) as f:
            assert (await f.get(upstream.url("/feed.xml"))).body == FEED
        assert other.hits("/secret.xml") == 1


# -- the address rule as a table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("93.184.216.34", None),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
        ("::ffff:93.184.216.34", None),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback (embedded in 2002:7f00:1::)"),
        ("64:ff9b::a00:1", "private (embedded in 64:ff9b::a00:1)"),
    ],
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("example.org", None),
        ("cafe.be", None),
        ("localhost", None),
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("10.0.0.1.", "10.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
    ],
)
def test_literal_address(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found else None) == address


def test_origin_of() -> None:
    assert origin_of("LocalHost.", 8000) == "localhost:8000"
    assert origin_of("::1", 80) == "[::1]:80"
    assert origin_of("[::1]", 80) == "[::1]:80"


def test_a_route_is_reusable() -> None:
    """The fake server's Route is a plain mutable record (tests change it between requests)."""
    route = Route(body=b"a", etag="auto")
    first = route.current_etag()
    route.body = b"b"
    assert route.current_etag() != first

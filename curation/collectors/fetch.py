"""Fetcher: every outbound HTTP request Fil makes goes through here, over one shared aiohttp session.

It owns the politeness and safety rules of UPSTREAMS.md §7: conditional GET, manual redirects, body cap after
decompression, timeouts, per-host limits, and refusal of non-public addresses after DNS resolution.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from curation.collectors.policy import parse_rate_limit_reset, parse_retry_after
from curation.errors import BlockedAddressError, FetchError, GoneError, RetryLaterError, TooLargeError

try:  # the Fetcher decodes br itself (_Decoder) when this imports; ask for br only then
    import brotli  # type: ignore[import-untyped]

    _HAS_BROTLI = True
except ImportError:  # pragma: no cover - brotli is a dependency
    _HAS_BROTLI = False

DEFAULT_USER_AGENT = "Fil/0.1 (+https://github.com/fil-curation/fil; live curation feed collector)"
FEED_ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.1"
)
ACCEPT_ENCODING = "gzip, deflate, br" if _HAS_BROTLI else "gzip, deflate"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_CHUNK = 64 * 1024
_ERROR_BODY = 4096
# a host whose last label is a number is an IPv4 literal in some legacy form (2130706433, 0x7f.1, 0177.0.0.1)
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchResult:
    """One successful fetch. A 304, or a 200 carrying the ETag we sent, is status 304 with an empty body."""

    status: int
    #: the URL finally fetched, after redirects
    url: str
    #: the final URL when every redirect hop was 301/308 (and there was at least one); else None
    permanent_url: str | None
    #: response headers, names lowercased; Content-Encoding and Content-Length dropped since `body` is decoded
    headers: dict[str, str]
    body: bytes
    #: validators to store: on a 304 the response's own, or the ones we sent when it repeats none
    etag: str | None
    last_modified: str | None
    date: str | None


def blocked_reason(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused ("loopback", "private", ...), or None for a public address.

    IPv4 embedded in IPv6 (mapped ::ffff:a.b.c.d, 6to4 2002::/16, Teredo, NAT64 64:ff9b::/96) is judged by the
    IPv4 address it reaches, since that is where the packets end up.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return blocked_reason(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        for inner in embedded:
            reason = blocked_reason(inner)
            if reason:
                return f"{reason} (embedded in {address})"
    for reason, hit in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        # fec0::/10, deprecated (RFC 3879) but still routed inside some networks; the stdlib calls it global
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if hit:
            return reason
    if not address.is_global:
        return "non-public"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def literal_address(host: str) -> IPAddress | None:
    """The address an IP-literal host names, in any form a resolver would accept; None for a host name.

    Raises:
        ValueError: the host looks numeric (its last label is a number) but is no valid IPv4 address.
    """
    bare = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not bare or not _NUMERIC_LABEL.match(bare.rsplit(".", 1)[-1]):
        return None
    # inet_aton accepts exactly the legacy forms (decimal, octal, hex, fewer than four parts) getaddrinfo does
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        raise ValueError(f"not a valid IPv4 address: {host!r}") from None


def origin_of(host: str, port: int) -> str:
    """The "host:port" key trusted_origins holds (host lowercased, IPv6 in brackets, no trailing dot)."""
    host = host.lower().strip("[]").rstrip(".")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GuardedResolver(AbstractResolver):
    """Resolves with the wrapped resolver, then refuses the host if any address it got is non-public.

    Checking the very addresses the connector will use (not a separate lookup) is what defeats DNS rebinding.
    """

    def __init__(self, inner: AbstractResolver, exempt: Callable[[str, int], bool]) -> None:
        self._inner = inner
        self._exempt = exempt

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._exempt(host, port):
            return results
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"])
            except ValueError:
                raise BlockedAddressError(f"{host} resolved to an unreadable address {result['host']!r}") from None
            reason = blocked_reason(address)
            if reason:
                raise BlockedAddressError(f"{host} resolves to {address}, a {reason} address")
        return results

    async def close(self) -> None:
        await self._inner.close()


class Fetcher:
    """The one HTTP client of Fil: polite, bounded, and refusing non-public targets unless told otherwise.

    Args:
        allow_private: reach private and loopback addresses too (CURATION_ALLOW_PRIVATE_HOSTS).
        trusted_origins: "host:port" keys (see origin_of) exempt from the private-address rule; a live set,
            shared with its owner (the demo upstream adds its own loopback origin, nothing else does).
        max_body: cap on a body after decompression, in bytes.
        connect_timeout: seconds to connect.
        total_timeout: seconds for the whole fetch, every redirect hop and a trickling body included
            (time spent waiting for a per-host slot is not counted).
        per_host_limit: concurrent requests per host; 0 or less means unlimited.
        host_spacing: seconds between the starts of two requests to the same host.
        max_redirects: redirect hops followed before giving up.
        resolver: the DNS resolver to wrap (tests pass a fake one); aiohttp's default otherwise.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        trusted_origins: set[str] | None = None,
        max_body: int = 10 * 1024 * 1024,
        connect_timeout: float = 10.0,
        total_timeout: float = 30.0,
        user_agent: str = DEFAULT_USER_AGENT,
        per_host_limit: int = 2,
        host_spacing: float = 0.0,
        max_redirects: int = 5,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.trusted_origins: set[str] = trusted_origins if trusted_origins is not None else set()
        self.max_body = max_body
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.user_agent = user_agent
        self.per_host_limit = per_host_limit
        self.host_spacing = host_spacing
        self.max_redirects = max_redirects
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is not None:
            return
        resolver = GuardedResolver(self._inner_resolver or DefaultResolver(), self._exempt)
        # no DNS cache: every new connection is checked against the current trusted_origins
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=100, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self.total_timeout,
                sock_connect=self.connect_timeout,
                sock_read=self.total_timeout,
            ),
            headers={"User-Agent": self.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            cookie_jar=aiohttp.DummyCookieJar(),
            # decoded by _Decoder: aiohttp takes a gzip or br stream cut short for a whole one
            auto_decompress=False,
            trust_env=False,
            max_field_size=32 * 1024,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = FEED_ACCEPT,
        unconditional: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        """GET one document, following redirects; conditional when validators are given.

        Args:
            url: an http or https URL.
            etag, last_modified: the validators stored from the last fetch, replayed verbatim.
            accept: the Accept header.
            headers: more request headers (an API token, for instance).
            unconditional: send no validators and report any 200 as changed (the daily escape from validators
                that pin a feed forever).
        Returns:
            status 200 with the decoded body, or status 304 (empty body) when nothing changed.
        Raises:
            BlockedAddressError: a hop's address is not public.
            GoneError: 410.
            RetryLaterError: 429 or 503, with retry_after in seconds or None.
            TooLargeError: the decoded body exceeds max_body.
            FetchError: any other HTTP error, a redirect problem, a timeout or a connection failure.
        """
        if self._session is None:
            await self.start()
        request_headers = {**(headers or {}), "Accept": accept}
        if not unconditional:
            if etag:
                request_headers["If-None-Match"] = etag
            if last_modified:
                request_headers["If-Modified-Since"] = last_modified
        current = self._parse_url(url)
        hops: list[int] = []
        budget = self.total_timeout
        while True:
            self._check_target(current)
            loop = asyncio.get_running_loop()
            async with self._host_slot(current):
                started = loop.time()
                result = await self._hop(current, request_headers, budget, hops, etag=None if unconditional else etag)
                budget -= loop.time() - started
            if isinstance(result, FetchResult):
                if result.status == 304:
                    result = _keep_validators(result, etag, last_modified)
                return result
            if len(hops) > self.max_redirects:
                raise FetchError(f"too many redirects (more than {self.max_redirects})", url=url)
            current = result

    async def post(
        self,
        url: str,
        *,
        data: Mapping[str, str] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> FetchResult:
        """POST once (no redirect is followed: a POST that redirects is an error), under the same rules as get().

        `data` as a mapping is sent form-encoded; bytes are sent as they are (set Content-Type in headers).
        """
        if self._session is None:
            await self.start()
        current = self._parse_url(url)
        self._check_target(current)
        hops: list[int] = []
        async with self._host_slot(current):
            result = await self._hop(
                current,
                {**(headers or {}), "Accept": accept},
                self.total_timeout,
                hops,
                etag=None,
                method="POST",
                data=data,
            )
        if isinstance(result, URL):
            raise FetchError(f"unexpected redirect (HTTP {hops[-1]}) to {result}", url=url, status=hops[-1])
        return result

    async def ws_connect(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        heartbeat: float = 30.0,
        max_msg_size: int = 4 << 20,
    ) -> aiohttp.ClientWebSocketResponse:
        """Open an outbound websocket (Mastodon streaming, Jetstream) under the same address rules.

        Raises:
            BlockedAddressError, FetchError: refused, or the handshake failed (status named).
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as e:
            raise FetchError(f"invalid URL: {e}", url=url) from None
        if parsed.scheme not in ("ws", "wss") or not parsed.raw_host:
            raise FetchError("not a ws:// or wss:// URL", url=url)
        self._check_target(parsed)
        try:
            return await self._session.ws_connect(
                parsed,
                headers=headers,
                heartbeat=heartbeat,
                max_msg_size=max_msg_size,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
            )
        except aiohttp.WSServerHandshakeError as e:
            raise FetchError(f"websocket refused: HTTP {e.status} {e.message}", url=url, status=e.status) from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise FetchError(
                f"websocket failed: {_describe(e) if isinstance(e, aiohttp.ClientError) else 'timed out'}", url=url
            ) from None

    async def _hop(
        self,
        url: URL,
        headers: dict[str, str],
        budget: float,
        hops: list[int],
        *,
        etag: str | None,
        method: str = "GET",
        data: Mapping[str, str] | bytes | None = None,
    ) -> FetchResult | URL:
        """One request: a result, or the next URL when it is a redirect (its status appended to hops)."""
        assert self._session is not None
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                async with self._session.request(
                    method, url, headers=headers, data=data, allow_redirects=False
                ) as resp:
                    status = resp.status
                    if status in _REDIRECTS:
                        hops.append(status)
                        return _redirect_target(resp, url)
                    if 400 <= status < 500 and status not in (410, 429):
                        # a client error says why in its body (an API's error code); keep its start for the caller
                        _raise_for_status(resp, str(url), await _error_body(resp))
                    _raise_for_status(resp, str(url))
                    permanent = str(url) if hops and all(h in _PERMANENT for h in hops) else None
                    resp_etag = resp.headers.get("ETag")
                    if status == 304 or (etag is not None and resp_etag == etag):
                        return _result(resp, url, permanent, b"", status=304)
                    body = await self._read_body(resp, url)
                    return _result(resp, url, permanent, body, status=200)
        except FetchError as e:
            if not e.url:
                e.url = str(url)
            raise
        except aiohttp.ConnectionTimeoutError:
            raise FetchError(f"connect timed out after {self.connect_timeout:g}s", url=str(url)) from None
        except TimeoutError:
            raise FetchError(f"timed out after {self.total_timeout:g}s", url=str(url)) from None
        except aiohttp.ClientError as e:
            raise FetchError(_describe(e), url=str(url)) from None

    async def _read_body(self, resp: aiohttp.ClientResponse, url: URL) -> bytes:
        """Read and decode the body in chunks, aborting as soon as it passes the cap (a gzip bomb stays
        small); a compressed stream that stops before its end is an error, not a shorter document."""
        decoder = _Decoder.of(resp.headers.get("Content-Encoding", ""), str(url))
        if decoder is None and (resp.content_length or 0) > self.max_body:
            raise TooLargeError(self._too_large(), url=str(url), status=resp.status)
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += decoder.decode(chunk, self.max_body + 1 - len(body)) if decoder else chunk
            if len(body) > self.max_body:
                raise TooLargeError(self._too_large(), url=str(url), status=resp.status)
        if decoder is not None:
            decoder.finish()
        return bytes(body)

    def _too_large(self) -> str:
        return f"body larger than {self.max_body} bytes (after decompression)"

    def _parse_url(self, url: str) -> URL:
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as e:
            raise FetchError(f"invalid URL: {e}", url=url) from None
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"unsupported URL scheme {parsed.scheme!r} (only http and https)", url=url)
        if not parsed.raw_host:
            raise FetchError("URL has no host", url=url)
        return parsed

    def _check_target(self, url: URL) -> None:
        """Refuse an IP-literal host before connecting: aiohttp never asks the resolver about those."""
        host = url.raw_host or ""
        try:
            address = literal_address(host)
        except ValueError as e:
            raise BlockedAddressError(str(e), url=str(url)) from None
        if address is None or self._exempt(host, url.port or 0):
            return
        reason = blocked_reason(address)
        if reason:
            raise BlockedAddressError(f"{host} is {address}, a {reason} address", url=str(url))

    def _exempt(self, host: str, port: int) -> bool:
        return self.allow_private or origin_of(host, port) in self.trusted_origins

    def _host_slot(self, url: URL) -> _HostSlot:
        host = (url.raw_host or "").lower()
        slot = None
        if self.per_host_limit > 0:
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = asyncio.Semaphore(self.per_host_limit)
        return _HostSlot(self, host, slot)

    async def _space(self, host: str) -> None:
        """Reserve the next start time for this host and sleep until it; reservations keep order without a lock."""
        if self.host_spacing <= 0:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + self.host_spacing
        if start > now:
            await asyncio.sleep(start - now)


class _HostSlot:
    """Holds one of a host's concurrent slots, and waits out the spacing between requests to it."""

    def __init__(self, fetcher: Fetcher, host: str, slot: asyncio.Semaphore | None) -> None:
        self._fetcher = fetcher
        self._host = host
        self._slot = slot

    async def __aenter__(self) -> None:
        if self._slot is not None:
            await self._slot.acquire()
        try:
            await self._fetcher._space(self._host)
        except BaseException:
            if self._slot is not None:
                self._slot.release()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._slot is not None:
            self._slot.release()


def _redirect_target(resp: aiohttp.ClientResponse, url: URL) -> URL:
    location = resp.headers.get("Location")
    if not location:
        raise FetchError(f"HTTP {resp.status} redirect without a Location header", url=str(url), status=resp.status)
    try:
        target = url.join(URL(location))
    except (ValueError, TypeError):
        raise FetchError(f"HTTP {resp.status} redirect to an invalid URL {location!r}", url=str(url)) from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise FetchError(f"HTTP {resp.status} redirect to an unsupported URL {location!r}", url=str(url))
    return target.with_fragment(None)


async def _error_body(resp: aiohttp.ClientResponse) -> bytes:
    """The start of an error body, decoded as far as it goes (it only explains an error)."""
    try:
        decoder = _Decoder.of(resp.headers.get("Content-Encoding", ""), str(resp.url))
    except FetchError:
        return b""
    body = bytearray()
    while len(body) < _ERROR_BODY:
        chunk = await resp.content.read(_ERROR_BODY)
        if not chunk:
            break
        try:
            body += decoder.decode(chunk, _ERROR_BODY - len(body)) if decoder else chunk
        except FetchError:
            break
    return bytes(body[:_ERROR_BODY])


class _Decoder:
    """Undoes a Content-Encoding chunk by chunk, never making more than asked, and checks the end marker.

    aiohttp decodes gzip and br without checking that the stream ended: a body cut short inside
    complete HTTP framing would pass for a shorter document, parse into fewer entries, and its
    validators would be kept, so the next poll (304) would never fetch the rest.
    """

    def __init__(self, encoding: str, url: str) -> None:
        self.encoding = encoding
        self.url = url
        self._zlib: Any = None
        self._br: Any = brotli.Decompressor() if encoding == "br" else None
        self._fed = False

    @classmethod
    def of(cls, header: str, url: str) -> _Decoder | None:
        """The decoder for a Content-Encoding header, None for none; FetchError for one Fil did not ask for."""
        encoding = header.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding not in ("gzip", "x-gzip", "deflate") and not (encoding == "br" and _HAS_BROTLI):
            raise FetchError(f"unsupported Content-Encoding {header!r}", url=url)
        return cls(encoding, url)

    def decode(self, chunk: bytes, limit: int) -> bytes:
        """The decoded bytes of `chunk`, at most `limit` of them (more would be over the cap anyway)."""
        if not chunk:
            return b""
        self._fed = True
        try:
            if self._br is not None:
                return bytes(self._br.process(chunk, output_buffer_limit=max(limit, 1)))
            if self._zlib is None:
                if self.encoding != "deflate":
                    wbits = 16 + zlib.MAX_WBITS  # gzip
                else:  # meant to be zlib-wrapped (RFC 9110), but some servers send raw deflate
                    wbits = zlib.MAX_WBITS if chunk[0] & 0x0F == 8 else -zlib.MAX_WBITS
                self._zlib = zlib.decompressobj(wbits)
            return bytes(self._zlib.decompress(chunk, max(limit, 1)))
        except _DECODE_ERRORS as e:
            raise FetchError(f"body could not be decoded ({self.encoding}): {e}", url=self.url) from None

    def finish(self) -> None:
        """FetchError unless the stream reached its end marker (an empty body is let through, as aiohttp does)."""
        if not self._fed:
            return
        ended = self._br.is_finished() if self._br is not None else bool(self._zlib and self._zlib.eof)
        if not ended:
            raise FetchError(f"body cut short: the {self.encoding} stream ends before its end marker", url=self.url)


_DECODE_ERRORS: tuple[type[Exception], ...] = (zlib.error, brotli.error) if _HAS_BROTLI else (zlib.error,)


def _raise_for_status(resp: aiohttp.ClientResponse, url: str, body: bytes = b"") -> None:
    status = resp.status
    if status < 300 or status == 304:
        return
    message = f"HTTP {status} {resp.reason or _phrase(status)}".rstrip()
    if status == 410:
        raise GoneError(message, url=url, status=status)
    if status in (429, 503):
        now = datetime.now(UTC)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), resp.headers.get("Date"), now)
        if retry_after is None:  # Mastodon and Bluesky say when their window resets instead
            reset = resp.headers.get("X-RateLimit-Reset") or resp.headers.get("RateLimit-Reset")
            retry_after = parse_rate_limit_reset(reset, now)
        raise RetryLaterError(message, url=url, status=status, retry_after=retry_after)
    raise FetchError(message, url=url, status=status, body=body)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _result(resp: aiohttp.ClientResponse, url: URL, permanent: str | None, body: bytes, *, status: int) -> FetchResult:
    headers: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        if key in ("content-encoding", "content-length"):
            continue
        # repeated fields join with ", " (RFC 9110 §5.3), which keeps every Link header
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return FetchResult(
        status=status,
        url=str(url),
        permanent_url=permanent,
        headers=headers,
        body=body,
        etag=resp.headers.get("ETag"),
        last_modified=resp.headers.get("Last-Modified"),
        date=resp.headers.get("Date"),
    )


def _keep_validators(result: FetchResult, etag: str | None, last_modified: str | None) -> FetchResult:
    """A 304 that repeats no validator leaves the stored ones in force (RFC 9111 §4.3.4)."""
    if (result.etag or not etag) and (result.last_modified or not last_modified):
        return result
    return FetchResult(
        status=result.status,
        url=result.url,
        permanent_url=result.permanent_url,
        headers=result.headers,
        body=result.body,
        etag=result.etag or etag,
        last_modified=result.last_modified or last_modified,
        date=result.date,
    )


def _describe(error: aiohttp.ClientError) -> str:
    """A plain message for a transport failure."""
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {error.host}"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate rejected for {error.host}"
    if isinstance(error, aiohttp.ClientSSLError):
        return f"TLS handshake failed with {error.host}"
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect to {error.host}:{error.port}: {error.os_error.strerror or error.os_error}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected before answering"
    if isinstance(error, aiohttp.ClientPayloadError):
        return f"body could not be read or decoded: {error}"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"bad HTTP response: {error.message}"
    if isinstance(error, aiohttp.InvalidURL):
        return f"invalid URL: {error}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

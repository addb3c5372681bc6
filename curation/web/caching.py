"""HTTP caching of the public GETs: ETag, Last-Modified, 304s and a Cache-Control a CDN can work with.

A pure ASGI middleware. For GET / HEAD on a path of the public allowlist it hashes a 200 body into a
strong ETag, dates it with Last-Modified, answers If-None-Match / If-Modified-Since with 304, and
adds the Cache-Control of the path's policy unless the handler chose one. Anything else (editor
routes, /api/sources, /healthz, websockets, other methods, non-200s, a response that sets a cookie
or says no-store or private) passes through untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from curation.models import EventStatus
from curation.service import Fil

#: live pages change every few seconds: a CDN may serve a copy this old and revalidate in the background
LIVE = "public, max-age=5, stale-while-revalidate=30, stale-if-error=3600"
#: a closed event's timeline is final (an admin may still reopen it: minutes, not days)
CLOSED = "public, max-age=300, stale-while-revalidate=3600, stale-if-error=86400"
#: /static/* and /embed.js keep fixed URLs across releases (no fingerprint), so not "immutable"
STATIC = "public, max-age=600, stale-while-revalidate=86400"

#: the public GETs, by whole path; `slug` names the event whose status picks LIVE or CLOSED
PUBLIC_PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/(?:api/events|oembed)?"), LIVE),
    (re.compile(r"/events/(?P<slug>[^/]+)(?:/[^/]+)*"), LIVE),
    (re.compile(r"/api/events/(?P<slug>[^/]+)/items"), LIVE),
    (re.compile(r"/embed/(?P<slug>[^/]+)(?:/[^/]+)*"), LIVE),
    (re.compile(r"/(?:static/.+|embed\.js)"), STATIC),
)

#: URLs whose Last-Modified is remembered; a forgotten one is dated anew (later, so never a wrong 304)
MAX_REMEMBERED = 4096
#: hashing a body this big or bigger runs off the event loop (an archive of a long event)
HASH_OFF_LOOP = 1 << 20

#: what a 304 repeats of the 200 (RFC 9110 15.4.5), plus CORS so a script that revalidates may read it
_HEADERS_304 = {
    b"cache-control",
    b"content-location",
    b"date",
    b"etag",
    b"expires",
    b"vary",
    b"access-control-allow-origin",
    b"access-control-expose-headers",
}

Policy = Callable[[str], str | None]


def now() -> float:
    """The clock (tests replace it)."""
    return time.time()


def fil_policy(fil: Fil) -> Policy:
    """The Cache-Control for a path of Fil's public surface, None for any other path."""

    def policy(path: str) -> str | None:
        for pattern, cache_control in PUBLIC_PATHS:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            slug = match.groupdict().get("slug")
            if slug is not None:
                event = fil.config.event(slug)
                if event is not None and event.status is EventStatus.CLOSED:
                    return CLOSED
            return cache_control
        return None

    return policy


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """The weak comparison RFC 9110 asks of If-None-Match (W/ prefixes ignored)."""
    if if_none_match.strip() == "*":
        return True
    plain = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == plain for tag in if_none_match.split(","))


def _http_date(value: str) -> float | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000": a time in UTC from a sender that did not say where it was
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class _Seen:
    """When this process first served each version of each URL: Last-Modified without asking the handlers.

    A version gets a Last-Modified only once the second it appeared in is over: two versions born in
    the same second would otherwise share one, and If-Modified-Since could not tell them apart.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.versions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def first_seen(self, key: str, etag: str, at: float) -> float:
        known = self.versions.get(key)
        if known is not None and known[0] == etag:
            self.versions.move_to_end(key)
            return known[1]
        self.versions[key] = (etag, at)
        self.versions.move_to_end(key)
        while len(self.versions) > self.limit:
            self.versions.popitem(last=False)
        return at


class CachingMiddleware:
    """Validators and Cache-Control for the paths `policy` names (it answers None for every other path)."""

    def __init__(self, app: ASGIApp, policy: Policy, *, remember: int = MAX_REMEMBERED) -> None:
        self.app = app
        self.policy = policy
        self.seen = _Seen(remember)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        cache_control = self.policy(scope["path"])
        if cache_control is None:
            await self.app(scope, receive, send)
            return
        request_headers = _headers(scope["headers"])
        key = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
        exchange = _Exchange(self, send, cache_control, request_headers, key)
        await self.app(scope, receive, exchange.send)


class _Exchange:
    """One response on its way out: passed through, or held until its body can be hashed."""

    def __init__(self, owner: CachingMiddleware, send: Send, cache_control: str, request: dict[bytes, str], key: str):
        self.owner = owner
        self.downstream = send
        self.cache_control = cache_control
        self.request = request
        self.key = key
        self.start: Message | None = None
        self.mode = "pass"  # pass | hold | drop (a 304 already sent: the body is swallowed)
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._on_start(message)
        elif message["type"] == "http.response.body" and self.mode == "hold":
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._finish()
        elif self.mode == "drop":
            return  # the rest of a response already answered with a 304
        else:
            await self.downstream(message)

    async def _on_start(self, message: Message) -> None:
        headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
        names = {name.lower() for name, _ in headers}
        status = message["status"]
        own = (_get(headers, b"cache-control") or "").lower()
        if b"set-cookie" in names or "no-store" in own or "private" in own or status not in (200, 304):
            await self.downstream(message)
            return
        if not own:  # a handler that chose its own Cache-Control keeps it, and still gets validators
            headers.append((b"cache-control", self.cache_control.encode()))
        etag = _get(headers, b"etag")
        if status == 304 or etag is not None:
            # the handler (StaticFiles) dated and tagged it; it may not have looked at If-None-Match
            if status == 200 and etag is not None and self._not_modified(etag, _get(headers, b"last-modified")):
                self.mode = "drop"
                await self.downstream(_not_modified(headers))
                await self.downstream({"type": "http.response.body", "body": b""})
                return
            await self.downstream({**message, "headers": headers})
            return
        self.start = {**message, "headers": headers}
        self.mode = "hold"

    async def _finish(self) -> None:
        assert self.start is not None
        body = b"".join(self.chunks)
        headers: list[tuple[bytes, bytes]] = self.start["headers"]
        declared = _get(headers, b"content-length")
        if not body and declared not in (None, "0"):
            # a header-only answer to HEAD: there is nothing to hash
            await self.downstream(self.start)
            await self.downstream({"type": "http.response.body", "body": b""})
            return
        etag = await asyncio.to_thread(etag_of, body) if len(body) >= HASH_OFF_LOOP else etag_of(body)
        headers.append((b"etag", etag.encode()))
        at = now()
        first = self.owner.seen.first_seen(self.key, etag, at)
        last_modified = _get(headers, b"last-modified")
        if last_modified is None and at >= math.floor(first) + 1:
            last_modified = formatdate(math.floor(first), usegmt=True)
            headers.append((b"last-modified", last_modified.encode()))
        if _get(headers, b"content-encoding") is not None:
            _add_vary(headers, "Accept-Encoding")
        if self._not_modified(etag, last_modified):
            await self.downstream(_not_modified(headers))
            await self.downstream({"type": "http.response.body", "body": b""})
            return
        await self.downstream(self.start)
        await self.downstream({"type": "http.response.body", "body": body})

    def _not_modified(self, etag: str, last_modified: str | None) -> bool:
        if_none_match = self.request.get(b"if-none-match")
        if if_none_match is not None:  # it wins over If-Modified-Since (RFC 9110 13.2.2)
            return etag_matches(if_none_match, etag)
        since = self.request.get(b"if-modified-since")
        if since is None or last_modified is None:
            return False
        since_at, modified_at = _http_date(since), _http_date(last_modified)
        return since_at is not None and modified_at is not None and modified_at <= since_at


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    headers: dict[bytes, str] = {}
    for name, value in raw:
        name = name.lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def _get(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _add_vary(headers: list[tuple[bytes, bytes]], field: str) -> None:
    for index, (key, value) in enumerate(headers):
        if key.lower() == b"vary":
            present = {v.strip().lower() for v in value.decode("latin-1").split(",")}
            if field.lower() not in present and "*" not in present:
                headers[index] = (key, value + b", " + field.encode())
            return
    headers.append((b"vary", field.encode()))


def _not_modified(headers: list[tuple[bytes, bytes]]) -> Message:
    kept = [(key, value) for key, value in headers if key.lower() in _HEADERS_304]
    return {"type": "http.response.start", "status": 304, "headers": kept}

"""A fake feed server on loopback for tests: scripted responses per path, every request recorded.

    async with FakeUpstream() as server:            # or the `upstream` pytest fixture
        server.add("/feed.xml", body=rss_document([...]), etag="auto")
        server.redirect("/old", "/feed.xml", status=301)
        ... fetch server.url("/old") ...
        assert server.served("/feed.xml", 304) == 1
        assert server.requests[-1].headers["if-none-match"] == '"..."'

A path answers with its Route; `sequence()` scripts several answers (each request takes the next one, the
last repeats). Routes are mutable: change `route.body` between requests to model an updated document.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import brotli  # type: ignore[import-untyped]
import pytest_asyncio
from aiohttp import web

from tests.loopback import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"

RSS = "application/rss+xml; charset=utf-8"
ATOM = "application/atom+xml; charset=utf-8"
JSON_FEED = "application/feed+json"


@dataclass
class Route:
    """How one path answers. Every field may be changed between requests."""

    body: bytes = b""
    status: int = 200
    content_type: str | None = RSS
    headers: dict[str, str] = field(default_factory=dict)
    #: an ETag to send, or "auto" for a strong ETag derived from the current body
    etag: str | None = None
    last_modified: str | None = None
    #: answer 304 to a matching If-None-Match / If-Modified-Since (False: always 200, validators ignored)
    conditional: bool = True
    #: compress `body` on the way out and say so: "gzip", "deflate" or "br"
    encoding: str | None = None
    #: send the body without Content-Length, in pieces of this size
    chunk_size: int | None = None
    #: seconds to sleep before each piece (with chunk_size: a trickling body)
    chunk_delay: float = 0.0
    #: seconds to sleep before answering at all
    delay: float = 0.0
    #: redirect target (absolute or relative), sent as Location
    location: str | None = None

    def current_etag(self) -> str | None:
        if self.etag == "auto":
            return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'
        return self.etag


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    #: request headers, names lowercased (repeated names joined with ", ")
    headers: dict[str, str]
    #: the status answered (0 while the answer is still being sent)
    status: int = 0
    #: event-loop time when the request arrived
    at: float = 0.0


class FakeUpstream(LoopbackServer):
    """An aiohttp.web server on 127.0.0.1 (or another loopback address) and a free port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._routes: dict[str, list[Route]] = {}

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # -- addresses -------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- configuring paths -----------------------------------------------------------------------------

    def add(self, path: str, body: bytes | str = b"", **fields: Any) -> Route:
        """Serve `body` at `path` (replacing what was there); `fields` are Route fields."""
        route = Route(body=body.encode() if isinstance(body, str) else body, **fields)
        self._routes[path] = [route]
        return route

    def sequence(self, path: str, routes: Iterable[Route]) -> list[Route]:
        """Each request to `path` takes the next route; the last one then answers for good."""
        script = list(routes)
        assert script, "sequence needs at least one route"
        self._routes[path] = script
        return script

    def route(self, path: str) -> Route:
        """The route answering the next request to `path`."""
        return self._routes[path][0]

    def redirect(self, path: str, to: str, *, status: int = 302) -> Route:
        """`to` may be a path on this server ("/feed.xml") or any URL."""
        return self.add(path, status=status, location=to, content_type=None)

    def redirect_chain(self, path: str, statuses: Iterable[int], to: str) -> list[str]:
        """path -> path/1 -> ... -> `to`, one hop per status; returns the paths of the hops."""
        hops = list(statuses)
        paths = [path] + [f"{path}/{i}" for i in range(1, len(hops))]
        for i, status in enumerate(hops):
            self.redirect(paths[i], paths[i + 1] if i + 1 < len(hops) else to, status=status)
        return paths

    def gone(self, path: str) -> Route:
        return self.add(path, b"gone", status=410, content_type="text/plain")

    def retry_later(
        self, path: str, *, status: int = 429, retry_after: str | None = None, date: str | None = None
    ) -> Route:
        """429/503 with an optional Retry-After (seconds or HTTP-date) and a fixed Date header."""
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if date is not None:
            headers["Date"] = date
        return self.add(path, b"slow down", status=status, content_type="text/plain", headers=headers)

    def storm(self, path: str, failures: int, body: bytes | str, *, status: int = 500, **fields: Any) -> list[Route]:
        """`failures` error answers, then `body` for good."""
        ok = Route(body=body.encode() if isinstance(body, str) else body, **fields)
        errors = [Route(body=b"boom", status=status, content_type="text/plain") for _ in range(failures)]
        return self.sequence(path, [*errors, ok])

    def trickle(self, path: str, body: bytes | str, *, chunk_size: int = 1, chunk_delay: float = 0.05) -> Route:
        """Send `body` a few bytes at a time, sleeping between pieces."""
        return self.add(path, body, chunk_size=chunk_size, chunk_delay=chunk_delay)

    def oversize(self, path: str, size: int, *, chunked: bool = False) -> Route:
        """A `size`-byte body; with chunked=True no Content-Length tells the client in advance."""
        body = b"<rss>" + b"x" * max(0, size - 5)
        return self.add(path, body, chunk_size=64 * 1024 if chunked else None)

    def gzip_bomb(self, path: str, expanded_size: int) -> Route:
        """A small gzip body (Content-Encoding: gzip) that inflates to `expanded_size` bytes."""
        return self.add(path, gzip_bomb(expanded_size), headers={"Content-Encoding": "gzip"}, chunk_size=16 * 1024)

    def brotli(self, path: str, body: bytes | str, **fields: Any) -> Route:
        return self.add(path, body, encoding="br", **fields)

    def json_feed(self, path: str, body: bytes | str | Mapping[str, Any], **fields: Any) -> Route:
        data = json.dumps(body).encode() if isinstance(body, Mapping) else body
        fields.setdefault("content_type", JSON_FEED)
        return self.add(path, data, **fields)

    # -- what happened ---------------------------------------------------------------------------------

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    def served(self, path: str, status: int) -> int:
        """How many requests to `path` were answered with `status` (e.g. 200 vs 304)."""
        return sum(1 for r in self.requests if r.path == path and r.status == status)

    def last(self, path: str | None = None) -> RecordedRequest:
        """The latest request (to `path`, if given)."""
        found = [r for r in self.requests if path is None or r.path == path]
        assert found, f"no request to {path or 'any path'}; got {[r.path for r in self.requests]}"
        return found[-1]

    # -- serving ---------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        record = RecordedRequest(
            request.method, request.path, request.query_string, headers, at=asyncio.get_running_loop().time()
        )
        self.requests.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            script = self._routes.get(request.path)
            if not script:
                record.status = 404
                return web.Response(status=404, text=f"no route for {request.path}")
            route = script.pop(0) if len(script) > 1 else script[0]
            if route.delay:
                await asyncio.sleep(route.delay)
            return await self._answer(request, route, record)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, route: Route, record: RecordedRequest) -> web.StreamResponse:
        out: dict[str, str] = dict(route.headers)
        etag = route.current_etag()
        if etag:
            out["ETag"] = etag
        if route.last_modified:
            out["Last-Modified"] = route.last_modified
        if route.location is not None:
            out["Location"] = route.location
        if route.content_type and route.status != 304:
            out["Content-Type"] = route.content_type
        if route.status == 200 and route.conditional and _not_modified(request, etag, route.last_modified):
            record.status = 304
            out.pop("Content-Type", None)
            return web.Response(status=304, headers=out)
        body = _encode(route.body, route.encoding)
        if route.encoding:
            out["Content-Encoding"] = route.encoding
        record.status = route.status
        if route.chunk_size is None:
            return web.Response(status=route.status, body=body, headers=out)
        response = web.StreamResponse(status=route.status, headers=out)
        await response.prepare(request)
        # the client may give up mid-body (that is what several tests check): stop quietly then
        with contextlib.suppress(ConnectionError, RuntimeError):
            for start in range(0, len(body), route.chunk_size):
                if route.chunk_delay:
                    await asyncio.sleep(route.chunk_delay)
                await response.write(body[start : start + route.chunk_size])
            await response.write_eof()
        return response


_ENTITY_TAG = re.compile(r'(?:W/)?"[^"]*"|\*')


def _not_modified(request: web.Request, etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; If-Modified-Since only without it."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        # weak comparison (§8.8.3.2); entity-tags may themselves contain commas, so no split(",")
        tags = {t.removeprefix("W/") for t in _ENTITY_TAG.findall(if_none_match)}
        return etag is not None and (etag.removeprefix("W/") in tags or "*" in tags)
    since = request.headers.get("If-Modified-Since")
    if since is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def _encode(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "br":
        data: bytes = brotli.compress(body)
        return data
    assert encoding is None, f"unknown encoding {encoding!r}"
    return body


def gzip_bomb(expanded_size: int) -> bytes:
    """Gzip bytes that inflate to `expanded_size` zero bytes; built in pieces so the test never holds them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    piece = b"\0" * (1024 * 1024)
    parts: list[bytes] = []
    left = expanded_size
    while left > 0:
        parts.append(compressor.compress(piece[: min(left, len(piece))]))
        left -= len(piece)
    parts.append(compressor.flush())
    return b"".join(parts)


def http_date(when: datetime) -> str:
    """An IMF-fixdate ("Wed, 21 Oct 2015 07:28:00 GMT") for Last-Modified, Date or Retry-After."""
    return format_datetime(when, usegmt=True)


def fixture(name: str) -> bytes:
    """Bytes of tests/fixtures/feeds/<name>."""
    return (FIXTURES / name).read_bytes()


# -- small documents for the cases a test wants to build (relative links, duplicate GUIDs, encodings) ------

MALFORMED_XML = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Broken & unescaped</title>'
    b"<item><title>First <b>item</title><link>https://example.org/1</link><guid>1</guid></item>"
    b"<item><title>Second</title><link>https://example.org/2</link><guid>2</guid>"
)


def rss_document(
    items: Iterable[Mapping[str, str]],
    *,
    title: str = "Fake feed",
    link: str = "https://example.org/",
    encoding: str = "utf-8",
    declared_encoding: str | None = None,
) -> bytes:
    """An RSS 2.0 document. Item keys become child elements (title, link, guid, description, pubDate, ...).

    The text is encoded as `encoding`; the XML prolog says `declared_encoding` (default: the same), so a
    test can build a document whose prolog lies.
    """
    parts = [
        f'<?xml version="1.0" encoding="{declared_encoding or encoding}"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link><description>test feed</description>",
    ]
    for item in items:
        parts.append("<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in item.items()) + "</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode(encoding)


def atom_document(
    entries: Iterable[Mapping[str, str]],
    *,
    title: str = "Fake feed",
    feed_id: str = "urn:fil:test:feed",
    xml_base: str | None = None,
    updated: str = "2024-05-01T12:00:00Z",
) -> bytes:
    """An Atom document. Entry keys: id, title, link (href), updated, published, summary, content (html)."""
    base = f' xml:base="{escape(xml_base)}"' if xml_base else ""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<feed xmlns="http://www.w3.org/2005/Atom"{base}>',
        f"<title>{escape(title)}</title><id>{escape(feed_id)}</id><updated>{updated}</updated>",
    ]
    for entry in entries:
        inner = []
        for key, value in entry.items():
            if key == "link":
                inner.append(f'<link rel="alternate" href="{escape(value)}"/>')
            elif key in ("summary", "content"):
                inner.append(f'<{key} type="html">{escape(value)}</{key}>')
            else:
                inner.append(f"<{key}>{escape(value)}</{key}>")
        parts.append("<entry>" + "".join(inner) + "</entry>")
    parts.append("</feed>")
    return "\n".join(parts).encode()


def json_feed_document(items: Iterable[Mapping[str, Any]], *, title: str = "Fake feed") -> bytes:
    """A JSON Feed 1.1 document; serve it with content_type=JSON_FEED."""
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": title, "items": list(items)}
    return json.dumps(doc).encode()


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A running FakeUpstream on 127.0.0.1, closed after the test."""
    async with FakeUpstream() as server:
        yield server

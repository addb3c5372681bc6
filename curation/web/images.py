"""The optional image proxy (CURATION_IMAGE_PROXY): every image a reader's browser loads comes from Fil.

When it is on, pages point each image at `/img/{signature}?url=<original>`, where the signature is an
HMAC of the URL under a key derived from the server's secret key, so Fil only ever fetches the images it
put on its own pages (never an open proxy). Item JSON sent to pages (websocket frames, the items API,
the desk) gains a `proxied` map from each original image URL to its signed path; the contract's fields
keep their original values. `GET /img/...` fetches through a Fetcher of its own (the collectors' address
rules, a size cap, no client header forwarded), keeps only PNG, JPEG, GIF, WebP and AVIF whose bytes say
so, and answers them with a long-lived Cache-Control. A small LRU of recent images, and one upstream
fetch per URL however many readers ask at once, keep a busy live page from fanning out to the origins.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import nh3
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

from curation import sanitize
from curation.codec import dumps
from curation.collectors.fetch import Fetcher
from curation.errors import BlockedAddressError, FetchError, GoneError, TooLargeError
from curation.hub import Sink, text_frame

if TYPE_CHECKING:
    from curation.service import Fil

log = logging.getLogger("curation.images")

#: what the proxy serves; SVG never (it is a document that can carry script)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif"})
ACCEPT = "image/avif,image/webp,image/png,image/jpeg,image/gif;q=0.9"
CACHE_CONTROL = "public, max-age=86400, immutable"
#: upstream failures: browsers and a CDN may hold them a minute (the LRU below does too)
FAILURE_CACHE_CONTROL = "public, max-age=60"
#: recent images kept in memory, per process, together at most this many bytes
CACHE_BYTES = 32 * 1024 * 1024
#: upstream failures remembered (how many, how long): a broken avatar costs one fetch a minute, not one per reader
FAILURES = 1024
FAILURE_TTL = 60.0
#: rewritten websocket frames kept (bytes), so a change is rewritten once, not once per reader
FRAME_CACHE_BYTES = 8 * 1024 * 1024
#: concurrent fetches per upstream host (avatars of one platform share a CDN)
PER_HOST = 6
#: bytes of HMAC-SHA256 kept in a signature (128 bits)
SIGNATURE_BYTES = 16
#: hashing a body this big or bigger for its ETag runs off the event loop
HASH_OFF_LOOP = 256 * 1024
KEY_CONTEXT = b"fil-image-proxy\0"
MAX_URL_IN_MESSAGE = 300
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",
    # an archive file opened elsewhere, or a partner page with COEP, may still show it
    "Cross-Origin-Resource-Policy": "cross-origin",
}

_HTTP = re.compile(r"^https?://", re.IGNORECASE)
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def sniff(body: bytes) -> str | None:
    """The raster type the bytes themselves announce (magic numbers), or None."""
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(body) >= 12 and body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    if len(body) >= 16 and body[4:8] == b"ftyp":
        # ISO BMFF: the major brand, then (after the minor version) the compatible brands of the ftyp box
        size = int.from_bytes(body[:4], "big")
        end = min(size if size >= 16 else 16, len(body), 256)
        brands = {body[8:12]} | {body[i : i + 4] for i in range(16, end - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "image/avif"
    return None


def _short(url: str) -> str:
    return url if len(url) <= MAX_URL_IN_MESSAGE else url[: MAX_URL_IN_MESSAGE - 1] + "…"


@dataclass(frozen=True, slots=True)
class Image:
    body: bytes
    type: str
    etag: str


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    text: str
    at: float = 0.0


class ImageProxy:
    """Signs image URLs for pages, and serves them (GET /img/{signature}?url=) when the proxy is on."""

    def __init__(self, fil: Fil) -> None:
        self.fil = fil
        self.enabled = fil.settings.image_proxy
        self._key: bytes | None = None
        self._fetcher: Fetcher | None = None
        self._images: OrderedDict[str, Image] = OrderedDict()
        self._image_bytes = 0
        self._failures: OrderedDict[str, Refusal] = OrderedDict()
        self._pending: dict[str, asyncio.Task[Image | Refusal]] = {}
        self._frames: OrderedDict[bytes, bytes] = OrderedDict()
        self._frame_bytes = 0

    # -- signing ---------------------------------------------------------------------------------

    @property
    def key(self) -> bytes:
        """A key of its own, derived from the session key (known once the service started)."""
        if self._key is None:
            self._key = hmac.new(self.fil.auth.key, KEY_CONTEXT, hashlib.sha256).digest()
        return self._key

    def sign(self, url: str) -> str:
        digest = hmac.new(self.key, url.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).decode().rstrip("=")

    def verify(self, url: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(url).encode(), signature.encode())

    def path(self, url: str) -> str:
        return f"/img/{self.sign(url)}?url={quote(url, safe='', errors='surrogatepass')}"

    def url(self, original: str | None, base: str = "") -> str | None:
        """The URL a page uses for an image: its signed /img/ path when the proxy is on (prefixed with
        `base` for a page read elsewhere, the archive file), else the original. Not http(s): nothing."""
        if not self.enabled or not original:
            return original
        if not _HTTP.match(original):
            return ""
        return base + self.path(original)

    def html(self, fragment: str | None, base: str = "") -> str | None:
        """Sanitized HTML with each <img> pointed at its /img/ path (one that cannot be loses its src)."""
        if not self.enabled or not fragment or "<img" not in fragment:
            return fragment
        return _with_images(fragment, lambda src: self.url(src, base) or None)

    # -- item JSON -------------------------------------------------------------------------------

    def item_json(self, record: dict[str, Any]) -> dict[str, Any]:
        """Item JSON plus `proxied`: {original image URL: its /img/ path}, when the proxy is on."""
        if self.enabled:
            record["proxied"] = {url: self.path(url) for url in _image_urls(record)}
        return record

    def frame(self, frame: bytes) -> bytes:
        """A websocket frame with `proxied` added to its item; each distinct frame is rewritten once."""
        # called once per reader and frame: no copy of the payload until a frame is new to this process
        if not frame.startswith(b'{"type":"upsert"', _header_size(frame)):
            return frame  # hello, remove, reset, header: no image URL to sign
        cached = self._frames.get(frame)  # the hub hands every reader the same bytes object: its hash is kept
        if cached is not None:
            self._frames.move_to_end(frame)
            return cached
        try:
            message = json.loads(frame[_header_size(frame) :])
            item = message.get("item")
            if isinstance(item, dict):
                message["item"] = self.item_json(item)
            rewritten = text_frame(dumps(message).encode())
        except (ValueError, TypeError):
            rewritten = frame
        self._frames[frame] = rewritten
        self._frame_bytes += len(frame) + len(rewritten)
        while self._frame_bytes > FRAME_CACHE_BYTES and self._frames:
            old, new = self._frames.popitem(last=False)
            self._frame_bytes -= len(old) + len(new)
        return rewritten

    def sink(self, sink: Sink) -> Sink:
        """The sink a reader or desk joins the hub with: itself, or one that rewrites its frames."""
        return ProxiedSink(sink, self) if self.enabled else sink

    # -- serving ---------------------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        if not self.enabled:
            return _text(404, "the image proxy is off (CURATION_IMAGE_PROXY)", cache="no-store")
        signature = str(request.path_params.get("signature", ""))
        url = request.query_params.get("url")
        if url is None or not _SIGNATURE.match(signature) or not self.verify(url, signature):
            return _text(403, "bad signature: Fil only fetches the images its own pages name", cache="no-store")
        result = await self.get(url)
        if isinstance(result, Refusal):
            cache = "no-store" if result.status == 403 else FAILURE_CACHE_CONTROL
            return _text(result.status, result.text, cache=cache)
        headers = {**SECURITY_HEADERS, "Cache-Control": CACHE_CONTROL, "ETag": result.etag}
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and result.etag in {
            t.strip().removeprefix("W/") for t in if_none_match.split(",")
        }:
            return Response(status_code=304, headers=headers)
        return Response(result.body, media_type=result.type, headers=headers)

    async def get(self, url: str) -> Image | Refusal:
        """The image at `url`: from memory, from a fetch already under way, or fetched now."""
        image = self._images.get(url)
        if image is not None:
            self._images.move_to_end(url)
            return image
        failure = self._failures.get(url)
        if failure is not None and time.monotonic() - failure.at < FAILURE_TTL:
            return failure
        task = self._pending.get(url)
        if task is None:
            task = self._pending[url] = asyncio.create_task(self._load(url), name="image-proxy")
        # a reader that goes away does not cancel the fetch the others wait for
        return await asyncio.shield(task)

    async def _load(self, url: str) -> Image | Refusal:
        try:
            result = await self._fetch(url)
        finally:
            self._pending.pop(url, None)
        if isinstance(result, Image):
            self._keep(url, result)
        else:
            self._failures[url] = result
            self._failures.move_to_end(url)
            while len(self._failures) > FAILURES:
                self._failures.popitem(last=False)
        return result

    async def _fetch(self, url: str) -> Image | Refusal:
        shown = _short(url)
        try:
            fetched = await self.fetcher().get(url, accept=ACCEPT, unconditional=True)
        except BlockedAddressError as e:
            return Refusal(403, f"refused: {shown}: {e.message}", time.monotonic())
        except GoneError:
            return Refusal(404, f"gone upstream (HTTP 410): {shown}", time.monotonic())
        except TooLargeError:
            limit = self.fil.settings.image_max_bytes
            return Refusal(502, f"larger than {limit} bytes (CURATION_IMAGE_MAX_BYTES): {shown}", time.monotonic())
        except FetchError as e:
            status = 404 if e.status == 404 else 502
            return Refusal(status, f"upstream failed: {e.message}: {shown}", time.monotonic())
        declared = fetched.headers.get("content-type", "").split(";")[0].strip().lower()
        if declared == "image/svg+xml":
            return Refusal(502, f"SVG is refused (it can carry script): {shown}", time.monotonic())
        if declared not in IMAGE_TYPES:
            return Refusal(502, f"not an image ({declared or 'no Content-Type'}): {shown}", time.monotonic())
        kind = sniff(fetched.body)
        if kind is None:
            return Refusal(
                502, f"not a PNG, JPEG, GIF, WebP or AVIF image (says {declared}): {shown}", time.monotonic()
            )
        body = fetched.body
        digest = await asyncio.to_thread(_etag, body) if len(body) >= HASH_OFF_LOOP else _etag(body)
        return Image(body=body, type=kind, etag=digest)

    def _keep(self, url: str, image: Image) -> None:
        if len(image.body) > CACHE_BYTES // 4:
            return
        old = self._images.pop(url, None)
        if old is not None:
            self._image_bytes -= len(old.body)
        self._images[url] = image
        self._image_bytes += len(image.body)
        while self._image_bytes > CACHE_BYTES and self._images:
            _, dropped = self._images.popitem(last=False)
            self._image_bytes -= len(dropped.body)

    def fetcher(self) -> Fetcher:
        """A Fetcher of its own: the collectors' address rules (and the demo's trusted origin), the image cap,
        and no per-host queue shared with the collectors."""
        if self._fetcher is None:
            settings = self.fil.settings
            self._fetcher = Fetcher(
                allow_private=settings.allow_private_hosts,
                trusted_origins=self.fil.fetcher.trusted_origins,
                max_body=settings.image_max_bytes,
                connect_timeout=settings.connect_timeout,
                total_timeout=settings.fetch_timeout,
                per_host_limit=PER_HOST,
            )
        return self._fetcher

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)
        if self._fetcher is not None:
            await self._fetcher.close()


class ProxiedSink:
    """A reader's (or a desk's) sink whose upsert frames carry `proxied` image paths."""

    __slots__ = ("inner", "proxy")

    def __init__(self, inner: Sink, proxy: ImageProxy) -> None:
        self.inner = inner
        self.proxy = proxy

    def send(self, frames: Sequence[bytes]) -> bool:
        return self.inner.send([self.proxy.frame(f) for f in frames])

    def backlog(self) -> int:
        return self.inner.backlog()

    async def drain(self) -> None:
        await self.inner.drain()

    def __getattr__(self, name: str) -> Any:
        # what else code looks at on a reader (its connection, in tests and tools) is the wrapped sink's
        return getattr(self.inner, name)


def _image_urls(record: Mapping[str, Any]) -> list[str]:
    """Every http(s) image URL an item's JSON names: avatars, image media, thumbnails and posters, the
    card's image, and the <img> sources of its HTML (as a browser reads the attribute)."""
    found: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, str) and _HTTP.match(value) and value not in found:
            found.append(value)

    for key in ("author", "reposted_by"):
        person = record.get(key)
        if isinstance(person, Mapping):
            add(person.get("avatar"))
    for media in record.get("media") or ():
        if isinstance(media, Mapping):
            if media.get("type") == "image":
                add(media.get("url"))
            add(media.get("thumbnail"))
    card = record.get("card")
    if isinstance(card, Mapping):
        add(card.get("image"))
        author = card.get("author")
        if isinstance(author, Mapping):
            add(author.get("avatar"))
    fragment = record.get("html")
    if isinstance(fragment, str) and "<img" in fragment:

        def collect(src: str) -> str:
            add(src)
            return src

        _with_images(fragment, collect)
    return found


def _with_images(fragment: str, change: Callable[[str], str | None]) -> str:
    """`fragment` (already sanitized) through the sanitizer's own policy again, each <img> src through
    `change` (None drops it): a real HTML parser finds the images, not a pattern."""

    def each(tag: str, attribute: str, value: str) -> str | None:
        return change(value) if tag == "img" and attribute == "src" else value

    return nh3.clean(
        fragment,
        tags=sanitize.TAGS,
        clean_content_tags=sanitize.DROP_WITH_CONTENT,
        attributes=sanitize.ATTRIBUTES,
        attribute_filter=each,
        strip_comments=True,
        link_rel=sanitize.LINK_REL,
        set_tag_attribute_values=sanitize.FORCED_ATTRIBUTES,
        url_schemes=sanitize.URL_SCHEMES,
        allowed_classes=sanitize.ALLOWED_CLASSES,
        # the /img/ paths are relative; the sanitized input has absolute URLs only
        url_relative="pass_through",
    )


def _header_size(frame: bytes) -> int:
    """Where the payload starts in a frame made by hub.text_frame (unmasked, final)."""
    size = frame[1] & 0x7F
    return 2 if size < 126 else 4 if size == 126 else 10


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _text(status: int, text: str, *, cache: str) -> Response:
    return PlainTextResponse(text, status_code=status, headers={**SECURITY_HEADERS, "Cache-Control": cache})


def proxied(connection: HTTPConnection, record: dict[str, Any]) -> dict[str, Any]:
    """Item JSON as a page of this app should get it (with `proxied` when the proxy is on)."""
    proxy: ImageProxy | None = getattr(connection.app.state, "images", None)
    return proxy.item_json(record) if proxy is not None else record


async def image(request: Request) -> Response:
    """GET /img/{signature}?url=: one image, fetched under the collectors' rules."""
    proxy: ImageProxy = request.app.state.images
    return await proxy.serve(request)

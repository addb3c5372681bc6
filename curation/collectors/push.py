"""Push ingest (`kind: push`): verify a signed batch and turn it into Entries. Pure: no I/O.

Signature: `X-Fil-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>` with
`X-Fil-Timestamp: <unix seconds>` within MAX_SKEW of the server's clock. The source's secret env var
may hold two secrets separated by a comma, so a newsroom can rotate without downtime.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from curation.collectors import PollResult, json_input
from curation.errors import CurationError, SourceError
from curation.models import Author, Entry, ItemKind, Media, Source, SourceStatus
from curation.normalize import content_hash, to_utc
from curation.sanitize import escape_text, html_to_text, plain_text, safe_url, sanitize_html

MAX_ITEMS = 100
MAX_BODY = 1024 * 1024
MAX_SKEW = 300.0
MAX_ID = 512
MAX_TEXT = 100_000
MEDIA_TYPES = ("image", "video", "audio")


class PushRejected(CurationError):
    """The batch is refused; `status` is the HTTP answer (400 names the first bad field, 401 the signature)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class PushCollector:
    """Push sources are never polled: items arrive at POST /api/ingest/{source_id} (curation/web/ingest.py)."""

    passive = True

    def __init__(self, context: object) -> None:
        self.context = context

    async def poll(self, source: Source, status: SourceStatus) -> PollResult:
        raise SourceError("push sources are not polled", source_id=source.id)


def secrets_from(value: str | None) -> list[bytes]:
    """The valid secrets in an env var's value (one, or two during a rotation)."""
    return [s.strip().encode() for s in (value or "").split(",") if s.strip()]


def verify(secrets: Sequence[bytes], timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise PushRejected(401) unless the signature matches one secret and the timestamp is fresh."""
    if not timestamp or not signature:
        raise PushRejected(401, "missing X-Fil-Timestamp or X-Fil-Signature")
    try:
        sent = int(timestamp.strip())
    except ValueError:
        raise PushRejected(401, "X-Fil-Timestamp: not unix seconds") from None
    if abs(now - sent) > MAX_SKEW:
        raise PushRejected(401, f"X-Fil-Timestamp: more than {MAX_SKEW:g}s away from the server's clock")
    scheme, _, digest = signature.strip().partition("=")
    if scheme != "sha256" or not digest:
        raise PushRejected(401, "X-Fil-Signature: expected sha256=<hex>")
    message = timestamp.strip().encode() + b"." + body
    for secret in secrets:
        expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, digest.lower()):
            return
    raise PushRejected(401, "X-Fil-Signature: does not match")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender computes (used by tests and documented in the README)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def parse_batch(body: bytes) -> list[Entry]:
    """The Entries of a batch; PushRejected(400) naming the first bad field, and then nothing is taken."""
    try:
        document = json_input.loads(body)
    except ValueError as e:
        raise PushRejected(400, f"body: not JSON ({e})") from None
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise PushRejected(400, 'items: expected {"items": [...]}')
    items = document["items"]
    if len(items) > MAX_ITEMS:
        raise PushRejected(400, f"items: at most {MAX_ITEMS} items per request")
    return [_entry(item, f"items[{n}]") for n, item in enumerate(items)]


def _string(
    item: Mapping[str, Any], key: str, path: str, *, required: bool = False, limit: int = MAX_TEXT
) -> str | None:
    value = item.get(key)
    if value is None:
        if required:
            raise PushRejected(400, f"{path}.{key}: missing")
        return None
    if not isinstance(value, str):
        raise PushRejected(400, f"{path}.{key}: expected a string")
    if len(value) > limit:
        raise PushRejected(400, f"{path}.{key}: longer than {limit} characters")
    return value


def _url(item: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = _string(item, key, path, required=required, limit=4096)
    if value is None:
        return None
    url = safe_url(value)
    if url is None:
        raise PushRejected(400, f"{path}.{key}: not an http(s) URL")
    return url


def _date(item: Mapping[str, Any], path: str) -> datetime:
    value = _string(item, "published_at", path, required=True, limit=64)
    try:
        parsed = datetime.fromisoformat((value or "").replace("Z", "+00:00"))
    except ValueError:
        raise PushRejected(400, f"{path}.published_at: not an RFC 3339 date") from None
    result = to_utc(parsed)
    if result is None:  # year 1 or 9999 with an offset that takes it out of datetime's range
        raise PushRejected(400, f"{path}.published_at: out of range")
    return result


def _author(item: Mapping[str, Any], path: str) -> Author:
    value = item.get("author")
    if value is None:
        return Author()
    if not isinstance(value, dict):
        raise PushRejected(400, f"{path}.author: expected an object")
    where = f"{path}.author"
    name = _string(value, "name", where, limit=200)
    handle = _string(value, "handle", where, limit=200)
    return Author(
        name=plain_text(name) if name else None,
        handle=plain_text(handle) if handle else None,
        url=_url(value, "url", where),
        avatar=_url(value, "avatar", where),
    )


def _media(item: Mapping[str, Any], path: str) -> tuple[Media, ...]:
    value = item.get("media")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 20:
        raise PushRejected(400, f"{path}.media: expected a list of at most 20")
    media = []
    for n, entry in enumerate(value):
        where = f"{path}.media[{n}]"
        if not isinstance(entry, dict):
            raise PushRejected(400, f"{where}: expected an object")
        kind = _string(entry, "type", where, required=True, limit=16)
        if kind not in MEDIA_TYPES:
            raise PushRejected(400, f"{where}.type: expected one of {', '.join(MEDIA_TYPES)}")
        url = _url(entry, "url", where, required=True)
        alt = _string(entry, "alt", where, limit=2000)
        assert url is not None
        media.append(Media(type=kind, url=url, alt=plain_text(alt) if alt else None))
    return tuple(media)


def _entry(item: object, path: str) -> Entry:
    if not isinstance(item, dict):
        raise PushRejected(400, f"{path}: expected an object")
    key = _string(item, "id", path, required=True, limit=MAX_ID)
    if not key or not key.strip():
        raise PushRejected(400, f"{path}.id: empty")
    url = _url(item, "url", path, required=True)
    title = _string(item, "title", path, limit=1000)
    text = _string(item, "text", path)
    raw_html = _string(item, "html", path)
    if not text and not raw_html:
        raise PushRejected(400, f"{path}.text: one of text or html is required")
    kind_name = _string(item, "kind", path, limit=16) or "post"
    try:
        kind = ItemKind(kind_name)
    except ValueError:
        raise PushRejected(400, f"{path}.kind: expected article, post or update") from None
    html = sanitize_html(raw_html, url) if raw_html else escape_text(text or "")
    plain = html_to_text(html) if raw_html else (text or "").strip()
    media = _media(item, path)
    clean_title = plain_text(title) if title else None
    return Entry(
        key=key,
        kind=kind,
        url=url,
        title=clean_title or None,
        text=plain,
        html=html,
        content_hash=content_hash(clean_title, plain, [m.url for m in media]),
        author=_author(item, path),
        media=media,
        published_at=_date(item, path),
    )

"""Pure helpers that turn upstream values into normalized ones: UTC dates, canonical URLs, hashes, keys.

Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: query parameters that only track the click; dropped by canonical_url (compared lower-cased)
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid",
        "igshid", "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id",
        "wickedid", "_ga", "_gl", "ref_src", "ref_url", "cmpid", "xtor", "at_medium", "at_campaign",
    }
)  # fmt: skip
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_")

_DEFAULT_PORTS = {"http": 80, "https": 443}


def to_utc(value: time.struct_time | datetime | str | None) -> datetime | None:
    """A tz-aware UTC datetime, or None when the value is missing or unreadable.

    A value without a zone is taken as UTC. feedparser's *_parsed struct_times are already UTC.
    """
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, time.struct_time):
            # a leap second (60) is legal in struct_time but not in datetime
            parsed = datetime(*value[:5], min(value[5], 59), tzinfo=UTC)
        else:
            parsed_or_none = _parse_date_string(value)
            if parsed_or_none is None:
                return None
            parsed = parsed_or_none
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError, TypeError):
        return None


def _parse_date_string(value: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        # RFC 822 and its variants, including Bluesky profile RSS's Go layout "02 Jan 2006 15:04 -0700"
        # (no weekday, no seconds)
        return parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError):
        return None


def canonical_url(url: str) -> str:
    """The URL used to compare links: lower-case scheme and host, no fragment, no default port,
    no tracking parameters (utm_*, fbclid, ...); path and the remaining query kept as they are."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        host = f"{userinfo}@{host}"
    path = parts.path or ("/" if host else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _is_tracking(k)]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return urlunsplit((scheme, host, path, query, ""))


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def content_hash(title: str | None, text_or_html: str | None, media_urls: Iterable[str] = ()) -> str:
    """sha256 hex over what a reader sees (title, body, media); dates never take part, so a changed
    hash means an edited entry."""
    payload = json.dumps([title or "", text_or_html or "", sorted(set(media_urls))], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def fallback_key(title: str | None, content: str | None) -> str:
    """The entry key when an upstream gives neither an id nor a link."""
    payload = json.dumps([title or "", content or ""], ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def truncate_title(text: str, limit: int = 120) -> str:
    """A one-line title cut at a word boundary, with an ellipsis when it was cut."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"

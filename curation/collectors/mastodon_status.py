"""Mastodon statuses as Entries: reading untrusted status JSON, and rendering it safely. Pure: no I/O.

`read_status` pulls out what polling decides on (ids, key, edit mark, reply/boost/visibility) without
rendering; `convert` renders the chosen statuses (sanitize, emoji, media, cards, quotes) off the event loop.
"""

from __future__ import annotations

import html as _html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from curation.models import Author, Card, Entry, ItemKind, Media
from curation.normalize import content_hash, to_utc, truncate_title
from curation.sanitize import html_to_text, plain_text, safe_url, sanitize_html

log = logging.getLogger("curation.collectors.mastodon")

#: the visibilities anyone may read; private (followers-only) and direct posts are never taken
VISIBLE = frozenset({"public", "unlisted"})
#: Mastodon ids are decimal snowflakes; Pleroma/Akkoma send base62 flake ids through the same API
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_SHORTCODE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_SHORTCODE_IN_TEXT = re.compile(r":([A-Za-z0-9_]{1,64}):")
# a tag in sanitizer output: attribute values there are always double-quoted with `"` escaped, and text
# never holds a raw `<`, so this splits markup from text exactly
_TAG = re.compile(r'<(?:[^>"]|"[^"]*")*>')
_SPAN = re.compile(r"<(/?)span\b[^>]*>", re.IGNORECASE)
_QUOTE_INLINE = re.compile(r"""<span\b[^>]*\bclass\s*=\s*["'][^"']*\bquote-inline\b[^>]*>""", re.IGNORECASE)
_MEDIA_TYPES = {"image": "image", "gifv": "video", "video": "video", "audio": "audio"}
MAX_MEDIA = 20
MAX_EMOJIS = 100
MAX_URI = 2048
MAX_CONTENT = 200_000
CARD_TEXT = 500


def id_order(status_id: str) -> tuple[int, str]:
    """Sort key of an opaque id: a longer id is newer, equal lengths compare as text (never cast to int)."""
    return len(status_id), status_id


def valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.match(value) is not None


def is_newer(status_id: str, than: str | None) -> bool:
    return than is None or id_order(status_id) > id_order(than)


def newest(*ids: str | None) -> str | None:
    """The newest of some ids (None ignored); None when there is none."""
    present = [i for i in ids if i is not None]
    return max(present, key=id_order) if present else None


@dataclass(frozen=True, slots=True)
class StatusRef:
    """One listed status, read just enough to decide whether to take it; `data` is the raw object."""

    #: the listed status's own id (for a boost: the boost's id, which is what pages and deletes use)
    id: str
    #: the entry key: `uri` of the status shown (for a boost: the original's)
    key: str
    #: changes when the shown status is edited (edited_at) or gains a link card
    mark: str
    #: who posted the listed status (for a boost: the booster)
    account_id: str
    #: a reply to someone else; a reply to oneself (a thread) is not, as in Mastodon's exclude_replies
    reply: bool
    boost: bool
    #: public or unlisted, on both sides of a boost
    visible: bool
    data: dict[str, Any]


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _opt_id(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and _ID.match(value) else None


def _shown(status: Mapping[str, Any]) -> Mapping[str, Any]:
    reblog = status.get("reblog")
    return reblog if isinstance(reblog, dict) else status


def read_status(value: object) -> StatusRef | None:
    """The decision fields of one status, or None when it is malformed (no id, uri or account)."""
    if not isinstance(value, dict):
        return None
    status_id = _opt_id(value, "id")
    account = value.get("account")
    if status_id is None or not isinstance(account, dict) or _opt_id(account, "id") is None:
        return None
    reblog = value.get("reblog")
    if reblog is not None and (not isinstance(reblog, dict) or not isinstance(reblog.get("account"), dict)):
        return None
    shown = _shown(value)
    key = _text(shown, "uri").strip()
    if not key or len(key) > MAX_URI:
        return None
    account_id = _text(account, "id")
    in_reply_to = _opt_id(value, "in_reply_to_id")
    reply_to_account = _opt_id(value, "in_reply_to_account_id")
    card = shown.get("card")
    card_url = _text(card, "url") if isinstance(card, dict) else ""
    visible = _text(value, "visibility") in VISIBLE and _text(shown, "visibility") in VISIBLE
    return StatusRef(
        id=status_id,
        key=key,
        mark=f"{_text(shown, 'edited_at')}|{card_url}",
        account_id=account_id,
        reply=in_reply_to is not None and reply_to_account != account_id,
        boost=shown is not value,
        visible=visible,
        data=value,
    )


def read_statuses(value: object) -> tuple[list[StatusRef], int]:
    """The readable statuses of a list (newest first, as sent) and how many were malformed."""
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON array of statuses, got {type(value).__name__}")
    refs = [read_status(item) for item in value]
    found = [r for r in refs if r is not None]
    return found, len(refs) - len(found)


def wanted(ref: StatusRef, *, replies: bool, boosts: bool) -> bool:
    """Whether a source with these options takes this status."""
    if not ref.visible:
        return False
    if ref.boost and not boosts:
        return False
    return replies or not ref.reply


def convert(statuses: list[dict[str, Any]], local_domain: str) -> tuple[list[Entry], int]:
    """Entries of raw statuses, and how many could not be rendered (run in the collectors' executor)."""
    entries: list[Entry] = []
    failed = 0
    for status in statuses:
        try:
            entries.append(status_entry(status, local_domain))
        except (ValueError, TypeError, KeyError) as e:
            failed += 1
            log.debug("unreadable status %r: %s", status.get("id"), e)
    return entries, failed


def status_entry(status: Mapping[str, Any], local_domain: str) -> Entry:
    """One status as an Entry: a boost becomes the original, credited to its author, with reposted_by.

    Args:
        status: the status object as the API sends it (hostile until rendered here).
        local_domain: the instance's domain, added to the `acct` of its local accounts.
    Raises:
        ValueError: the status lacks what an entry needs (uri, account).
    """
    shown = _shown(status)
    key = _text(shown, "uri").strip()
    account = shown.get("account")
    if not key or not isinstance(account, dict):
        raise ValueError("status without uri or account")
    url = safe_url(_text(shown, "url")) or safe_url(key)
    quote = _quote(shown, local_domain)
    content = _text(shown, "content")[:MAX_CONTENT]
    if quote is not None:
        # the "RE: <link>" fallback Mastodon adds for clients that cannot show quotes: the card shows it
        content = without_quote_inline(content)
    clean = sanitize_html(content, url)
    media = _media(shown.get("media_attachments"))
    card = quote or _card(shown.get("card"))
    warning = plain_text(_text(shown, "spoiler_text")) or None
    html = emojify(clean, _emojis(shown.get("emojis")))
    extra = [card.url] if card is not None else []
    booster = status.get("account")
    return Entry(
        key=key,
        kind=ItemKind.POST,
        url=url,
        title=None,
        text=html_to_text(clean) or None,
        html=html or None,
        content_hash=content_hash(warning, html, [m.url for m in media] + extra),
        author=author_of(account, local_domain),
        media=media,
        published_at=_date(shown.get("created_at")),
        updated_at=_date(shown.get("edited_at")),
        content_warning=warning,
        card=card,
        reposted_by=author_of(booster, local_domain) if shown is not status and isinstance(booster, dict) else None,
    )


def _date(value: object) -> datetime | None:
    return to_utc(value) if isinstance(value, str) else None


def author_of(account: Mapping[str, Any], local_domain: str) -> Author:
    """Display name (shortcodes stay text) or username, `@user@host`, profile URL, static avatar."""
    username = plain_text(_text(account, "username"))
    acct = plain_text(_text(account, "acct")) or username
    handle = None
    if acct:
        handle = f"@{acct}" if "@" in acct or not local_domain else f"@{acct}@{local_domain}"
    return Author(
        name=plain_text(_text(account, "display_name")) or username or None,
        handle=handle,
        url=safe_url(_text(account, "url")),
        avatar=safe_url(_text(account, "avatar_static")) or safe_url(_text(account, "avatar")),
    )


def _media(value: object) -> tuple[Media, ...]:
    if not isinstance(value, list):
        return ()
    found: list[Media] = []
    for attachment in value[:MAX_MEDIA]:
        if not isinstance(attachment, dict):
            continue
        kind = _MEDIA_TYPES.get(_text(attachment, "type"))
        url = safe_url(_text(attachment, "url")) or safe_url(_text(attachment, "remote_url"))
        if kind is None:
            # "unknown": Mastodon could not fetch it; the remote copy is all there is, as a link
            kind, url = "link", safe_url(_text(attachment, "remote_url")) or url
        if url is None or any(m.url == url for m in found):
            continue
        thumbnail = safe_url(_text(attachment, "preview_url"))
        found.append(
            Media(
                type=kind,
                url=url,
                alt=plain_text(_text(attachment, "description")) or None,
                thumbnail=thumbnail if thumbnail != url else None,
            )
        )
    return tuple(found)


def _card(value: object) -> Card | None:
    """A link card from its fields; its `html` (an iframe for video cards) is never read."""
    if not isinstance(value, dict):
        return None
    url = safe_url(_text(value, "url"))
    if url is None:
        return None
    return Card(
        kind="link",
        url=url,
        title=_short(plain_text(_text(value, "title"))),
        description=_short(plain_text(_text(value, "description"))),
        image=safe_url(_text(value, "image")),
    )


def _quote(status: Mapping[str, Any], local_domain: str) -> Card | None:
    """An accepted quote (Mastodon 4.4+ `{state, quoted_status}`) as a quote card; else None."""
    quote = status.get("quote")
    if not isinstance(quote, dict) or quote.get("state") != "accepted":
        return None
    quoted = quote.get("quoted_status")
    if not isinstance(quoted, dict) or _text(quoted, "visibility") not in VISIBLE:
        return None
    url = safe_url(_text(quoted, "url")) or safe_url(_text(quoted, "uri"))
    if url is None:
        return None
    # a quoted post behind a content warning shows its warning, not its text
    warning = plain_text(_text(quoted, "spoiler_text"))
    body = warning or html_to_text(sanitize_html(without_quote_inline(_text(quoted, "content")[:MAX_CONTENT])))
    account = quoted.get("account")
    media = _media(quoted.get("media_attachments"))
    image = next((m.thumbnail or m.url for m in media if m.type == "image"), None)
    return Card(
        kind="quote",
        url=url,
        title=None,
        description=_short(body),
        image=image,
        author=author_of(account, local_domain) if isinstance(account, dict) else None,
    )


def _short(text: str) -> str | None:
    return truncate_title(text, CARD_TEXT) if text else None


def _emojis(value: object) -> dict[str, str]:
    """shortcode -> image URL (the static one: no animation in a news timeline)."""
    if not isinstance(value, list):
        return {}
    found: dict[str, str] = {}
    for emoji in value[:MAX_EMOJIS]:
        if not isinstance(emoji, dict):
            continue
        code = _text(emoji, "shortcode")
        url = safe_url(_text(emoji, "static_url")) or safe_url(_text(emoji, "url"))
        if _SHORTCODE.match(code) and url:
            found[code] = url
    return found


def emojify(clean_html: str, emojis: Mapping[str, str]) -> str:
    """Replace `:shortcode:` in the text of sanitized HTML with small images; attributes are left alone.

    Only text between tags is touched and every inserted piece is built from a checked shortcode and a
    safe_url, escaped, so the result stays as safe as its input.
    """
    if not emojis or ":" not in clean_html:
        return clean_html

    def image(match: re.Match[str]) -> str:
        code = match.group(1)
        url = emojis.get(code)
        if url is None:
            return match.group(0)
        label = f":{code}:"
        src = _html.escape(url, quote=True)
        # width/height keep it text-sized even where no stylesheet sizes img.emoji
        return f'<img class="emoji" src="{src}" alt="{label}" title="{label}" width="20" height="20">'

    parts: list[str] = []
    position = 0
    for tag in _TAG.finditer(clean_html):
        parts.append(_SHORTCODE_IN_TEXT.sub(image, clean_html[position : tag.start()]))
        parts.append(tag.group(0))
        position = tag.end()
    parts.append(_SHORTCODE_IN_TEXT.sub(image, clean_html[position:]))
    return "".join(parts)


def without_quote_inline(content: str) -> str:
    """The content without its `<span class="quote-inline">` fallbacks (nested spans counted)."""
    kept: list[str] = []
    while (match := _QUOTE_INLINE.search(content)) is not None:
        kept.append(content[: match.start()])
        depth, end = 1, len(content)
        for span in _SPAN.finditer(content, match.end()):
            depth += -1 if span.group(1) else 1
            if depth == 0:
                end = span.end()
                break
        content = content[end:]
    kept.append(content)
    return "".join(kept)

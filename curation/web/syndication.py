"""The curated timeline as feeds: GET /events/{slug}/feed.atom (Atom 1.0) and /events/{slug}/feed.json
(JSON Feed 1.1).

Only published items, newest first, the latest FEED_SIZE of them. The documents are built by pure
functions (`atom_feed`, `json_feed`) from the event, its items and the base URL.
"""

from __future__ import annotations

import html
import mimetypes
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from curation.codec import dumps
from curation.models import Event, Item, ItemState, rfc3339
from curation.service import Fil

FEED_SIZE = 50
TITLE_LENGTH = 80
ATOM_TYPE = "application/atom+xml; charset=utf-8"
JSON_FEED_TYPE = "application/feed+json"
ATOM_NS = "http://www.w3.org/2005/Atom"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
#: an empty feed still needs an <updated>; a fixed one keeps its ETag steady
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# what XML 1.0 cannot carry at all, even escaped: C0 controls but tab / LF / CR, surrogates, U+FFFE/F
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACE = re.compile(r"\s+")


def xml_text(value: str | None) -> str:
    """Text XML can hold; ElementTree escapes markup characters, this drops what no escape can save."""
    return _NOT_XML.sub("", value or "")


def permalink(base: str, event: Event, item: Item) -> str:
    return f"{base}/events/{event.slug}#item-{item.id}"


def entry_id(base: str, event: Event, item: Item) -> str:
    """A URN named by the item's permalink: the same across restarts and processes, unique per Fil."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, permalink(base, event, item))}"


def short_title(item: Item) -> str:
    """The item's title, else the start of its text cut at a word, else who wrote it."""
    if item.title and item.title.strip():
        return _SPACE.sub(" ", item.title).strip()
    text = _SPACE.sub(" ", item.text or "").strip()
    if text:
        if len(text) <= TITLE_LENGTH:
            return text
        cut = text[:TITLE_LENGTH].rsplit(" ", 1)[0] or text[:TITLE_LENGTH]
        return cut.rstrip(",;:.-–— ") + "…"
    return author_name(item)


def author_name(item: Item) -> str:
    return item.author.name or item.author.handle or item.source_label or item.source_id


def modified(item: Item) -> datetime:
    """When the item last changed as readers see it: its update time when edited, else its publication."""
    if item.updated_at is not None and item.updated_at > item.published_at:
        return item.updated_at
    return item.published_at


def content_html(item: Item) -> str:
    """The item's (already sanitized) HTML, with what the page shows around it written out as HTML."""
    parts: list[str] = []
    if item.content_warning:
        parts.append(f"<p><strong>{html.escape(item.content_warning)}</strong></p>")
    if item.note:
        parts.append(f"<p><em>{html.escape(item.note)}</em></p>")
    if item.html:
        parts.append(item.html)
    elif item.text:
        parts.append("".join(f"<p>{html.escape(p)}</p>" for p in item.text.split("\n\n") if p.strip()))
    body = item.html or ""
    for media in item.media:
        if media.url in body:
            continue
        src, alt = html.escape(media.url), html.escape(media.alt or "")
        if media.type == "image":
            parts.append(f'<p><img src="{src}" alt="{alt}"></p>')
        elif media.thumbnail:
            parts.append(f'<p><a href="{src}"><img src="{html.escape(media.thumbnail)}" alt="{alt}"></a></p>')
        else:
            parts.append(f'<p><a href="{src}">{alt or src}</a></p>')
    if item.card is not None:
        label = item.card.title or item.card.url
        parts.append(f'<blockquote><p><a href="{html.escape(item.card.url)}">{html.escape(label)}</a></p>')
        if item.card.description:
            parts.append(f"<p>{html.escape(item.card.description)}</p>")
        parts.append("</blockquote>")
    return "".join(parts)


def _mime(url: str) -> str | None:
    path = url.split("?", 1)[0].split("#", 1)[0]
    return mimetypes.guess_type(path, strict=False)[0]


def atom_feed(event: Event, items: Sequence[Item], base: str) -> bytes:
    """An Atom 1.0 document (RFC 4287) of these items, in the order given."""
    page = f"{base}/events/{event.slug}"
    feed = ET.Element("feed", {"xmlns": ATOM_NS, "xml:lang": xml_text(event.language)})
    ET.SubElement(feed, "id").text = xml_text(f"{page}/feed.atom")
    ET.SubElement(feed, "title").text = xml_text(event.title)
    updated = max((modified(i) for i in items), default=EPOCH)
    ET.SubElement(feed, "updated").text = rfc3339(updated)
    ET.SubElement(feed, "link", rel="self", type="application/atom+xml", href=xml_text(f"{page}/feed.atom"))
    ET.SubElement(feed, "link", rel="alternate", type="text/html", href=xml_text(page))
    ET.SubElement(feed, "generator").text = "Fil"
    for item in items:
        entry = ET.SubElement(feed, "entry")
        ET.SubElement(entry, "id").text = entry_id(base, event, item)
        ET.SubElement(entry, "title").text = xml_text(short_title(item))
        ET.SubElement(entry, "updated").text = rfc3339(modified(item))
        ET.SubElement(entry, "published").text = rfc3339(item.published_at)
        author = ET.SubElement(entry, "author")
        ET.SubElement(author, "name").text = xml_text(author_name(item))
        if item.author.url:
            ET.SubElement(author, "uri").text = xml_text(item.author.url)
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=xml_text(permalink(base, event, item)))
        if item.url:
            ET.SubElement(entry, "link", rel="related", href=xml_text(item.url))
        for media in item.media:
            if media.type in ("image", "video", "audio"):
                attributes = {"rel": "enclosure", "href": xml_text(media.url)}
                mime = _mime(media.url)
                if mime:
                    attributes["type"] = mime
                ET.SubElement(entry, "link", attributes)
        ET.SubElement(entry, "category", term=str(item.role))
        if item.key_moment:
            ET.SubElement(entry, "category", term="key-moment", label=xml_text(item.key_moment))
        ET.SubElement(entry, "content", type="html").text = xml_text(content_html(item))
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + document


def json_feed(event: Event, items: Sequence[Item], base: str) -> dict[str, Any]:
    """A JSON Feed 1.1 document of these items, in the order given."""
    page = f"{base}/events/{event.slug}"
    return {
        "version": JSON_FEED_VERSION,
        "title": event.title,
        "home_page_url": page,
        "feed_url": f"{page}/feed.json",
        "language": event.language,
        "items": [_json_item(event, item, base) for item in items],
    }


def _json_item(event: Event, item: Item, base: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": entry_id(base, event, item), "url": permalink(base, event, item)}
    if item.url:
        record["external_url"] = item.url
    if item.title:
        record["title"] = item.title
    record["content_html"] = content_html(item)
    if item.text:
        record["content_text"] = item.text
    images = [m.url for m in item.media if m.type == "image"] + [m.thumbnail for m in item.media if m.thumbnail]
    if images:
        record["image"] = images[0]
    record["date_published"] = rfc3339(item.published_at)
    if modified(item) != item.published_at:
        record["date_modified"] = rfc3339(modified(item))
    author: dict[str, str] = {"name": author_name(item)}
    if item.author.url:
        author["url"] = item.author.url
    if item.author.avatar:
        author["avatar"] = item.author.avatar
    record["authors"] = [author]
    record["tags"] = [str(item.role)] + ([item.key_moment] if item.key_moment else [])
    attachments = []
    for media in item.media:
        mime = _mime(media.url)
        if media.type in ("image", "video", "audio") and mime:  # mime_type is required; no guess, no attachment
            attachment = {"url": media.url, "mime_type": mime}
            if media.alt:
                attachment["title"] = media.alt
            attachments.append(attachment)
    if attachments:
        record["attachments"] = attachments
    return record


async def latest(fil: Fil, event: Event) -> list[Item]:
    """The FEED_SIZE newest published items, newest first (pinned ones take no special place in a feed)."""
    _, items = await fil.store.recent(event.slug, states=[ItemState.PUBLISHED], limit=FEED_SIZE)
    return [i for i in items if i.state is ItemState.PUBLISHED]


async def atom(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    event = fil.reader_event(request.path_params["slug"])
    if event is None:
        return PlainTextResponse(f"no such event: {request.path_params['slug']}"[:200], status_code=404)
    body = atom_feed(event, await latest(fil, event), fil.settings.base_url)
    return Response(body, media_type=ATOM_TYPE)


async def json(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    event = fil.reader_event(request.path_params["slug"])
    if event is None:
        return PlainTextResponse(f"no such event: {request.path_params['slug']}"[:200], status_code=404)
    body = dumps(json_feed(event, await latest(fil, event), fil.settings.base_url))
    # a lone surrogate from an upstream's JSON escape cannot be UTF-8: it becomes "?" rather than a 500
    return Response(body.encode("utf-8", "replace"), media_type=JSON_FEED_TYPE)

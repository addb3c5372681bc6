"""Parse one fetched feed document (RSS 0.9x/1.0/2.0, Atom, JSON Feed) into normalized, sanitized Entries.

Pure and CPU-bound: parse_document runs in a process-pool worker, so it and ParsedFeed stay picklable.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import feedparser
import feedparser.mixin

from curation.collectors import json_input
from curation.errors import ParseError
from curation.models import Author, Entry, ItemKind, Media, rfc3339
from curation.normalize import content_hash, fallback_key, to_utc
from curation.sanitize import escape_text, html_to_text, plain_text, safe_url, sanitize_html


@dataclass(frozen=True)
class ParsedFeed:
    """One parsed document: its entries in document order, plus what WebSub discovery needs."""

    title: str | None
    entries: list[Entry]
    hubs: list[str]
    self_url: str | None
    #: rss | rdf | atom | cdf | jsonfeed | unknown
    format: str


def parse_document(body: bytes, *, content_type: str | None, url: str, source_id: str = "") -> ParsedFeed:
    """Parse a fetched document.

    Args:
        body: the (decompressed) response body.
        content_type: the response Content-Type, charset included, if any.
        url: the final URL after redirects: the base for relative links.
        source_id: for error messages.
    Returns:
        the feed's title, entries, WebSub hubs and self URL.
    Raises:
        ParseError: the document is empty, not a feed at all, or invalid JSON Feed.
    """
    if not body.strip():
        raise ParseError(f"not a feed: {url}: empty document", source_id=source_id)
    if _is_json(body, content_type):
        return _parse_json_feed(body, url=url, source_id=source_id)
    return _parse_xml_feed(body, content_type=content_type, url=url, source_id=source_id)


# --- shared entry assembly --------------------------------------------------------------------

#: above this share of blank or repeated ids, a document's ids are not trusted (UPSTREAMS §7.20)
BAD_ID_RATIO = 0.05
#: entries kept from one document: a feed listing thousands (a flood, or a whole archive) gives its newest ones
MAX_ENTRIES = 500


@dataclass(slots=True)
class _Draft:
    """An entry before its key is settled (keys depend on the whole document)."""

    #: None when the upstream gave no id at all; "" when it gave a blank one
    raw_id: str | None
    url: str | None
    title: str | None
    text: str | None
    html: str | None
    author: Author
    media: tuple[Media, ...]
    published_at: datetime | None
    updated_at: datetime | None
    hash: str = field(default="")

    def __post_init__(self) -> None:
        # the text rather than the sanitized HTML: a sanitizer upgrade that re-serializes markup must not
        # make every stored entry look edited
        self.hash = content_hash(self.title, self.text or self.html, [m.url for m in self.media])


def _assign_keys(drafts: Sequence[_Draft]) -> list[str | None]:
    """One key per draft (None for an exact repeat to drop), unique within the document.

    Keys come from the id, else the link, else a hash of title and content. When more than
    BAD_ID_RATIO of the ids are blank or repeated, the whole document switches to link+published keys.
    A key repeated in one document keeps it for its first occurrence; later ones get "#link" or "#position".
    """
    keys = [_primary_key(d) for d in drafts]
    blank = sum(1 for d in drafts if d.raw_id is not None and not d.raw_id.strip())
    if drafts and (blank + len(keys) - len(set(keys))) / len(drafts) > BAD_ID_RATIO:
        keys = [_link_published_key(d) for d in drafts]
    result: list[str | None] = []
    first: dict[str, _Draft] = {}
    used: set[str] = set(keys)
    for position, (key, draft) in enumerate(zip(keys, drafts, strict=True)):
        earlier = first.get(key)
        if earlier is None:
            first[key] = draft
            result.append(key)
            continue
        if earlier.url == draft.url and earlier.hash == draft.hash:
            result.append(None)  # the same entry twice in one document
            continue
        candidate = f"{key}#{draft.url}" if draft.url and draft.url not in key else f"{key}#{position}"
        while candidate in used:
            candidate = f"{candidate}#{position}"
        used.add(candidate)
        result.append(candidate)
    return result


def _primary_key(draft: _Draft) -> str:
    if draft.raw_id and draft.raw_id.strip():
        return draft.raw_id.strip()
    if draft.url:
        return draft.url
    return fallback_key(draft.title, draft.text)


def _link_published_key(draft: _Draft) -> str:
    if draft.url and draft.published_at:
        return f"{draft.url} {rfc3339(draft.published_at)}"
    if draft.url:
        return draft.url
    return fallback_key(draft.title, draft.text)


def _newest(drafts: Sequence[_Draft]) -> Sequence[_Draft]:
    """At most MAX_ENTRIES drafts, the newest by date (undated ones count as current, as in the runner's
    backfill), in document order."""
    if len(drafts) <= MAX_ENTRIES:
        return drafts
    far_future = datetime.max.replace(tzinfo=UTC)
    ranked = sorted(
        range(len(drafts)), key=lambda i: drafts[i].published_at or drafts[i].updated_at or far_future, reverse=True
    )
    return [drafts[i] for i in sorted(ranked[:MAX_ENTRIES])]


def _finish(drafts: Sequence[_Draft], kind: ItemKind) -> list[Entry]:
    drafts = _newest(drafts)
    entries = []
    for key, draft in zip(_assign_keys(drafts), drafts, strict=True):
        if key is None:
            continue
        entries.append(
            Entry(
                key=key,
                kind=kind,
                url=draft.url,
                title=draft.title,
                text=draft.text,
                html=draft.html,
                content_hash=draft.hash,
                author=draft.author,
                media=draft.media,
                published_at=draft.published_at,
                updated_at=draft.updated_at,
            )
        )
    return entries


# plain text is often labelled text/html (RSS description, media:description, Bluesky profile RSS):
# without a tag or an entity it is text, and its line breaks are worth keeping
_LOOKS_LIKE_HTML = re.compile(r"<[a-zA-Z!/?]|&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);")


def _render(value: str, *, is_html: bool, base: str | None) -> tuple[str | None, str | None]:
    """(text, html) for one piece of content."""
    if is_html and _LOOKS_LIKE_HTML.search(value):
        return html_to_text(value) or None, sanitize_html(value, base) or None
    return plain_text(value) or None, escape_text(value) or None


def _clean_title(value: str | None, *, is_html: bool) -> str | None:
    if not value:
        return None
    return (html_to_text(value) if is_html else plain_text(value)) or None


@dataclass(slots=True)
class _MediaDraft:
    type: str
    url: str
    alt: str | None = None
    thumbnail: str | None = None


class _MediaList:
    """Media of one entry, deduplicated by URL; a repeat only fills in what the first lacked."""

    def __init__(self) -> None:
        self._items: dict[str, _MediaDraft] = {}

    def add(self, media_type: str, url: str | None, alt: str | None = None, thumbnail: str | None = None) -> None:
        if url is None:
            return
        alt = plain_text(alt) if alt else None
        existing = self._items.get(url)
        if existing is None:
            self._items[url] = _MediaDraft(media_type, url, alt or None, thumbnail)
            return
        existing.alt = existing.alt or alt or None
        existing.thumbnail = existing.thumbnail or thumbnail
        if existing.type == "link" and media_type != "link":
            existing.type = media_type

    def attach_thumbnails(self, thumbnails: Iterable[str]) -> None:
        """Loose thumbnails go to the first video/audio/link without one, else they become images."""
        for thumb in thumbnails:
            if thumb in self._items or any(m.thumbnail == thumb for m in self._items.values()):
                continue
            target = next((m for m in self._items.values() if m.type != "image" and not m.thumbnail), None)
            if target is not None:
                target.thumbnail = thumb
            elif not self._items:
                self.add("image", thumb)

    def freeze(self) -> tuple[Media, ...]:
        return tuple(Media(type=m.type, url=m.url, alt=m.alt, thumbnail=m.thumbnail) for m in self._items.values())


_MEDIUMS = {"image": "image", "video": "video", "audio": "audio"}
# YouTube's media:content is a Flash player URL; the video is the watch page
_VIDEO_PLAYER_TYPES = {"application/x-shockwave-flash"}


def _media_type(mime: str | None, medium: str | None, url: str) -> str:
    if medium and medium.lower() in _MEDIUMS:
        return _MEDIUMS[medium.lower()]
    mime = (mime or "").split(";")[0].strip().lower() or (mimetypes.guess_type(urlsplit(url).path)[0] or "")
    major = mime.split("/")[0]
    if major in _MEDIUMS:
        return _MEDIUMS[major]
    if mime in _VIDEO_PLAYER_TYPES:
        return "video"
    return "link"


# --- RSS / Atom / RDF through feedparser --------------------------------------------------------


def _parse_xml_feed(body: bytes, *, content_type: str | None, url: str, source_id: str) -> ParsedFeed:
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    try:
        parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False)
    except ValueError as e:  # feedparser's encoding sniffing: a declared encoding with a NUL or non-ASCII byte
        raise ParseError(f"not a feed: {url}: unreadable character encoding ({e})", source_id=source_id) from None
    version: str = parsed.get("version") or ""
    raw_entries: list[Any] = parsed.get("entries") or []
    if not version and not raw_entries:
        reason = parsed.get("bozo_exception") or "no RSS, Atom or RDF root element"
        raise ParseError(f"not a feed: {url}: {reason}", source_id=source_id)
    feed: Mapping[str, Any] = parsed.get("feed") or {}
    links: list[Mapping[str, Any]] = feed.get("links") or []
    social = _is_social_feed(feed, raw_entries)
    feed_author = _social_feed_author(feed, url) if social else _author_of(feed, url)
    drafts = [_feedparser_draft(entry, url=url, feed_author=feed_author, social=social) for entry in raw_entries]
    return ParsedFeed(
        title=_clean_title(feed.get("title"), is_html=_is_html_type(feed.get("title_detail"))),
        entries=_finish(drafts, ItemKind.POST if social else ItemKind.ARTICLE),
        hubs=_dedupe(safe_url(link.get("href"), url) for link in links if link.get("rel") == "hub"),
        self_url=next((safe_url(link.get("href"), url) for link in links if link.get("rel") == "self"), None),
        format=_format_name(version),
    )


def _format_name(version: str) -> str:
    if version in ("rss090", "rss10"):
        return "rdf"
    for prefix in ("rss", "atom", "cdf"):
        if version.startswith(prefix):
            return prefix
    return "unknown"


def _dedupe(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


_HTML_TYPES = {"text/html", "application/xhtml+xml", "html", "xhtml"}


def _is_html_type(detail: Mapping[str, Any] | None) -> bool:
    return detail is not None and str(detail.get("type", "")).lower() in _HTML_TYPES


def _raw(entry: Mapping[str, Any], key: str) -> Any:
    """A value as parsed: FeedParserDict's own lookup aliases some keys (`updated` -> `published`)."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def _feedparser_draft(entry: Mapping[str, Any], *, url: str, feed_author: Author | None, social: bool) -> _Draft:
    base = _entry_base(entry, url)
    link = safe_url(_raw(entry, "link"), base)
    title_detail = entry.get("title_detail")
    text, html = None, None
    content = _best_content(entry)
    if content is not None:
        value, is_html, content_base = content
        text, html = _render(value, is_html=is_html, base=content_base or base)
    author = _author_of(entry, base)
    if social and link and author.handle is None:
        author = _merge_authors(author, _author_from_post_link(link))
    author = _merge_authors(author, feed_author)
    # feedparser aliases `updated` to `published` on access: read the raw dict, never the alias
    published = to_utc(_raw(entry, "published_parsed")) or to_utc(_raw(entry, "published"))
    updated = to_utc(_raw(entry, "updated_parsed")) or to_utc(_raw(entry, "updated"))
    return _Draft(
        raw_id=_raw(entry, "id"),
        url=link,
        title=_clean_title(entry.get("title"), is_html=_is_html_type(title_detail)),
        text=text,
        html=html,
        author=author,
        media=_feedparser_media(entry, base=base, link=link),
        published_at=published,
        updated_at=updated,
    )


def _entry_base(entry: Mapping[str, Any], url: str) -> str:
    """The xml:base in force at the entry (feedparser records it on each text construct)."""
    for key in ("title_detail", "summary_detail"):
        detail = entry.get(key)
        if detail and detail.get("base"):
            return str(detail["base"])
    for content in entry.get("content") or ():
        if content.get("base"):
            return str(content["base"])
    return url


def _best_content(entry: Mapping[str, Any]) -> tuple[str, bool, str | None] | None:
    """(value, is_html, base) of the fullest content: HTML content over plain, content over summary."""
    best: tuple[str, bool, str | None] | None = None
    for content in entry.get("content") or ():
        value = content.get("value") or ""
        if not value.strip():
            continue
        candidate = (value, _is_html_type(content), content.get("base"))
        if best is None or (candidate[1], len(candidate[0])) > (best[1], len(best[0])):
            best = candidate
    if best is not None:
        return best
    detail = entry.get("summary_detail")
    if detail and (detail.get("value") or "").strip():
        return detail["value"], _is_html_type(detail), detail.get("base")
    summary = entry.get("summary")
    if summary and summary.strip():
        return summary, True, None
    return None


def _feedparser_media(entry: Mapping[str, Any], *, base: str, link: str | None) -> tuple[Media, ...]:
    media = _MediaList()
    attached: set[str] = set()
    for content in entry.get("media_content") or ():
        src = safe_url(content.get("url"), base)
        if src is None:
            continue
        kind = _media_type(content.get("type"), content.get("medium"), src)
        if (content.get("type") or "").lower() in _VIDEO_PLAYER_TYPES and link:
            src = link
        thumb_attrs = content.get(_THUMBNAIL_KEY) or {}
        thumb = safe_url(thumb_attrs.get("url"), base)
        if thumb:
            attached.add(thumb)
        media.add(kind, src, content.get(_ALT_KEY), thumb)
    for enclosure in entry.get("links") or ():
        if enclosure.get("rel") == "enclosure":
            href = safe_url(enclosure.get("href"), base)
            if href:
                media.add(_media_type(enclosure.get("type"), None, href), href)
    loose = (safe_url(t.get("url"), base) for t in entry.get("media_thumbnail") or ())
    media.attach_thumbnails(t for t in loose if t and t not in attached)
    return media.freeze()


def _author_of(context: Mapping[str, Any], base: str) -> Author:
    detail = context.get("author_detail") or {}
    name = detail.get("name") or context.get("author")
    return Author(
        name=(plain_text(name) or None) if isinstance(name, str) else None,
        url=safe_url(detail.get("href"), base),
    )


def _merge_authors(primary: Author, fallback: Author | None) -> Author:
    if fallback is None:
        return primary
    return Author(
        name=primary.name or fallback.name,
        handle=primary.handle or fallback.handle,
        url=primary.url or fallback.url,
        avatar=primary.avatar or fallback.avatar,
    )


# --- Mastodon and Bluesky profile RSS -----------------------------------------------------------

_FEDIVERSE_HANDLE = re.compile(r"@[\w.\-]+@[\w.\-]+\.[a-z]{2,}", re.IGNORECASE)
_MASTODON_POST = re.compile(r"^/@([\w.\-]+)(?:/|$)")
_BLUESKY_PROFILE = re.compile(r"^/profile/([^/]+)")


def _is_social_feed(feed: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> bool:
    """Mastodon or Bluesky profile RSS (or any feed whose items all lack titles): posts, not articles."""
    if str(feed.get("generator") or "").lower().startswith("mastodon"):
        return True
    if _host(feed.get("link")) == "bsky.app" or any(_host(e.get("link")) == "bsky.app" for e in entries):
        return True
    return bool(entries) and not any((e.get("title") or "").strip() for e in entries)


def _host(url: object) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        return (urlsplit(url).hostname or "").lower() or None
    except ValueError:
        return None


def _social_feed_author(feed: Mapping[str, Any], url: str) -> Author | None:
    """The account a profile feed belongs to (None for a hashtag feed: its posts have many authors)."""
    link = safe_url(feed.get("link"), url)
    title = plain_text(str(feed.get("title") or "")) or None
    image = feed.get("image") or {}
    avatar = safe_url(image.get("href") or image.get("url") or feed.get("webfeeds_icon"), url)
    path = urlsplit(link).path if link else ""
    if _host(link) == "bsky.app" and (match := _BLUESKY_PROFILE.match(path)):
        # channel title is "@handle - Display Name" (or "@handle")
        at_handle, _, name = (title or f"@{match.group(1)}").partition(" - ")
        return Author(
            name=name or None, handle=at_handle if at_handle.startswith("@") else None, url=link, avatar=avatar
        )
    if not path.startswith("/@"):
        return None
    found = _FEDIVERSE_HANDLE.search(str(feed.get("subtitle") or ""))
    handle = found.group(0) if found else _author_from_post_link(link).handle if link else None
    return Author(name=title, handle=handle, url=link, avatar=avatar)


def _author_from_post_link(link: str) -> Author:
    """Mastodon post URLs name their author: https://host/@user/123 -> @user@host."""
    parts = urlsplit(link)
    match = _MASTODON_POST.match(parts.path)
    if not match or not parts.hostname:
        return Author()
    user = match.group(1)
    return Author(handle=f"@{user}@{parts.hostname}", url=f"{parts.scheme}://{parts.netloc}/@{user}")


# --- feedparser adjustments ----------------------------------------------------------------------

_ALT_KEY = "fil_alt"
_DROPPED_KEY = "fil_dropped"
_THUMBNAIL_KEY = "fil_thumbnail"


def _install_feedparser_fixes() -> None:
    """Three corrections to feedparser 6, made once per process on its parser mixin.

    1. Ids stay as the publisher wrote them: feedparser resolves a guid (isPermaLink defaults to true)
       and an atom:id against the document URL, so a relative id would change with the feed's URL and
       every entry would come back as new after a move.
    2. A media:description or media:thumbnail nested in media:content stays with that media: feedparser
       treats every media:description as the entry's description, so a Mastodon post with alt text came
       out with the alt text as its content. Elsewhere a media:description only stands in for a missing
       description (YouTube's media:group); after a real one (an image caption) it is dropped.
    3. A character reference to no character (`&#xD800;`, a lone surrogate; `&#x110000;`, past Unicode) reads
       as U+FFFD: feedparser's fallback parser raised UnicodeEncodeError or ValueError on it, out of parse().
    """
    mixin: Any = feedparser.mixin._FeedParserMixin
    if getattr(mixin, "_fil_fixes", False):
        return
    mixin.can_be_relative_uri = set(mixin.can_be_relative_uri) - {"id"}
    start_content = mixin._start_media_content
    start_description = mixin._start_media_description
    end_description = mixin._end_media_description
    start_thumbnail = mixin._start_media_thumbnail
    handle_charref = mixin.handle_charref

    def _start_media_content(self: Any, attrs: dict[str, Any]) -> None:
        start_content(self, attrs)
        self._fil_in_media_content = True

    def _end_media_content(self: Any) -> None:
        self._fil_in_media_content = False

    def _start_media_description(self: Any, attrs: dict[str, Any]) -> None:
        context = self._get_context()
        if getattr(self, "_fil_in_media_content", False):
            self._fil_description_mode = "alt"
            self.push(_ALT_KEY, 0)
        elif any(key in context for key in ("summary", "content", "subtitle")):
            self._fil_description_mode = "drop"
            self.push(_DROPPED_KEY, 0)
        else:
            self._fil_description_mode = "description"
            start_description(self, attrs)

    def _end_media_description(self: Any) -> None:
        mode = getattr(self, "_fil_description_mode", "description")
        self._fil_description_mode = "description"
        if mode == "description":
            end_description(self)
        elif mode == "drop":
            self.pop(_DROPPED_KEY)
        else:
            value = self.pop(_ALT_KEY)
            media = self._get_context().get("media_content")
            if value and media:
                media[-1][_ALT_KEY] = _unescape_loose(value)

    def _start_media_thumbnail(self: Any, attrs: dict[str, Any]) -> None:
        start_thumbnail(self, attrs)
        media = self._get_context().get("media_content")
        if getattr(self, "_fil_in_media_content", False) and media:
            media[-1][_THUMBNAIL_KEY] = attrs  # the same dict feedparser fills with the url

    def _handle_charref(self: Any, ref: str) -> None:
        lowered = ref.lower()
        try:
            code = int(lowered[1:], 16) if lowered.startswith("x") else int(lowered)
        except ValueError:  # thousands of digits
            code = -1
        if not 0 <= code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            ref = "xfffd"
        handle_charref(self, ref)

    mixin.handle_charref = _handle_charref
    mixin._start_media_content = _start_media_content
    mixin._end_media_content = _end_media_content
    mixin._start_media_description = _start_media_description
    mixin._end_media_description = _end_media_description
    mixin._start_media_thumbnail = _start_media_thumbnail
    mixin._fil_fixes = True


def _unescape_loose(value: str) -> str:
    # the strict (SAX) parser hands over decoded text; the fallback parser may leave entities in
    return html_to_text(value) if "&" in value or "<" in value else value


_install_feedparser_fixes()


# --- JSON Feed 1.0 / 1.1 ------------------------------------------------------------------------

_JSON_TYPES = {"application/feed+json", "application/json"}


def _is_json(body: bytes, content_type: str | None) -> bool:
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"{":
        return True
    if start == b"<":
        return False
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime in _JSON_TYPES or mime.endswith("+json")


def _parse_json_feed(body: bytes, *, url: str, source_id: str) -> ParsedFeed:
    try:
        try:
            data = json_input.loads(body)
        except UnicodeDecodeError:
            data = json_input.loads(body.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise ParseError(f"not a feed: {url}: invalid JSON: {exc}", source_id=source_id) from None
    if not isinstance(data, dict):
        raise ParseError(f"not a feed: {url}: JSON document is not an object", source_id=source_id)
    version = data.get("version")
    items = data.get("items")
    if not (isinstance(version, str) and "jsonfeed.org/version/" in version) and not isinstance(items, list):
        raise ParseError(f"not a feed: {url}: JSON without a JSON Feed version or items", source_id=source_id)
    feed_url = safe_url(_str(data.get("feed_url")), url)
    base = safe_url(_str(data.get("home_page_url")), url) or url
    feed_author = _json_author(data, base)
    drafts = [
        draft
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and (draft := _json_draft(item, base=base, feed_author=feed_author))
    ]
    untitled = bool(drafts) and all(d.title is None for d in drafts)
    hubs = data.get("hubs")
    hubs = hubs if isinstance(hubs, list) else []
    return ParsedFeed(
        title=_clean_title(_str(data.get("title")), is_html=False),
        entries=_finish(drafts, ItemKind.POST if untitled else ItemKind.ARTICLE),
        hubs=_dedupe(safe_url(_str(h.get("url")), url) for h in hubs if isinstance(h, dict)),
        self_url=feed_url,
        format="jsonfeed",
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _json_id(value: object) -> str | None:
    """JSON Feed ids must be strings; numbers are coerced (some publishers emit them), anything else is no id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _json_draft(item: Mapping[str, Any], *, base: str, feed_author: Author | None) -> _Draft | None:
    raw_id = _json_id(item.get("id"))
    if raw_id is None:
        return None
    link = safe_url(_str(item.get("url")), base) or safe_url(_str(item.get("external_url")), base)
    content_base = link or base
    text, html = None, None
    content_html, content_text = _str(item.get("content_html")), _str(item.get("content_text"))
    summary = _str(item.get("summary"))
    if content_html and content_html.strip():
        text, html = _render(content_html, is_html=True, base=content_base)
    elif content_text and content_text.strip():
        text, html = _render(content_text, is_html=False, base=content_base)
    elif summary and summary.strip():
        text, html = _render(summary, is_html=False, base=content_base)
    media = _MediaList()
    media.add("image", safe_url(_str(item.get("image")), content_base))
    attachments = item.get("attachments")
    for attachment in attachments if isinstance(attachments, list) else ():
        if isinstance(attachment, dict) and (href := safe_url(_str(attachment.get("url")), content_base)):
            media.add(_media_type(_str(attachment.get("mime_type")), None, href), href, _str(attachment.get("title")))
    if not media.freeze():
        media.add("image", safe_url(_str(item.get("banner_image")), content_base))
    return _Draft(
        raw_id=raw_id,
        url=link,
        title=_clean_title(_str(item.get("title")), is_html=False),
        text=text,
        html=html,
        author=_merge_authors(_json_author(item, base) or Author(), feed_author),
        media=media.freeze(),
        published_at=to_utc(_str(item.get("date_published"))),
        updated_at=to_utc(_str(item.get("date_modified"))),
    )


def _json_author(context: Mapping[str, Any], base: str) -> Author | None:
    """The first usable author of `authors` (1.1), else the deprecated `author` (1.0)."""
    authors = context.get("authors")
    candidates = list(authors) if isinstance(authors, list) else []
    candidates.append(context.get("author"))
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        name = plain_text(_str(candidate.get("name")) or "")
        author = Author(
            name=name or None,
            url=safe_url(_str(candidate.get("url")), base),
            avatar=safe_url(_str(candidate.get("avatar")), base),
        )
        if author != Author():
            return author
    return None

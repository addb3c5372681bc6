"""AT Protocol posts to entries: facets to HTML, embeds to media and cards, self-labels to content warnings.

Pure functions over decoded JSON (AppView postViews, raw post records, Jetstream frames); nothing here does I/O.
"""

from __future__ import annotations

import html as _html
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard
from urllib.parse import quote

from curation.collectors import json_input
from curation.models import Author, Card, Entry, ItemKind, Media
from curation.normalize import content_hash, to_utc
from curation.sanitize import plain_text, safe_url, sanitize_html

BSKY_WEB = "https://bsky.app"
IMAGE_CDN = "https://cdn.bsky.app/img"
VIDEO_CDN = "https://video.bsky.app/watch"
POST = "app.bsky.feed.post"
#: an account label asking clients to hide the account from logged-out viewers (bsky.app's RSS answers 403)
NO_UNAUTHENTICATED = "!no-unauthenticated"

#: self-labels (and moderation labels) that put a post behind a content warning, with the words readers see
LABEL_WARNINGS: dict[str, str] = {
    "porn": "Adult content",
    "sexual": "Sexually suggestive",
    "nudity": "Nudity",
    "graphic-media": "Graphic media",
    "gore": "Graphic media",
}

DID = re.compile(r"^did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}$")
HANDLE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
# CIDs and record keys end up in URL paths: anything else is refused rather than escaped
_CID = re.compile(r"^[A-Za-z0-9]{8,200}$")
_RKEY = re.compile(r"^[A-Za-z0-9._:~-]{1,512}$")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_CARD_TEXT = 1000
#: posts read from one page (the lexicon's largest `limit`): an AppView sending more is flooding, the rest is dropped
MAX_PAGE_POSTS = 100


class MalformedPost(ValueError):
    """A post (view, record or frame) that lacks what an entry needs; the caller counts it and moves on."""


# -- identities --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """Who wrote a post: the AppView's profile view, reduced to what an entry shows."""

    did: str
    handle: str | None = None
    name: str | None = None
    avatar: str | None = None
    labels: tuple[str, ...] = ()

    @property
    def hidden(self) -> bool:
        """The account asked not to be shown to logged-out viewers (Fil's pages are public)."""
        return NO_UNAUTHENTICATED in self.labels

    @property
    def ref(self) -> str:
        """What bsky.app URLs name the account by: the handle, or the DID when the handle is unusable."""
        return self.handle or self.did

    def author(self) -> Author:
        return Author(
            name=(plain_text(self.name) or None) if self.name else None,
            handle=f"@{self.handle}" if self.handle else None,
            url=profile_url(self.ref),
            avatar=safe_url(self.avatar),
        )

    def to_memo(self) -> dict[str, Any]:
        return {"did": self.did, "handle": self.handle, "name": self.name, "avatar": self.avatar, "labels": self.labels}

    @classmethod
    def from_memo(cls, memo: object) -> Profile | None:
        return profile_from_view(memo)


def profile_from_view(view: object) -> Profile | None:
    """A Profile from a profileView / profileViewBasic / postView author; None without a valid DID."""
    if not isinstance(view, Mapping):
        return None
    did = view.get("did")
    if not isinstance(did, str) or not DID.match(did):
        return None
    handle = view.get("handle")
    if not isinstance(handle, str) or not HANDLE.match(handle) or handle.lower() == "handle.invalid":
        handle = None
    name = view.get("displayName", view.get("name"))
    avatar = view.get("avatar")
    return Profile(
        did=did,
        handle=handle.lower() if handle else None,
        name=name if isinstance(name, str) and name.strip() else None,
        avatar=avatar if isinstance(avatar, str) else None,
        labels=tuple(_label_values(view.get("labels"))),
    )


def parse_at_uri(uri: object) -> tuple[str, str, str] | None:
    """(did, collection, rkey) of an `at://did/collection/rkey` URI; None for anything else."""
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    parts = uri[len("at://") :].split("/")
    if len(parts) != 3 or not DID.match(parts[0]) or not _RKEY.match(parts[2]) or not parts[1]:
        return None
    return parts[0], parts[1], parts[2]


def post_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST}/{rkey}"


def profile_url(handle_or_did: str) -> str:
    return f"{BSKY_WEB}/profile/{handle_or_did}"


def post_url(handle_or_did: str, rkey: str) -> str:
    return f"{BSKY_WEB}/profile/{handle_or_did}/post/{rkey}"


# -- rich text ---------------------------------------------------------------------------------------------


def render_text(text: str, facets: object) -> str:
    """Post text as sanitized HTML, facets made links.

    Facet offsets are UTF-8 byte offsets (end exclusive). Facets out of range, overlapping an earlier one, cutting a
    character in two, or with no usable feature are dropped: their text stays, as plain text.
    """
    data = text.encode("utf-8")
    parts: list[str] = []
    position = 0
    for start, end, href in _facet_spans(data, facets):
        parts.append(_escape(data[position:start].decode("utf-8")))
        parts.append(f'<a href="{_html.escape(href, quote=True)}">{_escape(data[start:end].decode("utf-8"))}</a>')
        position = end
    parts.append(_escape(data[position:].decode("utf-8")))
    return sanitize_html(_paragraphs("".join(parts)))


def _facet_spans(data: bytes, facets: object) -> list[tuple[int, int, str]]:
    if not isinstance(facets, list):
        return []
    candidates: list[tuple[int, int, str]] = []
    for facet in facets:
        if not isinstance(facet, Mapping):
            continue
        index = facet.get("index")
        if not isinstance(index, Mapping):
            continue
        start, end = index.get("byteStart"), index.get("byteEnd")
        if not _is_int(start) or not _is_int(end) or not 0 <= start < end <= len(data):
            continue
        if _mid_character(data, start) or _mid_character(data, end):
            continue
        href = _feature_href(facet.get("features"))
        if href is not None:
            candidates.append((start, end, href))
    candidates.sort(key=lambda span: (span[0], span[1]))
    spans: list[tuple[int, int, str]] = []
    for span in candidates:
        if spans and span[0] < spans[-1][1]:
            continue  # overlaps the span before it: the earlier one wins
        spans.append(span)
    return spans


def _mid_character(data: bytes, offset: int) -> bool:
    """Whether a byte offset falls inside a multi-byte UTF-8 character (on a continuation byte)."""
    return offset < len(data) and 0x80 <= data[offset] <= 0xBF


def _feature_href(features: object) -> str | None:
    if not isinstance(features, list):
        return None
    for feature in features:
        if not isinstance(feature, Mapping):
            continue
        kind = feature.get("$type")
        if kind == "app.bsky.richtext.facet#link":
            href = safe_url(feature.get("uri") if isinstance(feature.get("uri"), str) else None)
        elif kind == "app.bsky.richtext.facet#mention":
            did = feature.get("did")
            href = profile_url(did) if isinstance(did, str) and DID.match(did) else None
        elif kind == "app.bsky.richtext.facet#tag":
            tag = feature.get("tag")
            tag = tag.lstrip("#") if isinstance(tag, str) else ""
            href = (
                f"{BSKY_WEB}/hashtag/{quote(tag, safe='')}" if tag and len(tag) <= 640 and tag.isprintable() else None
            )
        else:
            continue
        if href is not None:
            return href
    return None


def _escape(text: str) -> str:
    return _html.escape(_CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n")), quote=True)


def _paragraphs(markup: str) -> str:
    paragraphs = (p.strip() for p in _PARAGRAPH_BREAK.split(markup.strip()))
    return "".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in paragraphs if p)


# -- labels ------------------------------------------------------------------------------------------------


def _label_values(labels: object) -> Iterable[str]:
    """Label values from a label list (`[{val, neg?}]`) or a record's selfLabels (`{values: [{val}]}`)."""
    if isinstance(labels, Mapping):
        labels = labels.get("values")
    if not isinstance(labels, list):
        return
    for label in labels:
        if isinstance(label, Mapping) and isinstance(label.get("val"), str) and label.get("neg") is not True:
            yield label["val"]


def content_warning(*label_lists: object) -> str | None:
    """The reader-facing warning for a post's labels (self-labels and moderation labels), or None."""
    words: list[str] = []
    for labels in label_lists:
        for value in _label_values(labels):
            word = LABEL_WARNINGS.get(value)
            if word and word not in words:
                words.append(word)
    return ", ".join(words) or None


# -- embeds ------------------------------------------------------------------------------------------------


def blob_cid(blob: object) -> str | None:
    """The CID of a blob reference: `{"$type":"blob","ref":{"$link":CID}}` or the legacy `{"cid": CID}`."""
    if not isinstance(blob, Mapping):
        return None
    ref = blob.get("ref")
    cid = ref.get("$link") if isinstance(ref, Mapping) else blob.get("cid")
    return cid if isinstance(cid, str) and _CID.match(cid) else None


def image_urls(did: str, cid: str) -> tuple[str, str]:
    """(fullsize, thumbnail) CDN URLs of an image blob, in the form the AppView itself serves."""
    return f"{IMAGE_CDN}/feed_fullsize/plain/{did}/{cid}@jpeg", f"{IMAGE_CDN}/feed_thumbnail/plain/{did}/{cid}@jpeg"


def video_urls(did: str, cid: str) -> tuple[str, str]:
    """(HLS playlist, thumbnail) URLs of a video blob, in the form the AppView itself serves."""
    base = f"{VIDEO_CDN}/{quote(did, safe='')}/{cid}"
    return f"{base}/playlist.m3u8", f"{base}/thumbnail.jpg"


def _text(value: object, limit: int = _MAX_CARD_TEXT) -> str | None:
    if not isinstance(value, str):
        return None
    text = plain_text(value)
    return (text[: limit - 1] + "…" if len(text) > limit else text) or None


def _type(embed: Mapping[str, Any]) -> str:
    kind = embed.get("$type")
    return kind if isinstance(kind, str) else ""


def view_embed(embed: object, post_link: str) -> tuple[list[Media], Card | None]:
    """Media and card from a postView's hydrated `embed` (images#view, video#view, external#view, record#view,
    recordWithMedia#view, gallery#view); unknown types give nothing."""
    if not isinstance(embed, Mapping):
        return [], None
    kind = _type(embed)
    if kind == "app.bsky.embed.recordWithMedia#view":
        media, _ = view_embed(embed.get("media"), post_link)
        return media, _view_record_card(embed.get("record"))
    if kind == "app.bsky.embed.record#view":
        return [], _view_record_card(embed)
    if kind == "app.bsky.embed.external#view":
        return [], _link_card(embed.get("external"), image=lambda ext: safe_url(_str(ext.get("thumb"))))
    if kind in ("app.bsky.embed.images#view", "app.bsky.embed.gallery#view"):
        items = embed.get("images") if kind.startswith("app.bsky.embed.images") else embed.get("items")
        media = []
        for image in items if isinstance(items, list) else []:
            if not isinstance(image, Mapping):
                continue
            url = safe_url(_str(image.get("fullsize")))
            if url:
                thumb = safe_url(_str(image.get("thumb", image.get("thumbnail"))))
                media.append(Media("image", url, alt=_text(image.get("alt")), thumbnail=thumb))
        return media, None
    if kind == "app.bsky.embed.video#view":
        url = safe_url(_str(embed.get("playlist"))) or post_link
        thumb = safe_url(_str(embed.get("thumbnail")))
        return [Media("video", url, alt=_text(embed.get("alt")), thumbnail=thumb)], None
    return [], None


def record_embed(
    embed: object, did: str, post_link: str, quoted: Mapping[str, Any] | None = None
) -> tuple[list[Media], Card | None]:
    """Media and card from a raw record's `embed` (blobs, not URLs: Jetstream); `quoted` is the quoted post's
    postView when the caller could fetch it (else the card is its URL alone)."""
    if not isinstance(embed, Mapping):
        return [], None
    kind = _type(embed)
    if kind == "app.bsky.embed.recordWithMedia":
        media, _ = record_embed(embed.get("media"), did, post_link)
        return media, record_embed(embed.get("record"), did, post_link, quoted)[1]
    if kind == "app.bsky.embed.record":
        ref = embed.get("record")
        uri = ref.get("uri") if isinstance(ref, Mapping) else None
        if quoted is not None and quoted.get("uri") == uri:
            return [], _view_record_card(quoted)
        return [], _bare_record_card(uri)
    if kind == "app.bsky.embed.external":

        def thumb(external: Mapping[str, Any]) -> str | None:
            cid = blob_cid(external.get("thumb"))
            return image_urls(did, cid)[1] if cid else None

        return [], _link_card(embed.get("external"), image=thumb)
    if kind in ("app.bsky.embed.images", "app.bsky.embed.gallery"):
        items = embed.get("images") if kind == "app.bsky.embed.images" else embed.get("items")
        media = []
        for image in items if isinstance(items, list) else []:
            cid = blob_cid(image.get("image")) if isinstance(image, Mapping) else None
            if cid and isinstance(image, Mapping):
                fullsize, thumbnail = image_urls(did, cid)
                media.append(Media("image", fullsize, alt=_text(image.get("alt")), thumbnail=thumbnail))
        return media, None
    if kind == "app.bsky.embed.video":
        cid = blob_cid(embed.get("video"))
        if cid is None:
            return [], None
        playlist, thumbnail = video_urls(did, cid)
        return [Media("video", playlist, alt=_text(embed.get("alt")), thumbnail=thumbnail)], None
    return [], None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _link_card(external: object, *, image: Callable[[Mapping[str, Any]], str | None]) -> Card | None:
    if not isinstance(external, Mapping):
        return None
    url = safe_url(_str(external.get("uri")))
    if url is None:
        return None
    return Card(
        "link", url, title=_text(external.get("title"), 300), description=_text(external.get("description")),
        image=image(external),
    )  # fmt: skip


def _view_record_card(view: object) -> Card | None:
    """A card for record#view's `record` (viewRecord, viewNotFound, viewBlocked, generatorView, listView...),
    or for a plain postView (a quoted post fetched with getPosts)."""
    if not isinstance(view, Mapping):
        return None
    inner = view.get("record")
    if _type(view) in ("app.bsky.embed.record#view", "") and isinstance(inner, Mapping) and "uri" in inner:
        view = inner  # the record#view wrapper (its $type is often left out inside recordWithMedia#view)
    kind = _type(view)
    parsed = parse_at_uri(view.get("uri"))
    if parsed is None:
        return None
    did, collection, rkey = parsed
    if kind.endswith("#generatorView") or collection == "app.bsky.feed.generator":
        url = f"{profile_url(did)}/feed/{rkey}"
        return Card("link", url, title=_text(view.get("displayName"), 300), description=_text(view.get("description")))
    if kind.endswith("#listView") or collection == "app.bsky.graph.list":
        url = f"{profile_url(did)}/lists/{rkey}"
        return Card("link", url, title=_text(view.get("name"), 300), description=_text(view.get("description")))
    if collection != POST:
        return None
    author = profile_from_view(view.get("author"))
    if author is not None and author.did != did:
        author = None
    value = view.get("value", view.get("record"))
    if author is None or author.hidden or not isinstance(value, Mapping):
        return _bare_record_card(view.get("uri"))  # not found, blocked, detached, or not for logged-out eyes
    image = None
    for embed in _list(view.get("embeds")) or ([view["embed"]] if isinstance(view.get("embed"), Mapping) else []):
        media, _ = view_embed(embed, post_url(author.ref, rkey))
        image = next((m.thumbnail or m.url for m in media if m.type == "image"), None)
        if image:
            break
    return Card(
        "quote", post_url(author.ref, rkey), description=_text(value.get("text")), image=image,
        author=author.author(),
    )  # fmt: skip


def _bare_record_card(uri: object) -> Card | None:
    parsed = parse_at_uri(uri)
    if parsed is None or parsed[1] != POST:
        return None
    return Card("quote", post_url(parsed[0], parsed[2]))


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _record_keys(record: Mapping[str, Any]) -> list[str]:
    """What a post shows beyond its text, as stable keys that the view and the raw record share (blob CIDs,
    link and quote targets), so the same post hashes the same from the AppView and from Jetstream."""
    keys: list[str] = []

    def walk(embed: object) -> None:
        if not isinstance(embed, Mapping):
            return
        for name in ("media", "record"):
            walk(embed.get(name))
        for name in ("images", "items"):
            for image in _list(embed.get(name)):
                if isinstance(image, Mapping):
                    keys.append(f"{blob_cid(image.get('image'))}:{_str(image.get('alt')) or ''}")
        video = blob_cid(embed.get("video"))
        if video:
            keys.append(video)
        external = embed.get("external")
        if isinstance(external, Mapping):
            keys.append(
                f"{_str(external.get('uri'))}\0{_str(external.get('title'))}\0{_str(external.get('description'))}"
            )
        if isinstance(embed.get("uri"), str):
            keys.append(embed["uri"])

    walk(record.get("embed"))
    return keys


# -- posts -------------------------------------------------------------------------------------------------


def _published(created: object, seen: datetime | None) -> datetime | None:
    """createdAt is the client's clock: a createdAt after the moment the network saw the post is not believed."""
    created_at = to_utc(created) if isinstance(created, str) else None
    if created_at is None:
        return seen
    if seen is not None and created_at > seen:
        return seen
    return created_at


def _entry(
    *,
    uri: str,
    rkey: str,
    record: Mapping[str, Any],
    author: Profile,
    seen: datetime | None,
    media: list[Media],
    card: Card | None,
    warning: str | None,
    updated_at: datetime | None = None,
) -> Entry:
    text = record.get("text", "")
    if not isinstance(text, str):
        raise MalformedPost(f"{uri}: text is not a string")
    html = render_text(text, record.get("facets"))
    return Entry(
        key=uri,
        kind=ItemKind.POST,
        url=post_url(author.ref, rkey),
        title=None,
        text=plain_text(text) or None,
        html=html or None,
        content_hash=content_hash(None, f"{html}\0{warning or ''}", _record_keys(record)),
        author=author.author(),
        media=tuple(media),
        published_at=_published(record.get("createdAt"), seen),
        updated_at=updated_at,
        content_warning=warning,
        card=card,
    )


def is_reply(record: object) -> bool:
    return isinstance(record, Mapping) and record.get("reply") is not None


def entry_from_post_view(view: object) -> Entry:
    """An entry from an AppView postView (getAuthorFeed, searchPosts, getPosts).

    Raises:
        MalformedPost: no usable uri, author or record.
    """
    if not isinstance(view, Mapping):
        raise MalformedPost("post is not an object")
    uri = view.get("uri")
    parsed = parse_at_uri(uri)
    if parsed is None or parsed[1] != POST:
        raise MalformedPost(f"not a post URI: {uri!r}")
    author = profile_from_view(view.get("author"))
    record = view.get("record")
    if author is None or author.did != parsed[0] or not isinstance(record, Mapping):
        raise MalformedPost(f"{uri}: no author (or not the URI's), or no record")
    link = post_url(author.ref, parsed[2])
    media, card = view_embed(view.get("embed"), link)
    if not media and card is None:
        media, card = record_embed(record.get("embed"), author.did, link)
    indexed = view.get("indexedAt")
    return _entry(
        uri=str(uri),
        rkey=parsed[2],
        record=record,
        author=author,
        seen=to_utc(indexed) if isinstance(indexed, str) else None,
        media=media,
        card=card,
        warning=content_warning(record.get("labels"), view.get("labels")),
    )


# -- feed pages (getAuthorFeed, searchPosts) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One page of posts, newest first, cut at the first post already seen."""

    entries: list[Entry] = field(default_factory=list)
    #: the page's new posts, in page order
    uris: list[str] = field(default_factory=list)
    #: a post already seen was met: nothing older is new
    reached_seen: bool = False
    #: the AppView's cursor to the next (older) page
    cursor: str | None = None
    #: what was left out and why: repost, pin, reply, hidden (!no-unauthenticated), malformed
    skipped: dict[str, int] = field(default_factory=dict)
    #: authors of the posts on the page (profile cache)
    profiles: list[Profile] = field(default_factory=list)


def read_feed(body: bytes, *, seen: frozenset[str] = frozenset(), replies: bool = False) -> FeedPage:
    """Parse a getAuthorFeed (`{feed: [feedViewPost]}`) or searchPosts (`{posts: [postView]}`) response.

    Reposts and pinned posts are not the account's new posts and are skipped before the "already seen" test
    (a pinned post leads the page and would end it at once).

    Raises:
        MalformedPost: the body is not such a JSON object.
    """
    try:
        data = json_input.loads(body)
    except ValueError as e:
        raise MalformedPost(f"not JSON: {e}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("feed", data.get("posts")), list):
        raise MalformedPost("expected an object with a `feed` or `posts` list")
    search = "feed" not in data
    skipped: Counter[str] = Counter()
    entries: list[Entry] = []
    uris: list[str] = []
    profiles: dict[str, Profile] = {}
    reached = False
    for item in (data["posts"] if search else data["feed"])[:MAX_PAGE_POSTS]:
        post = item if search else (item.get("post") if isinstance(item, Mapping) else None)
        reason = None if search or not isinstance(item, Mapping) else item.get("reason")
        if isinstance(reason, Mapping):
            reason_type = _type(reason)
            skipped["pin" if reason_type.endswith("#reasonPin") else "repost"] += 1
            continue
        if not isinstance(post, Mapping):
            skipped["malformed"] += 1
            continue
        uri = post.get("uri")
        if isinstance(uri, str) and uri in seen:  # (a list or an object here is not hashable)
            reached = True
            break
        author = profile_from_view(post.get("author"))
        if author is not None:
            profiles.setdefault(author.did, author)
        if is_reply(post.get("record")) and not replies:
            skipped["reply"] += 1
            continue
        if author is not None and author.hidden:
            skipped["hidden"] += 1
            continue
        try:
            entries.append(entry_from_post_view(post))
        except MalformedPost:
            skipped["malformed"] += 1
            continue
        uris.append(str(post["uri"]))
    cursor = data.get("cursor")
    return FeedPage(
        entries=entries,
        uris=uris,
        reached_seen=reached,
        cursor=cursor if isinstance(cursor, str) and cursor else None,
        skipped=dict(skipped),
        profiles=list(profiles.values()),
    )


# -- Jetstream ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JetstreamEvent:
    """One Jetstream v1 event; the commit fields are set for `kind == "commit"` only."""

    did: str
    time_us: int
    kind: str
    operation: str | None = None
    collection: str | None = None
    rkey: str | None = None
    rev: str | None = None
    cid: str | None = None
    record: Mapping[str, Any] | None = None

    @property
    def is_post(self) -> bool:
        return self.kind == "commit" and self.collection == POST

    @property
    def uri(self) -> str:
        return f"at://{self.did}/{self.collection}/{self.rkey}"

    @property
    def dedupe_key(self) -> tuple[str, str, str, str]:
        return (self.did, self.collection or "", self.rkey or "", self.rev or str(self.time_us))


def parse_frame(frame: str | bytes) -> JetstreamEvent:
    """One Jetstream text frame. Unknown fields are ignored.

    Raises:
        MalformedPost: not JSON, or an event without a valid did / time_us, or a commit without its fields.
    """
    try:
        data = json_input.loads(frame)
    except ValueError as e:
        raise MalformedPost(f"not JSON: {e}") from None
    if not isinstance(data, Mapping):
        raise MalformedPost("not a JSON object")
    did, time_us, kind = data.get("did"), data.get("time_us"), data.get("kind")
    if not isinstance(did, str) or not DID.match(did) or not _is_int(time_us) or not isinstance(kind, str):
        raise MalformedPost("event without a valid did, time_us and kind")
    if kind != "commit":
        return JetstreamEvent(did, time_us, kind)
    commit = data.get("commit")
    if not isinstance(commit, Mapping):
        raise MalformedPost(f"commit event of {did} without a commit")
    operation, collection, rkey = commit.get("operation"), commit.get("collection"), commit.get("rkey")
    rev, cid, record = commit.get("rev"), commit.get("cid"), commit.get("record")
    if operation not in ("create", "update", "delete") or not isinstance(collection, str):
        raise MalformedPost(f"commit of {did} with operation {operation!r}")
    if not isinstance(rkey, str) or not _RKEY.match(rkey):
        raise MalformedPost(f"commit of {did} with record key {rkey!r}")
    if operation != "delete" and not isinstance(record, Mapping):
        raise MalformedPost(f"{operation} commit of {did} without a record")
    return JetstreamEvent(
        did,
        time_us,
        kind,
        operation=operation,
        collection=collection,
        rkey=rkey,
        rev=rev if isinstance(rev, str) else None,
        cid=cid if isinstance(cid, str) else None,
        record=record if isinstance(record, Mapping) else None,
    )


def time_of(time_us: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(time_us / 1_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def entry_from_event(event: JetstreamEvent, profile: Profile | None, quoted: Mapping[str, Any] | None = None) -> Entry:
    """An entry from a Jetstream create/update commit of a post; `profile` is its author (fetched by DID, since
    raw records carry no author view), `quoted` the quoted post's postView if it could be fetched.

    Raises:
        MalformedPost: not a post create/update.
    """
    if not event.is_post or event.record is None or event.rkey is None or event.operation == "delete":
        raise MalformedPost(f"{event.uri}: not a post create/update")
    author = profile if profile is not None and profile.did == event.did else Profile(event.did)
    seen = time_of(event.time_us)
    link = post_url(author.ref, event.rkey)
    media, card = record_embed(event.record.get("embed"), event.did, link, quoted)
    return _entry(
        uri=post_uri(event.did, event.rkey),
        rkey=event.rkey,
        record=event.record,
        author=author,
        seen=seen,
        media=media,
        card=card,
        warning=content_warning(event.record.get("labels")),
        updated_at=seen if event.operation == "update" else None,
    )


def quoted_uri(record: Mapping[str, Any] | None) -> str | None:
    """The post a record quotes (record or recordWithMedia embed), if any."""
    embed = record.get("embed") if record is not None else None
    if not isinstance(embed, Mapping):
        return None
    if _type(embed) == "app.bsky.embed.recordWithMedia":
        embed = embed.get("record")
        if not isinstance(embed, Mapping):
            return None
    ref = embed.get("record") if _type(embed) == "app.bsky.embed.record" else None
    uri = ref.get("uri") if isinstance(ref, Mapping) else None
    parsed = parse_at_uri(uri)
    return uri if parsed is not None and parsed[1] == POST and isinstance(uri, str) else None


@dataclass(frozen=True, slots=True)
class EventBatch:
    entries: list[Entry] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def read_events(
    events: list[JetstreamEvent],
    profiles: Mapping[str, Profile],
    quoted: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    replies: bool = False,
) -> EventBatch:
    """Entries (create/update) and deleted keys (delete) from post commits, in order; replies and posts of
    accounts hidden from logged-out viewers are skipped, malformed records counted."""
    quoted = quoted or {}
    batch = EventBatch()
    skipped: Counter[str] = Counter()
    for event in events:
        profile = profiles.get(event.did)
        if not event.is_post:
            skipped["other"] += 1
        elif event.operation == "delete":
            batch.deleted.append(post_uri(event.did, event.rkey or ""))
        elif is_reply(event.record) and not replies:
            skipped["reply"] += 1
        elif profile is not None and profile.hidden:
            skipped["hidden"] += 1
        else:
            try:
                uri = quoted_uri(event.record)
                batch.entries.append(entry_from_event(event, profile, quoted.get(uri) if uri else None))
            except MalformedPost:
                skipped["malformed"] += 1
    batch.skipped.update(skipped)
    return batch


def read_jetstream_lines(body: bytes) -> EventBatch:
    """Every post event of a Jetstream capture (one JSON event per line), for `inspect`; authors stay DIDs."""
    events: list[JetstreamEvent] = []
    malformed = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            events.append(parse_frame(line))
        except MalformedPost:
            malformed += 1
    batch = read_events(events, {}, replies=True)
    if malformed:
        batch.skipped["malformed"] = batch.skipped.get("malformed", 0) + malformed
    return batch


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

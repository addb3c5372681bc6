"""Plain data shared by every layer: sources, events, entries, items, changes, source status.

Values are frozen dataclasses; kinds and roles are StrEnums. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal


class Role(StrEnum):
    EDITORIAL = "editorial"
    JOURNALIST = "journalist"
    ATHLETE = "athlete"
    TEAM = "team"
    OFFICIAL = "official"
    OTHER = "other"


class SourceKind(StrEnum):
    FEED = "feed"
    MASTODON = "mastodon"
    BLUESKY = "bluesky"
    PUSH = "push"


class ItemKind(StrEnum):
    ARTICLE = "article"
    POST = "post"
    UPDATE = "update"


class Moderation(StrEnum):
    AUTO = "auto"
    QUEUE = "queue"


class EventStatus(StrEnum):
    LIVE = "live"
    DRAFT = "draft"
    CLOSED = "closed"


class Order(StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"


class ItemState(StrEnum):
    """Where an item stands; only PUBLISHED items are ever shown to readers."""

    PUBLISHED = "published"
    QUEUED = "queued"
    REJECTED = "rejected"
    HIDDEN = "hidden"
    #: removed upstream (a deleted post); kept so a late copy of it is not taken again
    DELETED = "deleted"
    #: an editor's post waiting for its publication time
    SCHEDULED = "scheduled"


@dataclass(frozen=True, slots=True)
class Source:
    """One upstream, as configured in sources.yaml (shared sources appear once)."""

    id: str
    kind: SourceKind
    role: Role
    label: str
    moderation: Moderation
    url: str | None = None
    interval: float = 60.0
    enabled: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    backfill: int = 20
    #: kind-specific keys (instance, account, hashtag, actor, token_env, secret_env, ...)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: where it was declared, for messages
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One live page: its look, its policy and the ids of its sources."""

    slug: str
    title: str
    language: str = "en"
    timezone: str = "UTC"
    order: Order = Order.NEWEST
    status: EventStatus = EventStatus.LIVE
    keywords_block: tuple[str, ...] = ()
    keywords_allow: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated sources file."""

    path: str
    events: tuple[Event, ...]
    sources: Mapping[str, Source]

    def event(self, slug: str) -> Event | None:
        for event in self.events:
            if event.slug == slug:
                return event
        return None

    def events_of(self, source_id: str) -> list[Event]:
        return [e for e in self.events if source_id in e.sources]


@dataclass(frozen=True, slots=True)
class Author:
    name: str | None = None
    handle: str | None = None
    url: str | None = None
    avatar: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    type: str  # image | video | audio | link
    url: str
    alt: str | None = None
    thumbnail: str | None = None


@dataclass(frozen=True, slots=True)
class Card:
    """A link card or a quoted post, rendered from its fields (never from an upstream's HTML)."""

    kind: str  # link | quote
    url: str
    title: str | None = None
    description: str | None = None
    image: str | None = None
    #: for a quote: who wrote the quoted post
    author: Author | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One upstream entry, normalized and sanitized, not yet placed in any event.

    `key` identifies the entry within its source (guid / atom:id / JSON Feed id, else link,
    else a hash of title and content). `content_hash` covers the content but no dates, so a
    changed hash means an edited entry.
    """

    key: str
    kind: ItemKind
    url: str | None
    title: str | None
    text: str | None
    html: str | None
    content_hash: str
    author: Author = Author()
    media: tuple[Media, ...] = ()
    published_at: datetime | None = None
    updated_at: datetime | None = None
    content_warning: str | None = None
    card: Card | None = None
    #: a boost / repost: the entry is the original post, this is who shared it
    reposted_by: Author | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One entry as it stands in one event's timeline."""

    id: str
    event: str
    source_id: str
    source_kind: str
    source_label: str
    role: Role
    kind: ItemKind
    key: str
    url: str | None
    title: str | None
    text: str | None
    html: str | None
    content_hash: str
    author: Author
    media: tuple[Media, ...]
    published_at: datetime
    updated_at: datetime | None
    first_seen_at: datetime
    #: the time the timeline is ordered by (see README, "Ordering")
    sort_at: datetime
    state: ItemState = ItemState.PUBLISHED
    pinned: bool = False
    key_moment: str | None = None
    content_warning: str | None = None
    note: str | None = None
    card: Card | None = None
    reposted_by: Author | None = None
    version: int = 1
    #: an editor's post as written (the light Markdown), so a correction starts from it; never public
    markdown: str | None = None
    #: content changes seen without a date change; capped so a flapping feed cannot churn forever
    update_count: int = 0

    @property
    def visible(self) -> bool:
        return self.state is ItemState.PUBLISHED

    def replace(self, **changes: Any) -> Item:
        return dataclasses.replace(self, **changes)


ChangeOp = Literal["upsert", "remove"]


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of an event's change log.

    `public` says whether readers get this change; non-public changes (a queued item) still take a
    seq, so readers may see gaps, never losses.
    """

    event: str
    seq: int
    op: ChangeOp
    item_id: str
    item: Item | None
    public: bool
    at: datetime
    #: the reader frame text, encoded once when the change is written (None when not public)
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Item]
    seq: int
    next: str | None


class SourceState(StrEnum):
    OK = "ok"
    PENDING = "pending"
    ERROR = "error"
    BACKING_OFF = "backing off"
    GONE = "gone"
    DISABLED = "disabled"


@dataclass(slots=True)
class SourceStatus:
    """What an operator reads at GET /api/sources; also persisted so restarts keep validators."""

    id: str
    kind: str
    url: str | None = None
    state: SourceState = SourceState.PENDING
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None
    last_poll_at: datetime | None = None
    next_poll_at: datetime | None = None
    error_count: int = 0
    items_seen: int = 0
    #: HTTP validators, stored verbatim and replayed as If-None-Match / If-Modified-Since
    etag: str | None = None
    last_modified: str | None = None
    #: set when every redirect hop was permanent (301/308) and the target parsed
    moved_to: str | None = None
    #: the source finished its first fetch (its backfill); later entries are "live"
    imported: bool = False
    #: a collector's resume point (Mastodon min_id, Jetstream time_us...), opaque to everyone else
    cursor: str | None = None
    #: a collector's small durable notes (a resolved account id, recent ids to re-check...)
    memo: dict[str, Any] = field(default_factory=dict)
    #: what an operator should see beyond the basics (stream state, WebSub push health...)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "url": self.moved_to or self.url,
            "state": str(self.state),
            "last_error": self.last_error,
            "last_error_at": rfc3339(self.last_error_at),
            "last_success_at": rfc3339(self.last_success_at),
            "last_poll_at": rfc3339(self.last_poll_at),
            "next_poll_at": rfc3339(self.next_poll_at),
            "error_count": self.error_count,
            "items_seen": self.items_seen,
            "details": self.details,
        }

    def to_record(self) -> dict[str, Any]:
        """Everything, for the store."""
        record = self.to_json()
        record.update(
            url=self.url,
            etag=self.etag,
            last_modified=self.last_modified,
            moved_to=self.moved_to,
            imported=self.imported,
            cursor=self.cursor,
            memo=self.memo,
        )
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SourceStatus:
        return cls(
            id=record["id"],
            kind=record.get("kind", ""),
            url=record.get("url"),
            state=SourceState(record.get("state", "pending")),
            last_error=record.get("last_error"),
            last_error_at=parse_rfc3339(record.get("last_error_at")),
            last_success_at=parse_rfc3339(record.get("last_success_at")),
            last_poll_at=parse_rfc3339(record.get("last_poll_at")),
            next_poll_at=parse_rfc3339(record.get("next_poll_at")),
            error_count=int(record.get("error_count", 0)),
            items_seen=int(record.get("items_seen", 0)),
            etag=record.get("etag"),
            last_modified=record.get("last_modified"),
            moved_to=record.get("moved_to"),
            imported=bool(record.get("imported", False)),
            cursor=record.get("cursor"),
            memo=dict(record.get("memo") or {}),
            details=dict(record.get("details") or {}),
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, milliseconds kept."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_rfc3339(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)

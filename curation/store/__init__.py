"""The Store seam: items, per-event change logs and source state, behind one Protocol.

`open_store(url)` picks the backend by URL scheme with a lazy import (sqlite:/// or redis://).
Tests in tests/test_store.py are written against the Protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from curation.header import Header
from curation.models import Change, Entry, Event, Item, ItemState, Order, Page, Source, SourceStatus
from curation.posts import Post
from curation.transfer import EventDump

ChangeListener = Callable[[Sequence[Change]], None]

DEFAULT_PAGE = 50
MAX_PAGE = 200
MAX_QUEUE = 1000


@dataclass(frozen=True, slots=True)
class RuntimeSource:
    """A source an editor added to one event from the desk (its sources.yaml keys, as given)."""

    event: str
    source_id: str
    definition: dict[str, Any]
    added_by: str
    added_at: str


@dataclass(frozen=True, slots=True)
class RuntimeEvent:
    """An event's settings kept from the desk: a whole event an admin created there, or the keys an admin
    changed on a sources.yaml event (its status at the end of the day, say). Keys as in sources.yaml."""

    slug: str
    settings: dict[str, Any]
    updated_by: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to which item, when, and the item as it was before (`detail["before"]`)."""

    id: int
    event: str
    seq: int | None
    at: str
    editor: str
    action: str
    item_id: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "seq": self.seq,
            "at": self.at,
            "editor": self.editor,
            "action": self.action,
            "item_id": self.item_id,
            "detail": self.detail,
        }


class Listeners:
    """The listeners of a store: told of each batch of committed changes, on the event loop."""

    _listeners: list[ChangeListener]

    def listen(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        for listener in list(self._listeners):
            listener(changes)


class Store(Protocol):
    async def open(self) -> None:
        """Create or upgrade the schema and start the backend's workers."""
        ...

    async def close(self) -> None: ...

    async def ingest(
        self,
        event: Event,
        source: Source,
        entries: Sequence[Entry],
        *,
        now: datetime | None = None,
        ignore: Sequence[str] = (),
        deleted: Sequence[str] = (),
    ) -> list[Change]:
        """Apply what a collector found to one event, atomically, and append the changes to its log.

        New entries become items, changed ones updates (timeline.updated_item), the rest nothing.
        An entry whose canonical URL is already an item of the event (from any source) is that item.
        `ignore` lists entry keys to remember as seen without taking them (beyond the first backfill).
        `deleted` lists keys of entries deleted upstream: their items leave the timeline for good.
        Returns the changes written, in seq order; listeners are told after the commit.
        """
        ...

    async def page(
        self, event: str, *, limit: int = DEFAULT_PAGE, before: str | None = None, order: Order = Order.NEWEST
    ) -> Page:
        """Published items in display order (pinned first on the first page) and the seq they reflect.

        Raises:
            ValueError: `before` is not a cursor this store made.
        """
        ...

    async def changes_since(self, event: str, since: int, *, limit: int = 1000) -> list[Change] | None:
        """Up to `limit` changes with seq > since, or None when `since` is older than the log keeps
        or newer than its head (the reader must reset)."""
        ...

    async def head(self, event: str) -> int:
        """The seq of the event's latest change (0 for none)."""
        ...

    async def get_item(self, event: str, item_id: str) -> Item | None: ...

    async def act(
        self,
        event: str,
        item_id: str,
        action: str,
        *,
        editor: str,
        label: str | None = None,
        text: str | None = None,
        version: int | None = None,
        now: datetime | None = None,
    ) -> tuple[Item, Change | None]:
        """Apply an editor's action (timeline.acted) atomically, log the change and an audit entry.

        Returns the item as it is now and the change written (None: the action changed nothing).
        Raises:
            ItemNotFound: no such item in the event.
            VersionConflict: `version` is given and is not the item's current version.
            ValueError: an unknown action or an over-long label / note.
        """
        ...

    async def queue(self, event: str, *, limit: int = MAX_PAGE) -> list[Item]:
        """Items held for moderation, newest first."""
        ...

    async def add_runtime_source(
        self, event: str, source_id: str, definition: dict[str, Any], *, editor: str, now: datetime | None = None
    ) -> None:
        """Keep a source added from the desk (audited); the same id again replaces it."""
        ...

    async def remove_runtime_source(
        self, event: str, source_id: str, *, editor: str, now: datetime | None = None
    ) -> bool:
        """Forget a desk-added source (audited); False when there was none."""
        ...

    async def runtime_sources(self) -> list[RuntimeSource]:
        """Every desk-added source, oldest first."""
        ...

    async def put_runtime_event(
        self, slug: str, settings: dict[str, Any], *, editor: str, now: datetime | None = None
    ) -> None:
        """Keep an event's desk settings, replacing earlier ones (audited with the settings before)."""
        ...

    async def runtime_events(self) -> list[RuntimeEvent]:
        """Every event's desk settings, in the order they were first kept."""
        ...

    async def add_post(self, item: Item, *, editor: str, now: datetime | None = None) -> Change:
        """Store an editor's post (posts.new_item) with its change and an audit entry."""
        ...

    async def edit_post(
        self,
        event: str,
        item_id: str,
        post: Post,
        *,
        editor: str,
        version: int | None = None,
        now: datetime | None = None,
    ) -> tuple[Item, Change]:
        """Correct an editor's post in place (posts.corrected). Raises ItemNotFound, VersionConflict."""
        ...

    async def publish_due(self, *, now: datetime | None = None) -> list[Change]:
        """Publish every scheduled post whose time has come, in every event."""
        ...

    async def recent(self, event: str, *, states: Sequence[ItemState], limit: int = MAX_PAGE) -> tuple[int, list[Item]]:
        """The seq and the newest items in these states (any moderation state: editors see them all)."""
        ...

    async def audit(self, event: str, *, limit: int = 200, before: int | None = None) -> list[AuditEntry]:
        """The event's audit trail, newest first; `before` pages by entry id."""
        ...

    async def get_header(self, event: str) -> Header | None:
        """The event's header block, or None when no editor has written one."""
        ...

    async def set_header(self, event: str, header: Header, *, editor: str, now: datetime | None = None) -> Header:
        """Store a new header (its version one more than the stored one) with an audit entry.

        `header.version` is the version the editor saw (0: none yet).
        Raises:
            VersionConflict: the stored header is at another version (`current` is it).
        """
        ...

    async def mute_source(
        self, event: str, source_id: str, until: datetime | None, *, editor: str, now: datetime | None = None
    ) -> None:
        """Hold new items of this source in this event in the queue until `until` (None: unmute now)."""
        ...

    async def mutes(self, event: str, *, now: datetime | None = None) -> dict[str, datetime]:
        """The sources muted in this event now, with when each mute ends."""
        ...

    async def dump_event(self, slug: str) -> EventDump | None:
        """Everything kept of one event, for `app.py export` (None: this store has nothing of it)."""
        ...

    async def load_event(self, dump: EventDump, *, replace: bool = False, editor: str = "import") -> int:
        """Write an exported event atomically (audited as `import`); returns its number of items.

        Raises:
            TransferError: the event already has items or a log here, and `replace` is not set.
        """
        ...

    async def load_statuses(self) -> dict[str, SourceStatus]: ...

    async def save_status(self, status: SourceStatus) -> None: ...

    def listen(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener` on the event loop with every batch of committed changes; returns an unsubscribe."""
        ...


def open_store(url: str, *, log_retention: int = 10000) -> Store:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://:memory:`, or `redis://host:port/db`
    (`rediss://` for TLS; `?prefix=name:` puts the keys under another prefix than `fil:`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"CURATION_STORE={url!r}: expected sqlite:///path.db or redis://host:port/db")
    if scheme == "sqlite":
        from curation.store.sqlite import SQLiteStore

        path = rest[1:] if rest.startswith("/") else rest
        return SQLiteStore(path or ":memory:", log_retention=log_retention)
    if scheme in {"redis", "rediss"}:
        from curation.store.redis import RedisStore

        return RedisStore(url, log_retention=log_retention)
    raise ValueError(
        f"CURATION_STORE={url!r}: unknown store scheme {scheme!r} (use sqlite:///path.db or redis://host:port/db)"
    )

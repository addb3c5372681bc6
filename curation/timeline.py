"""Pure decisions about the timeline: is an entry new, an update or nothing, and where it goes.

No I/O and no clock of its own: every store backend calls these with `now` so the rules are the
same on SQLite and Redis. The ordering rule is written in the README ("Ordering").
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

from curation.models import Change, ChangeOp, Entry, Event, Item, ItemState, Moderation, Role, Source

#: content changes seen without a newer upstream date, per item; past it the item stops churning
MAX_HASH_UPDATES = 24
#: dates further in the future than this are displayed at first-seen time (clock skew is forgiven)
FUTURE_GRACE = timedelta(minutes=10)


def item_id(source_id: str, key: str) -> str:
    """A stable, URL-safe id (letters, digits, - and _) from the source and the entry's key."""
    digest = hashlib.sha256(f"{source_id}\x00{key}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode("ascii")


def _matches(entry: Entry, words: tuple[str, ...]) -> bool:
    haystack = " ".join(filter(None, (entry.title, entry.text))).casefold()
    return any(word.casefold() in haystack for word in words)


def admitted(entry: Entry, source: Source) -> bool:
    """The source's include / exclude keyword lists: entries outside them are never stored."""
    if source.include and not _matches(entry, source.include):
        return False
    return not (source.exclude and _matches(entry, source.exclude))


def initial_state(entry: Entry, source: Source, event: Event, *, muted: bool = False) -> ItemState:
    """Blocked words reject; a muted source (an editor's "hold this for a while") or a queue source holds."""
    if event.keywords_block and _matches(entry, event.keywords_block):
        return ItemState.REJECTED
    if muted:
        return ItemState.QUEUED
    if source.moderation is Moderation.QUEUE and not (event.keywords_allow and _matches(entry, event.keywords_allow)):
        return ItemState.QUEUED
    return ItemState.PUBLISHED


def new_item(entry: Entry, source: Source, event: Event, *, item_id_: str, now: datetime, muted: bool = False) -> Item:
    """Place a first-seen entry.

    The timeline is ordered by `sort_at` = the upstream date, but never later than the moment Fil
    first saw the entry: a future date cannot lift an item above newer ones, and the times shown
    down the page stay in order. A date more than FUTURE_GRACE ahead is shown as first-seen time.
    """
    published = entry.published_at or now
    if published > now + FUTURE_GRACE:
        published = now
    return item_of(
        entry,
        item_id=item_id_,
        event=event.slug,
        source_id=source.id,
        source_kind=str(source.kind),
        source_label=source.label,
        role=source.role,
        state=initial_state(entry, source, event, muted=muted),
        published_at=published,
        first_seen_at=now,
    )


def item_of(
    entry: Entry,
    *,
    item_id: str,
    event: str,
    source_id: str,
    source_kind: str,
    source_label: str,
    role: Role,
    state: ItemState,
    published_at: datetime,
    first_seen_at: datetime,
    sort_at: datetime | None = None,
) -> Item:
    """An entry's content placed as a new item; `sort_at` follows the ordering rule (see new_item) unless given."""
    return Item(
        id=item_id,
        event=event,
        source_id=source_id,
        source_kind=source_kind,
        source_label=source_label,
        role=role,
        kind=entry.kind,
        key=entry.key,
        url=entry.url,
        title=entry.title,
        text=entry.text,
        html=entry.html,
        content_hash=entry.content_hash,
        author=entry.author,
        media=entry.media,
        published_at=published_at,
        updated_at=None,
        first_seen_at=first_seen_at,
        sort_at=sort_at or min(published_at, first_seen_at),
        state=state,
        content_warning=entry.content_warning,
        card=entry.card,
        reposted_by=entry.reposted_by,
    )


def updated_item(existing: Item, entry: Entry, *, now: datetime) -> Item | None:
    """The item after an upstream edit, or None when nothing changed or the edit budget is spent.

    An update never moves the item: published_at, first_seen_at and sort_at stay.
    """
    if entry.content_hash == existing.content_hash:
        return None
    dated = entry.updated_at is not None and (existing.updated_at is None or entry.updated_at > existing.updated_at)
    if not dated and existing.update_count >= MAX_HASH_UPDATES:
        return None
    updated_at = entry.updated_at if dated and entry.updated_at is not None and entry.updated_at <= now else now
    return existing.replace(
        title=entry.title,
        text=entry.text,
        html=entry.html,
        url=entry.url or existing.url,
        author=entry.author,
        media=entry.media,
        content_hash=entry.content_hash,
        content_warning=entry.content_warning,
        card=entry.card,
        reposted_by=entry.reposted_by,
        updated_at=updated_at,
        version=existing.version + 1,
        update_count=existing.update_count + (0 if dated else 1),
    )


def deleted_item(existing: Item, *, now: datetime) -> Item | None:
    """The item after its upstream post was deleted, or None when it already was."""
    if existing.state is ItemState.DELETED:
        return None
    return existing.replace(state=ItemState.DELETED, version=existing.version + 1, updated_at=now)


def change_for(before: Item | None, after: Item, *, seq: int, now: datetime) -> Change:
    """The log entry for `before` becoming `after`; readers see it only if they could see either side."""
    if after.visible:
        return Change(after.event, seq, "upsert", after.id, after, True, now)
    was_visible = before is not None and before.visible
    op: ChangeOp = "remove" if was_visible else "upsert"
    return Change(after.event, seq, op, after.id, after, was_visible, now)


#: what an editor can do to an item (DESIGN.md, "Editor API"); `restore` undoes a delete
ACTIONS = (
    "approve",
    "reject",
    "pin",
    "unpin",
    "highlight",
    "unhighlight",
    "hide",
    "unhide",
    "delete",
    "restore",
    "note",
)
MAX_NOTE = 1000
MAX_LABEL = 60
DEFAULT_KEY_MOMENT = "key moment"

_STATE_MOVES: dict[str, tuple[frozenset[ItemState], ItemState]] = {
    "approve": (frozenset({ItemState.QUEUED, ItemState.REJECTED}), ItemState.PUBLISHED),
    "reject": (frozenset({ItemState.QUEUED, ItemState.PUBLISHED}), ItemState.REJECTED),
    "hide": (frozenset({ItemState.PUBLISHED}), ItemState.HIDDEN),
    "unhide": (frozenset({ItemState.HIDDEN}), ItemState.PUBLISHED),
    "delete": (frozenset(set(ItemState) - {ItemState.DELETED}), ItemState.DELETED),
    "restore": (frozenset({ItemState.DELETED}), ItemState.PUBLISHED),
}


def acted(item: Item, action: str, *, label: str | None = None, text: str | None = None) -> Item | None:
    """The item after an editor's action, or None when the action changes nothing (it is idempotent).

    Raises:
        ValueError: an unknown action, or a label / note that is too long.
    """
    if action in _STATE_MOVES:
        sources, target = _STATE_MOVES[action]
        return item.replace(state=target, version=item.version + 1) if item.state in sources else None
    if action in ("pin", "unpin"):
        pinned = action == "pin"
        return item.replace(pinned=pinned, version=item.version + 1) if item.pinned != pinned else None
    if action in ("highlight", "unhighlight"):
        moment = None
        if action == "highlight":
            moment = " ".join((label or DEFAULT_KEY_MOMENT).split())
            if len(moment) > MAX_LABEL:
                raise ValueError(f"label: at most {MAX_LABEL} characters")
        return item.replace(key_moment=moment, version=item.version + 1) if item.key_moment != moment else None
    if action == "note":
        note = (text or "").strip() or None
        if note is not None and len(note) > MAX_NOTE:
            raise ValueError(f"text: at most {MAX_NOTE} characters")
        return item.replace(note=note, version=item.version + 1) if item.note != note else None
    raise ValueError(f"action: unknown action {action!r} (one of {', '.join(ACTIONS)})")

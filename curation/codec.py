"""JSON encodings of items and changes: the one place the public wire format is written.

`item_to_json` is the Item JSON of DESIGN.md; `item_to_record` / `item_from_record` keep every
field (state, key, hash) for the store; `change_message` is the reader websocket frame text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from curation.models import (
    Author,
    Card,
    Change,
    Entry,
    Item,
    ItemKind,
    ItemState,
    Media,
    Role,
    parse_rfc3339,
    rfc3339,
)


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 kept as is (smaller frames than ASCII escapes)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _author_json(author: Author) -> dict[str, str | None]:
    return {"name": author.name, "handle": author.handle, "url": author.url, "avatar": author.avatar}


def _media_json(media: Media) -> dict[str, str | None]:
    return {"type": media.type, "url": media.url, "alt": media.alt, "thumbnail": media.thumbnail}


def _card_json(card: Card | None) -> dict[str, Any] | None:
    if card is None:
        return None
    return {
        "kind": card.kind,
        "url": card.url,
        "title": card.title,
        "description": card.description,
        "image": card.image,
        "author": _author_json(card.author) if card.author else None,
    }


def _card_from(record: Mapping[str, Any] | None) -> Card | None:
    if not record:
        return None
    author = record.get("author")
    return Card(
        kind=record["kind"],
        url=record["url"],
        title=record.get("title"),
        description=record.get("description"),
        image=record.get("image"),
        author=Author(**author) if author else None,
    )


def item_to_json(item: Item) -> dict[str, Any]:
    """The public Item JSON (DESIGN.md): what readers, the items API and the websocket see."""
    return {
        "id": item.id,
        "kind": str(item.kind),
        "role": str(item.role),
        "source": {"id": item.source_id, "kind": item.source_kind, "label": item.source_label},
        "author": _author_json(item.author),
        "title": item.title,
        "text": item.text,
        "html": item.html,
        "url": item.url,
        "media": [_media_json(m) for m in item.media],
        "published_at": rfc3339(item.published_at),
        "updated_at": rfc3339(item.updated_at),
        "first_seen_at": rfc3339(item.first_seen_at),
        "pinned": item.pinned,
        "key_moment": item.key_moment,
        "content_warning": item.content_warning,
        "note": item.note,
        "card": _card_json(item.card),
        "reposted_by": _author_json(item.reposted_by) if item.reposted_by else None,
        "version": item.version,
    }


def item_to_editor_json(item: Item) -> dict[str, Any]:
    """What editors see: the public JSON plus where the item stands (published, queued, hidden...)."""
    record = item_to_json(item)
    record["state"] = str(item.state)
    record["markdown"] = item.markdown
    return record


def item_to_record(item: Item) -> dict[str, Any]:
    """Every field, for the store."""
    record = item_to_json(item)
    record.update(
        event=item.event,
        key=item.key,
        content_hash=item.content_hash,
        sort_at=rfc3339(item.sort_at),
        state=str(item.state),
        update_count=item.update_count,
        markdown=item.markdown,
    )
    return record


def _dt(value: str | None) -> datetime:
    parsed = parse_rfc3339(value)
    if parsed is None:
        raise ValueError("missing datetime in item record")
    return parsed


def item_from_record(record: Mapping[str, Any]) -> Item:
    source = record["source"]
    return Item(
        id=record["id"],
        event=record["event"],
        source_id=source["id"],
        source_kind=source["kind"],
        source_label=source["label"],
        role=Role(record["role"]),
        kind=ItemKind(record["kind"]),
        key=record["key"],
        url=record.get("url"),
        title=record.get("title"),
        text=record.get("text"),
        html=record.get("html"),
        content_hash=record["content_hash"],
        author=Author(**record.get("author") or {}),
        media=tuple(Media(**m) for m in record.get("media") or ()),
        published_at=_dt(record["published_at"]),
        updated_at=parse_rfc3339(record.get("updated_at")),
        first_seen_at=_dt(record["first_seen_at"]),
        sort_at=_dt(record["sort_at"]),
        state=ItemState(record.get("state", "published")),
        pinned=bool(record.get("pinned", False)),
        key_moment=record.get("key_moment"),
        content_warning=record.get("content_warning"),
        note=record.get("note"),
        card=_card_from(record.get("card")),
        reposted_by=Author(**record["reposted_by"]) if record.get("reposted_by") else None,
        version=int(record.get("version", 1)),
        update_count=int(record.get("update_count", 0)),
        markdown=record.get("markdown"),
    )


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """An Entry as a collector produced it (`inspect` prints these)."""
    return {
        "key": entry.key,
        "kind": str(entry.kind),
        "url": entry.url,
        "title": entry.title,
        "text": entry.text,
        "html": entry.html,
        "content_hash": entry.content_hash,
        "author": _author_json(entry.author),
        "media": [_media_json(m) for m in entry.media],
        "published_at": rfc3339(entry.published_at),
        "updated_at": rfc3339(entry.updated_at),
        "content_warning": entry.content_warning,
        "card": _card_json(entry.card),
        "reposted_by": _author_json(entry.reposted_by) if entry.reposted_by else None,
    }


def editor_message(change: Change) -> str:
    """The desk's frame for a change: every change, with the item's state (editors see it all)."""
    assert change.item is not None
    return dumps({"type": "upsert", "seq": change.seq, "item": item_to_editor_json(change.item)})


def change_message(change: Change) -> str | None:
    """The reader frame for a change, or None when readers do not get it (a gap, not a loss)."""
    if not change.public:
        return None
    if change.op == "upsert" and change.item is not None:
        return dumps({"type": "upsert", "seq": change.seq, "item": item_to_json(change.item)})
    return dumps({"type": "remove", "seq": change.seq, "id": change.item_id})

"""One event as one JSON document: what `app.py export` writes and `app.py import` reads.

The document carries everything a store keeps of an event: its items in every state (with the keys
that made them, so collecting again after a move takes nothing twice), the log position, the audit
trail, the header, mutes, and what the desk added (the event's settings, its sources). Moving an event
from SQLite to Redis before the big day is an export from one store and an import into the other.
Readers connected before the move reset once (the log's entries are not carried, only its position).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curation.codec import item_from_record
from curation.errors import CurationError

FORMAT = "fil-event"
VERSION = 1


class TransferError(CurationError):
    """An export file Fil cannot import; the message names the field."""


@dataclass(slots=True)
class EventDump:
    slug: str
    #: the log's head: the next change of the event gets head + 1
    head: int
    items: list[dict[str, Any]] = field(default_factory=list)
    #: (source id, entry key, item id): what each source's entries became
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    header: dict[str, Any] | None = None
    header_version: int = 0
    #: source id -> microseconds since the epoch when the mute ends
    mutes: dict[str, int] = field(default_factory=dict)
    #: what the desk kept: the event's settings (None: none), and the sources it added
    settings: dict[str, Any] | None = None
    settings_by: str = ""
    settings_at: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, *, exported_at: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "exported_at": exported_at,
            "slug": self.slug,
            "head": self.head,
            "items": self.items,
            "keys": [list(k) for k in self.keys],
            "audit": self.audit,
            "header": self.header,
            "header_version": self.header_version,
            "mutes": self.mutes,
            "desk": {
                "settings": self.settings,
                "by": self.settings_by,
                "at": self.settings_at,
                "sources": self.sources,
            },
        }


def _expect(value: object, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TransferError(f"{where}: expected {names}")
    return value


def from_json(document: object, *, name: str = "the file") -> EventDump:
    """Check an export document whole before anything is written; TransferError names the first bad field."""
    doc = _expect(document, dict, name)
    if doc.get("format") != FORMAT:
        raise TransferError(f"{name}: format: not a Fil event export (expected {FORMAT!r})")
    version = _expect(doc.get("version"), int, f"{name}: version")
    if version > VERSION:
        raise TransferError(f"{name}: version: {version} is newer than this Fil reads ({VERSION})")
    slug = _expect(doc.get("slug"), str, f"{name}: slug")
    head = _expect(doc.get("head"), int, f"{name}: head")
    items = _expect(doc.get("items"), list, f"{name}: items")
    for i, record in enumerate(items):
        try:
            item = item_from_record(_expect(record, dict, f"{name}: items[{i}]"))
        except (KeyError, ValueError, TypeError) as e:
            raise TransferError(f"{name}: items[{i}]: not an item record ({e})") from None
        if item.event != slug:
            raise TransferError(f"{name}: items[{i}].event: {item.event!r}, not {slug!r}")
    keys = []
    for i, row in enumerate(_expect(doc.get("keys", []), list, f"{name}: keys")):
        if not (isinstance(row, list) and len(row) == 3 and all(isinstance(part, str) for part in row)):
            raise TransferError(f"{name}: keys[{i}]: expected [source id, key, item id]")
        keys.append((row[0], row[1], row[2]))
    audit = _expect(doc.get("audit", []), list, f"{name}: audit")
    for i, entry in enumerate(audit):
        entry = _expect(entry, dict, f"{name}: audit[{i}]")
        for key in ("at", "editor", "action", "item_id"):
            _expect(entry.get(key), str, f"{name}: audit[{i}].{key}")
        _expect(entry.get("detail", {}), dict, f"{name}: audit[{i}].detail")
    header = doc.get("header")
    if header is not None:
        _expect(header, dict, f"{name}: header")
    mutes = _expect(doc.get("mutes", {}), dict, f"{name}: mutes")
    for source_id, until in mutes.items():
        _expect(until, int, f"{name}: mutes.{source_id}")
    desk = _expect(doc.get("desk", {}), dict, f"{name}: desk")
    settings = desk.get("settings")
    if settings is not None:
        _expect(settings, dict, f"{name}: desk.settings")
    sources = _expect(desk.get("sources", []), list, f"{name}: desk.sources")
    for i, source in enumerate(sources):
        source = _expect(source, dict, f"{name}: desk.sources[{i}]")
        _expect(source.get("id"), str, f"{name}: desk.sources[{i}].id")
        _expect(source.get("definition"), dict, f"{name}: desk.sources[{i}].definition")
    return EventDump(
        slug=slug,
        head=head,
        items=items,
        keys=keys,
        audit=audit,
        header=header,
        header_version=_expect(doc.get("header_version", 0), int, f"{name}: header_version"),
        mutes=mutes,
        settings=settings,
        settings_by=str(desk.get("by") or ""),
        settings_at=str(desk.get("at") or ""),
        sources=sources,
    )

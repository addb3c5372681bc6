"""Export and import of one event for SQLiteStore (curation/transfer.py has the document's format)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from curation.codec import dumps, item_from_record
from curation.models import Item, rfc3339, utcnow
from curation.transfer import EventDump, TransferError

T = TypeVar("T")

#: every table with an `event` column, emptied by an import that replaces the event
_EVENT_TABLES = ("items", "keys", "log_heads", "changes", "audit", "headers", "mutes", "runtime_sources")


class TransferMixin:
    """dump_event / load_event for SQLiteStore; relies on its writer thread and reader pool."""

    if TYPE_CHECKING:

        def _write(
            self, fn: Callable[[sqlite3.Connection], T], after: Callable[[T], None] | None = None
        ) -> asyncio.Future[T]: ...

        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        def _put_item(self, conn: sqlite3.Connection, item: Item) -> None: ...

    async def dump_event(self, slug: str) -> EventDump | None:
        def run(conn: sqlite3.Connection) -> EventDump | None:
            head = conn.execute("SELECT seq FROM log_heads WHERE event = ?", (slug,)).fetchone()
            settings = conn.execute(
                "SELECT settings, updated_by, updated_at FROM runtime_events WHERE slug = ?", (slug,)
            ).fetchone()
            items = [
                json.loads(r[0])
                for r in conn.execute("SELECT data FROM items WHERE event = ? ORDER BY sort_us", (slug,))
            ]
            if head is None and settings is None and not items:
                return None
            header = conn.execute("SELECT version, data FROM headers WHERE event = ?", (slug,)).fetchone()
            return EventDump(
                slug=slug,
                head=int(head[0]) if head else 0,
                items=items,
                keys=[
                    (r[0], r[1], r[2])
                    for r in conn.execute(
                        "SELECT source_id, key, item_id FROM keys WHERE event = ? ORDER BY source_id, key", (slug,)
                    )
                ],
                audit=[
                    {
                        "seq": r[0],
                        "at": r[1],
                        "editor": r[2],
                        "action": r[3],
                        "item_id": r[4],
                        "detail": json.loads(r[5]),
                    }
                    for r in conn.execute(
                        "SELECT seq, at, editor, action, item_id, detail FROM audit WHERE event = ? ORDER BY id",
                        (slug,),
                    )
                ],
                header=json.loads(header[1]) if header else None,
                header_version=int(header[0]) if header else 0,
                mutes={
                    r[0]: int(r[1])
                    for r in conn.execute("SELECT source_id, until_us FROM mutes WHERE event = ?", (slug,))
                },
                settings=json.loads(settings[0]) if settings else None,
                settings_by=settings[1] if settings else "",
                settings_at=settings[2] if settings else "",
                sources=[
                    {"id": r[0], "definition": json.loads(r[1]), "by": r[2], "at": r[3]}
                    for r in conn.execute(
                        "SELECT source_id, definition, added_by, added_at FROM runtime_sources WHERE event = ?"
                        " ORDER BY added_at",
                        (slug,),
                    )
                ],
            )

        return await self._read(run)

    async def load_event(self, dump: EventDump, *, replace: bool = False, editor: str = "import") -> int:
        """Write an exported event in one transaction; returns how many items it holds.

        Raises:
            TransferError: the event already has items or a log here, and `replace` is not set.
        """
        items = [item_from_record(record) for record in dump.items]
        when = rfc3339(utcnow()) or ""

        def run(conn: sqlite3.Connection) -> int:
            slug = dump.slug
            taken = conn.execute(
                "SELECT (SELECT COUNT(*) FROM items WHERE event = ?)"
                " + (SELECT COUNT(*) FROM log_heads WHERE event = ?)",
                (slug, slug),
            ).fetchone()[0]
            if taken and not replace:
                raise TransferError(f"event {slug!r} already has items in this store (import with --replace)")
            for table in _EVENT_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE event = ?", (slug,))
            conn.execute("DELETE FROM runtime_events WHERE slug = ?", (slug,))
            for item in items:
                self._put_item(conn, item)
            conn.executemany("INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?)", [(slug, *k) for k in dump.keys])
            # the log restarts at its old position with nothing before it: a reader from before resets once
            conn.execute("INSERT INTO log_heads VALUES (?, ?, ?)", (slug, dump.head, dump.head + 1))
            audit = [*dump.audit, _import_entry(dump, editor, when)]
            conn.executemany(
                "INSERT INTO audit (event, seq, at, editor, action, item_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (slug, e.get("seq"), e["at"], e["editor"], e["action"], e["item_id"], dumps(e.get("detail", {})))
                    for e in audit
                ],
            )
            if dump.header is not None:
                conn.execute("INSERT INTO headers VALUES (?, ?, ?)", (slug, dump.header_version, dumps(dump.header)))
            conn.executemany("INSERT INTO mutes VALUES (?, ?, ?)", [(slug, s, u) for s, u in dump.mutes.items()])
            if dump.settings is not None:
                conn.execute(
                    "INSERT INTO runtime_events VALUES (?, ?, ?, ?)",
                    (slug, dumps(dump.settings), dump.settings_by or editor, dump.settings_at or when),
                )
            conn.executemany(
                "INSERT INTO runtime_sources VALUES (?, ?, ?, ?, ?)",
                [
                    (slug, s["id"], dumps(s["definition"]), str(s.get("by") or editor), str(s.get("at") or when))
                    for s in dump.sources
                ],
            )
            return len(items)

        return await self._write(run)


def _import_entry(dump: EventDump, editor: str, when: str) -> dict[str, Any]:
    return {
        "seq": None,
        "at": when,
        "editor": editor,
        "action": "import",
        "item_id": dump.slug,
        "detail": {"items": len(dump.items), "head": dump.head},
    }

"""The embedded store: SQLite in WAL mode, one writer thread, reads on a small thread pool.

Every write runs on the one writer thread (no lock contention, no blocked event loop); commits
use synchronous=FULL so an acknowledged change survives kill -9 and power loss alike.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from curation import posts, timeline
from curation.codec import change_message, dumps, item_from_record, item_to_record
from curation.errors import ItemNotFound, StoreError, VersionConflict
from curation.header import Header, header_from_record, header_to_record
from curation.models import (
    Change,
    Entry,
    Event,
    Item,
    ItemState,
    Order,
    Page,
    Source,
    SourceStatus,
    parse_rfc3339,
    rfc3339,
    utcnow,
)
from curation.normalize import canonical_url
from curation.posts import Post
from curation.store import (
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_QUEUE,
    AuditEntry,
    ChangeListener,
    Listeners,
    RuntimeEvent,
    RuntimeSource,
)
from curation.store.sqlite_accounts import ACCOUNTS_SCHEMA, AccountsMixin
from curation.store.sqlite_transfer import TransferMixin

T = TypeVar("T")

SCHEMA_VERSION = 1
#: seconds /healthz keeps naming a failed write after it happened
WRITE_ERROR_WINDOW = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    event TEXT NOT NULL, id TEXT NOT NULL, curl TEXT, state TEXT NOT NULL, pinned INTEGER NOT NULL,
    sort_us INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (event, id));
CREATE INDEX IF NOT EXISTS items_timeline ON items (event, state, pinned, sort_us, id);
CREATE INDEX IF NOT EXISTS items_curl ON items (event, curl);
CREATE TABLE IF NOT EXISTS keys (
    event TEXT NOT NULL, source_id TEXT NOT NULL, key TEXT NOT NULL, item_id TEXT NOT NULL,
    PRIMARY KEY (event, source_id, key));
CREATE TABLE IF NOT EXISTS log_heads (event TEXT PRIMARY KEY, seq INTEGER NOT NULL, min_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    event TEXT NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL, item_id TEXT NOT NULL,
    public INTEGER NOT NULL, at TEXT NOT NULL, item TEXT, message TEXT, PRIMARY KEY (event, seq));
CREATE TABLE IF NOT EXISTS source_status (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL, seq INTEGER, at TEXT NOT NULL, editor TEXT NOT NULL,
    action TEXT NOT NULL, item_id TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_event ON audit (event, id);
CREATE TABLE IF NOT EXISTS runtime_sources (
    event TEXT NOT NULL, source_id TEXT NOT NULL, definition TEXT NOT NULL, added_by TEXT NOT NULL,
    added_at TEXT NOT NULL, PRIMARY KEY (event, source_id));
CREATE TABLE IF NOT EXISTS runtime_events (
    slug TEXT PRIMARY KEY, settings TEXT NOT NULL, updated_by TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS headers (event TEXT PRIMARY KEY, version INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mutes (
    event TEXT NOT NULL, source_id TEXT NOT NULL, until_us INTEGER NOT NULL, PRIMARY KEY (event, source_id));
"""


def _us(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


def encode_cursor(sort_us: int, item_id: str) -> str:
    return base64.urlsafe_b64encode(dumps([sort_us, item_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sort_us, item_id = json.loads(raw)
        if not isinstance(sort_us, int) or not isinstance(item_id, str):
            raise TypeError
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a valid cursor: {cursor[:40]!r}") from e
    return sort_us, item_id


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class SQLiteStore(Listeners, AccountsMixin, TransferMixin):
    def __init__(self, path: str, *, log_retention: int = 10000) -> None:
        self.path = path
        self.log_retention = max(1, log_retention)
        self._listeners: list[ChangeListener] = []
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_error = f"cannot open {path}"
        #: when a write last failed and why (disk full, locked past the busy timeout), and whether the
        #: latest write failed: write_trouble() tells /healthz
        self._write_failure: tuple[float, str] | None = None
        self._failing = False
        self.clock: Callable[[], float] = time.monotonic

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.path != ":memory:":
            folder = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the data folder {folder}: {e}") from e
        self._writer = threading.Thread(target=self._write_loop, name="fil-sqlite-writer", daemon=True)
        self._writer.start()
        await self._write(self._setup)
        if self.path != ":memory:":
            self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fil-sqlite-reader")

    async def close(self) -> None:
        if self._writer is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._writer.join)
        self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    def _setup(self, conn: sqlite3.Connection) -> None:
        for statement in filter(str.strip, (SCHEMA + ACCOUNTS_SCHEMA).split(";")):
            conn.execute(statement)  # not executescript: it would commit outside our transaction
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {row[0]} is newer than this Fil ({SCHEMA_VERSION})")

    # -- threads ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            self._conn = _connect(self.path)
        except sqlite3.Error as e:
            self._open_error = f"cannot open {self.path}: {e}"
        while (job := self._jobs.get()) is not None:
            job()
        if self._conn is not None:
            self._conn.close()

    def _write(
        self, fn: Callable[[sqlite3.Connection], T], after: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        """Run `fn` in one transaction on the writer thread; `after` runs on the loop before the caller resumes."""
        loop = self._loop
        assert loop is not None, "store not opened"
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
                return
            if after is not None:
                after(result)  # type: ignore[arg-type]
            future.set_result(result)  # type: ignore[arg-type]

        def job() -> None:
            conn = self._conn
            try:
                if conn is None:
                    raise StoreError(self._open_error)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLITE_FULL (and some I/O errors) roll the transaction back themselves: a second
                    # ROLLBACK would fail and hide the error that matters
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                error = StoreError(f"{self.path}: {e}")
                self._write_failure, self._failing = (self.clock(), str(error)), True
                loop.call_soon_threadsafe(settle, None, error)
            except BaseException as e:
                loop.call_soon_threadsafe(settle, None, e)
            else:
                self._failing = False
                loop.call_soon_threadsafe(settle, result, None)

        self._jobs.put(job)
        return future

    def write_trouble(self) -> str | None:
        """Why writes fail, for /healthz: the latest write failed, or one did less than WRITE_ERROR_WINDOW
        ago (on a nearly full disk small writes still pass while larger ones fail); None otherwise."""
        if self._write_failure is None:
            return None
        at, message = self._write_failure
        return message if self._failing or self.clock() - at < WRITE_ERROR_WINDOW else None

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:  # in-memory: the writer's connection is the only one
            return await self._write(fn)
        loop = asyncio.get_running_loop()

        def run() -> T:
            conn = self._reader_conn()
            conn.execute("BEGIN")  # one snapshot for every statement of fn
            try:
                return fn(conn)
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e
            finally:
                conn.execute("COMMIT")

        return await loop.run_in_executor(self._readers, run)

    # -- listeners -------------------------------------------------------------------------

    # -- writes ----------------------------------------------------------------------------

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
        when = now or utcnow()
        return await self._write(
            lambda conn: self._ingest(conn, event, source, entries, ignore, deleted, when), self._notify
        )

    def _ingest(
        self,
        conn: sqlite3.Connection,
        event: Event,
        source: Source,
        entries: Sequence[Entry],
        ignore: Sequence[str],
        deleted: Sequence[str],
        now: datetime,
    ) -> list[Change]:
        conn.executemany(
            "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, '')", [(event.slug, source.id, key) for key in ignore]
        )
        seq = self._head(conn, event.slug)
        changes: list[Change] = []
        muted = self._muted(conn, event.slug, source.id, now)
        for entry in entries:
            if not timeline.admitted(entry, source):
                continue
            before, skip = self._find(conn, event.slug, source.id, entry)
            if skip:
                continue  # seen before and left out, or the same story already in from another source
            if before is None:
                after: Item | None = timeline.new_item(
                    entry, source, event, item_id_=timeline.item_id(source.id, entry.key), now=now, muted=muted
                )
            else:
                after = timeline.updated_item(before, entry, now=now)
            if after is None:
                continue
            seq += 1
            change = timeline.change_for(before, after, seq=seq, now=now)
            change = _with_message(change)
            self._put_item(conn, after)
            conn.execute("INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?)", (event.slug, source.id, entry.key, after.id))
            self._append(conn, change)
            changes.append(change)
        for key in deleted:
            row = conn.execute(
                "SELECT item_id FROM keys WHERE event = ? AND source_id = ? AND key = ?", (event.slug, source.id, key)
            ).fetchone()
            before = self._load(conn, event.slug, row[0]) if row and row[0] else None
            if before is None or before.source_id != source.id:
                continue  # never taken, or the story belongs to another source
            after = timeline.deleted_item(before, now=now)
            if after is None:
                continue
            seq += 1
            change = _with_message(timeline.change_for(before, after, seq=seq, now=now))
            self._put_item(conn, after)
            self._append(conn, change)
            changes.append(change)
        if changes:
            self._set_head(conn, event.slug, seq)
        return changes

    def _muted(self, conn: sqlite3.Connection, event: str, source_id: str, now: datetime) -> bool:
        row = conn.execute(
            "SELECT until_us FROM mutes WHERE event = ? AND source_id = ?", (event, source_id)
        ).fetchone()
        return row is not None and int(row[0]) > _us(now)

    def _find(self, conn: sqlite3.Connection, event: str, source_id: str, entry: Entry) -> tuple[Item | None, bool]:
        """The item this entry already is, and whether it stands for an item of another source.

        A key mapped to "" was seen and deliberately left out (beyond the first import's backfill).
        """
        row = conn.execute(
            "SELECT item_id FROM keys WHERE event = ? AND source_id = ? AND key = ?", (event, source_id, entry.key)
        ).fetchone()
        if row is not None:
            item = self._load(conn, event, row[0]) if row[0] else None
            return item, item is None or item.source_id != source_id
        if entry.url:
            found = conn.execute(
                "SELECT id FROM items WHERE event = ? AND curl = ? LIMIT 1", (event, canonical_url(entry.url))
            ).fetchone()
            if found is not None:
                item = self._load(conn, event, found[0])
                if item is not None:
                    conn.execute(
                        "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?)", (event, source_id, entry.key, item.id)
                    )
                    return item, item.source_id != source_id
        return None, False

    def _load(self, conn: sqlite3.Connection, event: str, item_id: str) -> Item | None:
        row = conn.execute("SELECT data FROM items WHERE event = ? AND id = ?", (event, item_id)).fetchone()
        return item_from_record(json.loads(row[0])) if row else None

    def _put_item(self, conn: sqlite3.Connection, item: Item) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                item.event,
                item.id,
                canonical_url(item.url) if item.url else None,
                str(item.state),
                int(item.pinned),
                _us(item.sort_at),
                dumps(item_to_record(item)),
            ),
        )

    def _append(self, conn: sqlite3.Connection, change: Change) -> None:
        conn.execute(
            "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                change.event,
                change.seq,
                change.op,
                change.item_id,
                int(change.public),
                change.at.isoformat(),
                dumps(item_to_record(change.item)) if change.item is not None else None,
                change.message,
            ),
        )

    def _head(self, conn: sqlite3.Connection, event: str) -> int:
        row = conn.execute("SELECT seq FROM log_heads WHERE event = ?", (event,)).fetchone()
        return int(row[0]) if row else 0

    def _set_head(self, conn: sqlite3.Connection, event: str, seq: int) -> None:
        row = conn.execute("SELECT min_seq FROM log_heads WHERE event = ?", (event,)).fetchone()
        min_seq = int(row[0]) if row else 1
        # prune in steps of a tenth so the delete is not paid on every write
        if seq - min_seq + 1 > self.log_retention + max(1, self.log_retention // 10):
            min_seq = seq - self.log_retention + 1
            conn.execute("DELETE FROM changes WHERE event = ? AND seq < ?", (event, min_seq))
        conn.execute("INSERT OR REPLACE INTO log_heads VALUES (?, ?, ?)", (event, seq, min_seq))

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
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> tuple[Item, Change | None]:
            before = self._load(conn, event, item_id)
            if before is None:
                raise ItemNotFound(event, item_id)
            if version is not None and version != before.version:
                raise VersionConflict(before, version)
            after = timeline.acted(before, action, label=label, text=text)
            if after is None:
                return before, None
            seq = self._head(conn, event) + 1
            change = _with_message(timeline.change_for(before, after, seq=seq, now=when))
            self._put_item(conn, after)
            self._append(conn, change)
            self._set_head(conn, event, seq)
            detail = {"before": item_to_record(before), "label": label, "text": text, "version": after.version}
            self._audit(conn, event, seq, when, editor, action, item_id, detail)
            return after, change

        def notify(result: tuple[Item, Change | None]) -> None:
            if result[1] is not None:
                self._notify([result[1]])

        return await self._write(run, notify)

    async def add_post(self, item: Item, *, editor: str, now: datetime | None = None) -> Change:
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> Change:
            seq = self._head(conn, item.event) + 1
            change = _with_message(timeline.change_for(None, item, seq=seq, now=when))
            self._put_item(conn, item)
            self._append(conn, change)
            self._set_head(conn, item.event, seq)
            self._audit(conn, item.event, seq, when, editor, "post", item.id, {"before": None})
            return change

        return await self._write(run, lambda change: self._notify([change]))

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
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> tuple[Item, Change]:
            before = self._load(conn, event, item_id)
            if before is None or before.source_id != posts.DESK_SOURCE:
                raise ItemNotFound(event, item_id)
            if version is not None and version != before.version:
                raise VersionConflict(before, version)
            after = posts.corrected(before, post, editor=editor, now=when)
            seq = self._head(conn, event) + 1
            change = _with_message(timeline.change_for(before, after, seq=seq, now=when))
            self._put_item(conn, after)
            self._append(conn, change)
            self._set_head(conn, event, seq)
            self._audit(conn, event, seq, when, editor, "correct", item_id, {"before": item_to_record(before)})
            return after, change

        return await self._write(run, lambda result: self._notify([result[1]]))

    async def publish_due(self, *, now: datetime | None = None) -> list[Change]:
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> list[Change]:
            rows = conn.execute(
                "SELECT data FROM items WHERE state = 'scheduled' AND sort_us <= ? ORDER BY sort_us", (_us(when),)
            ).fetchall()
            changes = []
            for row in rows:
                before = item_from_record(json.loads(row[0]))
                after = before.replace(state=ItemState.PUBLISHED, version=before.version + 1)
                seq = self._head(conn, before.event) + 1
                change = _with_message(timeline.change_for(before, after, seq=seq, now=when))
                self._put_item(conn, after)
                self._append(conn, change)
                self._set_head(conn, before.event, seq)
                changes.append(change)
            return changes

        return await self._write(run, self._notify)

    def _audit(
        self,
        conn: sqlite3.Connection,
        event: str,
        seq: int | None,
        when: datetime,
        editor: str,
        action: str,
        item_id: str,
        detail: dict[str, Any],
    ) -> None:
        conn.execute(
            "INSERT INTO audit (event, seq, at, editor, action, item_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event, seq, rfc3339(when), editor, action, item_id, dumps(detail)),
        )

    async def get_header(self, event: str) -> Header | None:
        def run(conn: sqlite3.Connection) -> Header | None:
            return self._load_header(conn, event)

        return await self._read(run)

    def _load_header(self, conn: sqlite3.Connection, event: str) -> Header | None:
        row = conn.execute("SELECT data FROM headers WHERE event = ?", (event,)).fetchone()
        return header_from_record(json.loads(row[0])) if row else None

    async def set_header(self, event: str, header: Header, *, editor: str, now: datetime | None = None) -> Header:
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> Header:
            before = self._load_header(conn, event)
            current = before.version if before else 0
            if header.version != current:
                raise VersionConflict(before or Header(), header.version)
            after = dataclasses.replace(header, updated_at=when, updated_by=editor, version=current + 1)
            conn.execute(
                "INSERT OR REPLACE INTO headers VALUES (?, ?, ?)",
                (event, after.version, dumps(header_to_record(after))),
            )
            detail = {"before": header_to_record(before) if before else None, "version": after.version}
            self._audit(conn, event, None, when, editor, "header", "", detail)
            return after

        return await self._write(run)

    async def mute_source(
        self, event: str, source_id: str, until: datetime | None, *, editor: str, now: datetime | None = None
    ) -> None:
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> None:
            if until is None or until <= when:
                conn.execute("DELETE FROM mutes WHERE event = ? AND source_id = ?", (event, source_id))
            else:
                conn.execute("INSERT OR REPLACE INTO mutes VALUES (?, ?, ?)", (event, source_id, _us(until)))
            detail = {"source_id": source_id, "until": rfc3339(until) if until and until > when else None}
            self._audit(conn, event, None, when, editor, "mute" if detail["until"] else "unmute", "", detail)

        await self._write(run)

    async def mutes(self, event: str, *, now: datetime | None = None) -> dict[str, datetime]:
        threshold = _us(now or utcnow())

        def run(conn: sqlite3.Connection) -> dict[str, datetime]:
            rows = conn.execute(
                "SELECT source_id, until_us FROM mutes WHERE event = ? AND until_us > ?", (event, threshold)
            ).fetchall()
            return {r[0]: datetime.fromtimestamp(r[1] / 1_000_000, UTC) for r in rows}

        return await self._read(run)

    async def add_runtime_source(
        self, event: str, source_id: str, definition: dict[str, Any], *, editor: str, now: datetime | None = None
    ) -> None:
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO runtime_sources VALUES (?, ?, ?, ?, ?)",
                (event, source_id, dumps(definition), editor, rfc3339(when)),
            )
            self._audit(conn, event, None, when, editor, "add-source", source_id, {"definition": definition})

        await self._write(run)

    async def remove_runtime_source(
        self, event: str, source_id: str, *, editor: str, now: datetime | None = None
    ) -> bool:
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> bool:
            gone = conn.execute(
                "DELETE FROM runtime_sources WHERE event = ? AND source_id = ?", (event, source_id)
            ).rowcount
            if gone:
                self._audit(conn, event, None, when, editor, "remove-source", source_id, {})
            return bool(gone)

        return await self._write(run)

    async def runtime_sources(self) -> list[RuntimeSource]:
        def run(conn: sqlite3.Connection) -> list[RuntimeSource]:
            rows = conn.execute(
                "SELECT event, source_id, definition, added_by, added_at FROM runtime_sources ORDER BY added_at"
            ).fetchall()
            return [RuntimeSource(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

        return await self._read(run)

    async def put_runtime_event(
        self, slug: str, settings: dict[str, Any], *, editor: str, now: datetime | None = None
    ) -> None:
        when = now or utcnow()

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT settings FROM runtime_events WHERE slug = ?", (slug,)).fetchone()
            before = json.loads(row[0]) if row else None
            conn.execute(
                "INSERT INTO runtime_events VALUES (?, ?, ?, ?) ON CONFLICT (slug) DO UPDATE SET"
                " settings = excluded.settings, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (slug, dumps(settings), editor, rfc3339(when)),
            )
            self._audit(
                conn, slug, None, when, editor, "event-settings", slug, {"settings": settings, "before": before}
            )

        await self._write(run)

    async def runtime_events(self) -> list[RuntimeEvent]:
        def run(conn: sqlite3.Connection) -> list[RuntimeEvent]:
            rows = conn.execute(
                "SELECT slug, settings, updated_by, updated_at FROM runtime_events ORDER BY rowid"
            ).fetchall()
            return [RuntimeEvent(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

        return await self._read(run)

    async def queue(self, event: str, *, limit: int = MAX_PAGE) -> list[Item]:
        return (await self.recent(event, states=(ItemState.QUEUED,), limit=limit))[1]

    async def recent(self, event: str, *, states: Sequence[ItemState], limit: int = MAX_PAGE) -> tuple[int, list[Item]]:
        def run(conn: sqlite3.Connection) -> tuple[int, list[Item]]:
            marks = ", ".join("?" for _ in states)
            rows = conn.execute(
                f"SELECT data FROM items WHERE event = ? AND state IN ({marks}) ORDER BY sort_us DESC, id DESC LIMIT ?",
                (event, *[str(s) for s in states], max(1, min(limit, MAX_QUEUE))),
            ).fetchall()
            return self._head(conn, event), [item_from_record(json.loads(r[0])) for r in rows]

        return await self._read(run)

    async def audit(self, event: str, *, limit: int = 200, before: int | None = None) -> list[AuditEntry]:
        def run(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                "SELECT id, seq, at, editor, action, item_id, detail FROM audit WHERE event = ? AND id < ? "
                "ORDER BY id DESC LIMIT ?",
                (event, before if before is not None else 2**62, max(1, min(limit, 1000))),
            ).fetchall()
            return [
                AuditEntry(
                    id=r[0],
                    event=event,
                    seq=r[1],
                    at=r[2],
                    editor=r[3],
                    action=r[4],
                    item_id=r[5],
                    detail=json.loads(r[6]),
                )
                for r in rows
            ]

        return await self._read(run)

    async def save_status(self, status: SourceStatus) -> None:
        record = dumps(status.to_record())

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO source_status VALUES (?, ?)", (status.id, record))

        await self._write(run)

    # -- reads -----------------------------------------------------------------------------

    async def head(self, event: str) -> int:
        return await self._read(lambda conn: self._head(conn, event))

    async def get_item(self, event: str, item_id: str) -> Item | None:
        return await self._read(lambda conn: self._load(conn, event, item_id))

    async def page(
        self, event: str, *, limit: int = DEFAULT_PAGE, before: str | None = None, order: Order = Order.NEWEST
    ) -> Page:
        limit = max(1, min(MAX_PAGE, limit))
        cursor = decode_cursor(before) if before else None
        newest = order is Order.NEWEST
        direction, compare = ("DESC", "<") if newest else ("ASC", ">")

        def run(conn: sqlite3.Connection) -> Page:
            seq = self._head(conn, event)
            items: list[Item] = []
            if cursor is None:
                rows = conn.execute(
                    "SELECT data FROM items WHERE event = ? AND state = 'published' AND pinned = 1 "
                    f"ORDER BY sort_us {direction}, id {direction}",
                    (event,),
                ).fetchall()
                items.extend(item_from_record(json.loads(r[0])) for r in rows)
                where, args = "", [event, limit + 1]
            else:
                where, args = f"AND (sort_us, id) {compare} (?, ?)", [event, cursor[0], cursor[1], limit + 1]
            rows = conn.execute(
                "SELECT sort_us, id, data FROM items WHERE event = ? AND state = 'published' AND pinned = 0 "
                f"{where} ORDER BY sort_us {direction}, id {direction} LIMIT ?",
                args,
            ).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            items.extend(item_from_record(json.loads(r[2])) for r in rows)
            nxt = encode_cursor(rows[-1][0], rows[-1][1]) if more and rows else None
            return Page(items=items, seq=seq, next=nxt)

        return await self._read(run)

    async def changes_since(self, event: str, since: int, *, limit: int = 1000) -> list[Change] | None:
        def run(conn: sqlite3.Connection) -> list[Change] | None:
            row = conn.execute("SELECT seq, min_seq FROM log_heads WHERE event = ?", (event,)).fetchone()
            head, min_seq = (int(row[0]), int(row[1])) if row else (0, 1)
            if since < min_seq - 1 or since > head:
                return None
            rows = conn.execute(
                "SELECT seq, op, item_id, public, at, item, message FROM changes "
                "WHERE event = ? AND seq > ? ORDER BY seq LIMIT ?",
                (event, since, limit),
            ).fetchall()
            return [_change_from_row(event, r) for r in rows]

        return await self._read(run)

    async def load_statuses(self) -> dict[str, SourceStatus]:
        def run(conn: sqlite3.Connection) -> dict[str, SourceStatus]:
            rows = conn.execute("SELECT id, data FROM source_status").fetchall()
            return {r[0]: SourceStatus.from_record(json.loads(r[1])) for r in rows}

        return await self._read(run)


def _with_message(change: Change) -> Change:
    return dataclasses.replace(change, message=change_message(change))


def _change_from_row(event: str, row: tuple[Any, ...]) -> Change:
    seq, op, item_id, public, at, item, message = row
    when = parse_rfc3339(at)
    assert when is not None
    return Change(
        event=event,
        seq=int(seq),
        op=op,
        item_id=item_id,
        item=item_from_record(json.loads(item)) if item else None,
        public=bool(public),
        at=when,
        message=message,
    )

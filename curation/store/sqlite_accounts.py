"""Editor accounts in SQLite: the AccountStore methods, mixed into SQLiteStore (same writer thread, same file).

Times are stored as Unix seconds (REAL) so expiry is one indexed comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from curation.errors import StoreError
from curation.store.accounts import ROLES, EditorRecord, RoleName, SessionRecord, TokenRecord

T = TypeVar("T")

ACCOUNTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS editors (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('admin', 'editor')),
    created_at REAL NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES editors (name), created_at REAL NOT NULL,
    last_used_at REAL);
CREATE INDEX IF NOT EXISTS tokens_name ON tokens (name);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_name ON sessions (name);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
"""

#: a token's last use is written at most this often (seconds): automation may call many times a second,
#: and each write takes the one writer thread
TOKEN_USE_RESOLUTION = 60.0

_EDITOR_COLUMNS = "name, password_hash, role, created_at, disabled"


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _editor(row: tuple[Any, ...]) -> EditorRecord:
    name, password_hash, role, created_at, disabled = row[:5]
    if role not in ROLES:
        raise ValueError(f"editor {name!r}: unknown role {role!r} in the store")
    return EditorRecord(
        name=name,
        password_hash=password_hash,
        role=cast(RoleName, role),
        created_at=_dt(created_at),
        disabled=bool(disabled),
    )


def _session(row: tuple[Any, ...]) -> SessionRecord:
    session_id, name, csrf, created_at, expires_at = row
    return SessionRecord(id=session_id, name=name, csrf=csrf, created_at=_dt(created_at), expires_at=_dt(expires_at))


class AccountsMixin:
    """AccountStore for SQLiteStore; relies on its `_write` (writer thread, one transaction) and `_read`."""

    if TYPE_CHECKING:

        def _write(
            self, fn: Callable[[sqlite3.Connection], T], after: Callable[[T], None] | None = None
        ) -> asyncio.Future[T]: ...

        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- editors ---------------------------------------------------------------------------

    async def put_editor(self, name: str, password_hash: str, role: RoleName, *, now: datetime) -> bool:
        if role not in ROLES:
            raise ValueError(f"editor {name!r}: role must be one of {', '.join(ROLES)}, not {role!r}")

        def run(conn: sqlite3.Connection) -> bool:
            updated = conn.execute(
                "UPDATE editors SET password_hash = ?, role = ?, disabled = 0 WHERE name = ?",
                (password_hash, role, name),
            ).rowcount
            if updated:
                return False
            conn.execute(
                f"INSERT INTO editors ({_EDITOR_COLUMNS}) VALUES (?, ?, ?, ?, 0)",
                (name, password_hash, role, _ts(now)),
            )
            return True

        return await self._write(run)

    async def get_editor(self, name: str) -> EditorRecord | None:
        def run(conn: sqlite3.Connection) -> EditorRecord | None:
            row = conn.execute(f"SELECT {_EDITOR_COLUMNS} FROM editors WHERE name = ?", (name,)).fetchone()
            return _editor(row) if row else None

        return await self._read(run)

    async def list_editors(self) -> list[EditorRecord]:
        def run(conn: sqlite3.Connection) -> list[EditorRecord]:
            return [_editor(r) for r in conn.execute(f"SELECT {_EDITOR_COLUMNS} FROM editors ORDER BY name")]

        return await self._read(run)

    async def set_editor_disabled(self, name: str, disabled: bool) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute("UPDATE editors SET disabled = ? WHERE name = ?", (int(disabled), name)).rowcount)

        return await self._write(run)

    # -- bearer tokens ---------------------------------------------------------------------

    async def add_token(self, name: str, token_hash: str, *, now: datetime) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM editors WHERE name = ?", (name,)).fetchone() is None:
                raise LookupError(f"no such editor: {name}")
            conn.execute("INSERT INTO tokens VALUES (?, ?, ?, NULL)", (token_hash, name, _ts(now)))

        await self._write(run)

    async def editor_for_token(self, token_hash: str, *, now: datetime) -> EditorRecord | None:
        def find(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(
                "SELECT e.name, e.password_hash, e.role, e.created_at, e.disabled, t.last_used_at "
                "FROM tokens t JOIN editors e ON e.name = t.name WHERE t.token_hash = ?",
                (token_hash,),
            ).fetchone()
            return row

        row = await self._read(find)
        if row is None:
            return None
        last_used = row[5]
        if last_used is None or _ts(now) - last_used >= TOKEN_USE_RESOLUTION:

            def touch(conn: sqlite3.Connection) -> None:
                conn.execute("UPDATE tokens SET last_used_at = ? WHERE token_hash = ?", (_ts(now), token_hash))

            # bookkeeping only: a locked or full file must not turn the editor away (reads still work)
            with contextlib.suppress(StoreError):
                await self._write(touch)
        return _editor(row)

    async def list_tokens(self, name: str) -> list[TokenRecord]:
        def run(conn: sqlite3.Connection) -> list[TokenRecord]:
            rows = conn.execute(
                "SELECT token_hash, name, created_at, last_used_at FROM tokens WHERE name = ? ORDER BY created_at",
                (name,),
            ).fetchall()
            return [
                TokenRecord(token_hash=h, name=n, created_at=_dt(c), last_used_at=_dt(u) if u is not None else None)
                for h, n, c, u in rows
            ]

        return await self._read(run)

    async def delete_token(self, token_hash: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,)).rowcount)

        return await self._write(run)

    # -- desk sessions ---------------------------------------------------------------------

    async def add_session(self, session: SessionRecord) -> None:
        values = (session.id, session.name, session.csrf, _ts(session.created_at), _ts(session.expires_at))

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", values)

        await self._write(run)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        def run(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute(
                "SELECT id, name, csrf, created_at, expires_at FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return _session(row) if row else None

        return await self._read(run)

    async def delete_session(self, session_id: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

        await self._write(run)

    async def delete_sessions_of(self, name: str) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount

        return await self._write(run)

    async def delete_expired_sessions(self, now: datetime) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (_ts(now),)).rowcount

        return await self._write(run)

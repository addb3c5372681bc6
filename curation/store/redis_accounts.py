"""Editor accounts in Redis: the AccountStore methods, mixed into RedisStore (same client, same key prefix).

Three hashes of JSON records (`editors` by name, `tokens` by token hash, `sessions` by id) and a sorted set
of session expiries; times are Unix seconds, as in SQLite. Read-modify-writes are WATCHed transactions.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from curation.codec import dumps
from curation.store.accounts import ROLES, EditorRecord, RoleName, SessionRecord, TokenRecord
from curation.store.redis_keys import Write
from curation.store.sqlite_accounts import TOKEN_USE_RESOLUTION

T = TypeVar("T")


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _editor(name: str, raw: str) -> EditorRecord:
    record = json.loads(raw)
    role = record["role"]
    if role not in ROLES:
        raise ValueError(f"editor {name!r}: unknown role {role!r} in the store")
    return EditorRecord(
        name=name,
        password_hash=record["password_hash"],
        role=cast(RoleName, role),
        created_at=_dt(record["created_at"]),
        disabled=bool(record["disabled"]),
    )


def _session(session_id: str, raw: str) -> SessionRecord:
    r = json.loads(raw)
    return SessionRecord(session_id, r["name"], r["csrf"], _dt(r["created_at"]), _dt(r["expires_at"]))


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisAccountsMixin:
    """AccountStore for RedisStore; relies on its `_read`, `_transact`, `_script` and `_k`."""

    if TYPE_CHECKING:

        async def _read(self, fn: Callable[[Redis], Awaitable[T]]) -> T: ...

        async def _transact(self, body: Callable[[Pipeline], Awaitable[tuple[T, Write | None]]]) -> T: ...

        async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

        def _k(self, name: str) -> str: ...

    # -- editors ---------------------------------------------------------------------------

    async def put_editor(self, name: str, password_hash: str, role: RoleName, *, now: datetime) -> bool:
        if role not in ROLES:
            raise ValueError(f"editor {name!r}: role must be one of {', '.join(ROLES)}, not {role!r}")
        key = self._k("editors")

        async def body(pipe: Pipeline) -> tuple[bool, Write | None]:
            await pipe.watch(key)
            raw = await pipe.hget(key, name)
            created = json.loads(raw)["created_at"] if raw else now.timestamp()
            record = {"password_hash": password_hash, "role": role, "created_at": created, "disabled": False}
            return raw is None, lambda tx: tx.hset(key, name, dumps(record))

        return await self._transact(body)

    async def get_editor(self, name: str) -> EditorRecord | None:
        raw = await self._read(lambda r: r.hget(self._k("editors"), name))
        return _editor(name, _str(raw)) if raw else None

    async def list_editors(self) -> list[EditorRecord]:
        rows = await self._read(lambda r: r.hgetall(self._k("editors")))
        return sorted((_editor(_str(n), _str(raw)) for n, raw in rows.items()), key=lambda e: e.name)

    async def set_editor_disabled(self, name: str, disabled: bool) -> bool:
        key = self._k("editors")

        async def body(pipe: Pipeline) -> tuple[bool, Write | None]:
            await pipe.watch(key)
            raw = await pipe.hget(key, name)
            if raw is None:
                return False, None
            record = {**json.loads(raw), "disabled": disabled}
            return True, lambda tx: tx.hset(key, name, dumps(record))

        return await self._transact(body)

    # -- bearer tokens ---------------------------------------------------------------------

    async def add_token(self, name: str, token_hash: str, *, now: datetime) -> None:
        editors, tokens = self._k("editors"), self._k("tokens")
        record = {"name": name, "created_at": now.timestamp(), "last_used_at": None}

        async def body(pipe: Pipeline) -> tuple[None, Write | None]:
            await pipe.watch(editors)
            if not await pipe.hexists(editors, name):
                raise LookupError(f"no such editor: {name}")
            return None, lambda tx: tx.hset(tokens, token_hash, dumps(record))

        await self._transact(body)

    async def editor_for_token(self, token_hash: str, *, now: datetime) -> EditorRecord | None:
        tokens = self._k("tokens")
        found = await self._script("token", [tokens, self._k("editors")], [token_hash])
        if not found:
            return None
        token, editor = json.loads(found[0]), json.loads(found[1])
        last_used = token["last_used_at"]
        if last_used is None or now.timestamp() - last_used >= TOKEN_USE_RESOLUTION:

            async def touch(pipe: Pipeline) -> tuple[None, Write | None]:
                await pipe.watch(tokens)
                raw = await pipe.hget(tokens, token_hash)
                if raw is None:
                    return None, None  # revoked meanwhile: do not bring it back
                record = {**json.loads(raw), "last_used_at": now.timestamp()}
                return None, lambda tx: tx.hset(tokens, token_hash, dumps(record))

            await self._transact(touch)
        return _editor(token["name"], dumps(editor))

    async def list_tokens(self, name: str) -> list[TokenRecord]:
        rows = await self._read(lambda r: r.hgetall(self._k("tokens")))
        found = []
        for token_hash, raw in rows.items():
            record = json.loads(raw)
            if record["name"] == name:
                used = record["last_used_at"]
                found.append(
                    TokenRecord(
                        _str(token_hash), name, _dt(record["created_at"]), _dt(used) if used is not None else None
                    )
                )
        return sorted(found, key=lambda t: t.created_at)

    async def delete_token(self, token_hash: str) -> bool:
        return bool(await self._read(lambda r: r.hdel(self._k("tokens"), token_hash)))

    # -- desk sessions ---------------------------------------------------------------------

    async def add_session(self, session: SessionRecord) -> None:
        record = {
            "name": session.name,
            "csrf": session.csrf,
            "created_at": session.created_at.timestamp(),
            "expires_at": session.expires_at.timestamp(),
        }

        async def run(client: Redis) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._k("sessions"), session.id, dumps(record))
                pipe.zadd(self._k("sessions:expiry"), {session.id: session.expires_at.timestamp()})
                await pipe.execute()

        await self._read(run)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        raw = await self._read(lambda r: r.hget(self._k("sessions"), session_id))
        return _session(session_id, _str(raw)) if raw else None

    async def delete_session(self, session_id: str) -> None:
        await self._end_sessions([session_id])

    async def _end_sessions(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0

        async def run(client: Redis) -> int:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._k("sessions"), *ids)
                pipe.zrem(self._k("sessions:expiry"), *ids)
                gone, _ = await pipe.execute()
                return int(gone)

        return await self._read(run)

    async def delete_sessions_of(self, name: str) -> int:
        rows = await self._read(lambda r: r.hgetall(self._k("sessions")))
        # HDEL counts only what it removed, so a session ended meanwhile by someone else is not counted twice
        return await self._end_sessions([_str(i) for i, raw in rows.items() if json.loads(raw)["name"] == name])

    async def delete_expired_sessions(self, now: datetime) -> int:
        ids = await self._read(lambda r: r.zrange(self._k("sessions:expiry"), "-inf", now.timestamp(), byscore=True))
        return await self._end_sessions(cast(list[str], ids))

"""The desk's settings in Redis: header, mutes, audit trail, desk-added sources and events, source statuses.

Mixed into RedisStore. Each audited write is a WATCHed transaction on the event's meta hash (where the
audit ids are counted) through EventView, so the setting and its audit entry land together.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from curation.codec import dumps
from curation.errors import VersionConflict
from curation.header import Header, header_from_record, header_to_record
from curation.models import SourceStatus, rfc3339, utcnow
from curation.store import AuditEntry, RuntimeEvent, RuntimeSource
from curation.store.redis_keys import EventKeys, Write, exact_us, from_us
from curation.store.redis_view import EventView, text

T = TypeVar("T")


class RedisDeskMixin:
    """Part of RedisStore; relies on its `_read`, `_transact`, `_view`, `_k` and `_keys`."""

    if TYPE_CHECKING:

        async def _read(self, fn: Callable[[Redis], Awaitable[T]]) -> T: ...

        async def _transact(self, body: Callable[[Pipeline], Awaitable[tuple[T, Write | None]]]) -> T: ...

        async def _view(self, pipe: Pipeline, event: str, *watch: str) -> EventView: ...

        def _k(self, name: str) -> str: ...

        def _keys(self, event: str) -> EventKeys: ...

    # -- audit, header, mutes --------------------------------------------------------------

    async def audit(self, event: str, *, limit: int = 200, before: int | None = None) -> list[AuditEntry]:
        top = f"({before}" if before is not None else "+inf"
        count = max(1, min(limit, 1000))
        rows = await self._read(
            lambda r: r.zrange(self._keys(event).audit, top, "-inf", desc=True, byscore=True, offset=0, num=count)
        )
        entries = []
        for row in cast(list[str], rows):
            a = json.loads(row)
            entries.append(
                AuditEntry(a["id"], event, a["seq"], a["at"], a["editor"], a["action"], a["item_id"], a["detail"])
            )
        return entries

    async def get_header(self, event: str) -> Header | None:
        raw = text(await self._read(lambda r: r.get(self._keys(event).header)))
        return header_from_record(json.loads(raw)) if raw else None

    async def set_header(self, event: str, header: Header, *, editor: str, now: datetime | None = None) -> Header:
        when = now or utcnow()
        key = self._keys(event).header

        async def body(pipe: Pipeline) -> tuple[Header, Write | None]:
            view = await self._view(pipe, event, key)
            raw = text(await pipe.get(key))
            stored = header_from_record(json.loads(raw)) if raw else None
            current = stored.version if stored else 0
            if header.version != current:
                raise VersionConflict(stored or Header(), header.version)
            after = dataclasses.replace(header, updated_at=when, updated_by=editor, version=current + 1)
            view.also("SET", key, dumps(header_to_record(after)))
            detail = {"before": header_to_record(stored) if stored else None, "version": after.version}
            view.audit(None, when, editor, "header", "", detail)
            return after, view.write

        return await self._transact(body)

    async def mute_source(
        self, event: str, source_id: str, until: datetime | None, *, editor: str, now: datetime | None = None
    ) -> None:
        when = now or utcnow()
        key = self._keys(event).mutes

        async def body(pipe: Pipeline) -> tuple[None, Write | None]:
            view = await self._view(pipe, event)
            if until is None or until <= when:
                view.also("HDEL", key, source_id)
            else:
                view.also("HSET", key, source_id, exact_us(until))
            detail = {"source_id": source_id, "until": rfc3339(until) if until and until > when else None}
            view.audit(None, when, editor, "mute" if detail["until"] else "unmute", "", detail)
            return None, view.write

        await self._transact(body)

    async def mutes(self, event: str, *, now: datetime | None = None) -> dict[str, datetime]:
        threshold = exact_us(now or utcnow())
        rows = await self._read(lambda r: r.hgetall(self._keys(event).mutes))
        ends = {str(text(s)): int(text(u) or 0) for s, u in rows.items()}
        return {source_id: from_us(until) for source_id, until in ends.items() if until > threshold}

    # -- desk-added sources and events -------------------------------------------------------

    async def add_runtime_source(
        self, event: str, source_id: str, definition: dict[str, Any], *, editor: str, now: datetime | None = None
    ) -> None:
        when = now or utcnow()
        record = {"definition": definition, "added_by": editor, "added_at": rfc3339(when)}

        async def body(pipe: Pipeline) -> tuple[None, Write | None]:
            view = await self._view(pipe, event)
            view.also("HSET", self._k("runtime:sources"), dumps([event, source_id]), dumps(record))
            view.audit(None, when, editor, "add-source", source_id, {"definition": definition})
            return None, view.write

        await self._transact(body)

    async def remove_runtime_source(
        self, event: str, source_id: str, *, editor: str, now: datetime | None = None
    ) -> bool:
        when = now or utcnow()
        key, field = self._k("runtime:sources"), dumps([event, source_id])

        async def body(pipe: Pipeline) -> tuple[bool, Write | None]:
            view = await self._view(pipe, event, key)
            if not await pipe.hexists(key, field):
                return False, None
            view.also("HDEL", key, field)
            view.audit(None, when, editor, "remove-source", source_id, {})
            return True, view.write

        return await self._transact(body)

    async def runtime_sources(self) -> list[RuntimeSource]:
        rows = await self._read(lambda r: r.hgetall(self._k("runtime:sources")))
        found = []
        for field, raw in rows.items():
            (event, source_id), record = json.loads(str(text(field))), json.loads(str(text(raw)))
            found.append(RuntimeSource(event, source_id, record["definition"], record["added_by"], record["added_at"]))
        return sorted(found, key=lambda s: (s.added_at, s.event, s.source_id))

    async def put_runtime_event(
        self, slug: str, settings: dict[str, Any], *, editor: str, now: datetime | None = None
    ) -> None:
        when = now or utcnow()
        key, counter = self._k("runtime:events"), self._k("runtime:events:order")

        async def body(pipe: Pipeline) -> tuple[None, Write | None]:
            view = await self._view(pipe, slug, key, counter)
            raw = text(await pipe.hget(key, slug))
            stored = json.loads(raw) if raw else None
            order = stored["order"] if stored else int(text(await pipe.get(counter)) or 0) + 1
            if not stored:
                view.also("SET", counter, order)
            record = {"settings": settings, "updated_by": editor, "updated_at": rfc3339(when), "order": order}
            view.also("HSET", key, slug, dumps(record))
            before = stored["settings"] if stored else None
            view.audit(None, when, editor, "event-settings", slug, {"settings": settings, "before": before})
            return None, view.write

        await self._transact(body)

    async def runtime_events(self) -> list[RuntimeEvent]:
        rows = await self._read(lambda r: r.hgetall(self._k("runtime:events")))
        records = sorted(((json.loads(str(text(raw))), str(text(slug))) for slug, raw in rows.items()), key=_order)
        return [RuntimeEvent(slug, r["settings"], r["updated_by"], r["updated_at"]) for r, slug in records]

    # -- source statuses -------------------------------------------------------------------

    async def save_status(self, status: SourceStatus) -> None:
        record = dumps(status.to_record())
        await self._read(lambda r: r.hset(self._k("statuses"), status.id, record))

    async def load_statuses(self) -> dict[str, SourceStatus]:
        rows = await self._read(lambda r: r.hgetall(self._k("statuses")))
        return {str(text(i)): SourceStatus.from_record(json.loads(str(text(raw)))) for i, raw in rows.items()}


def _order(pair: tuple[dict[str, Any], str]) -> int:
    return int(pair[0]["order"])

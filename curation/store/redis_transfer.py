"""Export and import of one event for RedisStore (curation/transfer.py has the document's format).

The export is read in one MULTI (one instant); the import is one WATCHed transaction that replaces
every key of the event, so a process reading the event sees it before or after, never half-written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from curation.codec import dumps, item_from_record, item_to_record
from curation.models import Item, ItemState, rfc3339, utcnow
from curation.normalize import canonical_url
from curation.store.redis_keys import EventKeys, Write, index_keys, key_field, member, sort_us, unlex
from curation.store.redis_view import scheduled_key, text
from curation.transfer import EventDump, TransferError

T = TypeVar("T")


class RedisTransferMixin:
    """dump_event / load_event for RedisStore; relies on its `_read`, `_transact`, `_k` and `_keys`."""

    if TYPE_CHECKING:
        prefix: str

        async def _read(self, fn: Callable[[Redis], Awaitable[T]]) -> T: ...

        async def _transact(self, body: Callable[[Pipeline], Awaitable[tuple[T, Write | None]]]) -> T: ...

        def _k(self, name: str) -> str: ...

        def _keys(self, event: str) -> EventKeys: ...

    async def dump_event(self, slug: str) -> EventDump | None:
        k = self._keys(slug)

        async def run(client: Redis) -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hget(k.meta, "seq")
                pipe.hget(self._k("runtime:events"), slug)
                pipe.hvals(k.items)
                pipe.hgetall(k.keys)
                pipe.zrange(k.audit, 0, -1)
                pipe.get(k.header)
                pipe.hgetall(k.mutes)
                pipe.hgetall(self._k("runtime:sources"))
                return await pipe.execute()

        head, settings, items, keys, audit, header, mutes, sources = await self._read(run)
        if head is None and settings is None and not items:
            return None
        records = sorted((json.loads(raw) for raw in items), key=lambda r: member(item_from_record(r)))
        desk = json.loads(settings) if settings else None
        header_record = json.loads(header) if header else None
        added = []
        for field, raw in sources.items():
            event, source_id = json.loads(field)
            if event == slug:
                r = json.loads(raw)
                added.append({"id": source_id, "definition": r["definition"], "by": r["added_by"], "at": r["added_at"]})
        rows = []
        for field, item_id in keys.items():
            source_id, _, key = field.partition(" ")
            rows.append((source_id, key, item_id))
        trail = [json.loads(raw) for raw in audit]
        return EventDump(
            slug=slug,
            head=int(head or 0),
            items=records,
            keys=sorted(rows),
            audit=[{key: a[key] for key in ("seq", "at", "editor", "action", "item_id", "detail")} for a in trail],
            header=header_record,
            header_version=int(header_record.get("version", 0)) if header_record else 0,
            mutes={source_id: int(until) for source_id, until in mutes.items()},
            settings=desk["settings"] if desk else None,
            settings_by=desk["updated_by"] if desk else "",
            settings_at=desk["updated_at"] if desk else "",
            sources=sorted(added, key=lambda s: str(s["at"])),
        )

    async def load_event(self, dump: EventDump, *, replace: bool = False, editor: str = "import") -> int:
        """Write an exported event in one transaction; returns how many items it holds.

        Raises:
            TransferError: the event already has items or a log here, and `replace` is not set.
        """
        items = [item_from_record(record) for record in dump.items]
        when = rfc3339(utcnow()) or ""
        slug, k = dump.slug, self._keys(dump.slug)
        events, counter, sources = (
            self._k("runtime:events"),
            self._k("runtime:events:order"),
            self._k("runtime:sources"),
        )

        async def body(pipe: Pipeline) -> tuple[int, Write | None]:
            held = k.state(ItemState.SCHEDULED)
            await pipe.watch(k.meta, k.items, held, events, counter, sources)
            if (await pipe.hlen(k.items) or await pipe.hexists(k.meta, "seq")) and not replace:
                raise TransferError(f"event {slug!r} already has items in this store (import with --replace)")
            scheduled = [unlex(m)[1] for m in cast(list[str], await pipe.zrange(held, 0, -1))]
            fields = [str(text(f)) for f in await pipe.hkeys(sources)]
            theirs = [f for f in fields if json.loads(f)[0] == slug]
            stored = text(await pipe.hget(events, slug))
            order = json.loads(stored)["order"] if stored else int(text(await pipe.get(counter)) or 0) + 1

            def write(tx: Pipeline) -> None:
                tx.delete(*k.every_key())
                if scheduled:
                    tx.zrem(scheduled_key(self.prefix), *(dumps([slug, i]) for i in scheduled))
                if theirs:
                    tx.hdel(sources, *theirs)
                tx.hdel(events, slug)
                for item in items:
                    _put(tx, k, item, scheduled_key(self.prefix))
                if dump.keys:
                    tx.hset(k.keys, mapping={key_field(s, key): item_id for s, key, item_id in dump.keys})
                audit = [*dump.audit, _import_entry(dump, editor, when)]
                tx.zadd(k.audit, {dumps({**a, "id": n, "seq": a.get("seq")}): n for n, a in enumerate(audit, 1)})
                # the log restarts at its old position with nothing in it: a reader from before resets once
                tx.hset(k.meta, mapping={"seq": dump.head, "min": dump.head + 1, "audit": len(audit)})
                if dump.header is not None:
                    tx.set(k.header, dumps({**dump.header, "version": dump.header_version}))
                if dump.mutes:
                    tx.hset(k.mutes, mapping={s: u for s, u in dump.mutes.items()})
                if dump.settings is not None:
                    record = {
                        "settings": dump.settings,
                        "updated_by": dump.settings_by or editor,
                        "updated_at": dump.settings_at or when,
                        "order": order,
                    }
                    tx.hset(events, slug, dumps(record))
                    if not stored:
                        tx.set(counter, order)
                for source in dump.sources:
                    record = {
                        "definition": source["definition"],
                        "added_by": str(source.get("by") or editor),
                        "added_at": str(source.get("at") or when),
                    }
                    tx.hset(sources, dumps([slug, source["id"]]), dumps(record))

            return len(items), write

        return await self._transact(body)


def _put(tx: Pipeline, k: EventKeys, item: Item, scheduled: str) -> None:
    tx.hset(k.items, item.id, dumps(item_to_record(item)))
    for index in index_keys(k, item):
        tx.zadd(index, {member(item): 0})
    if item.url:
        tx.hsetnx(k.curl, canonical_url(item.url), item.id)
    if item.state is ItemState.SCHEDULED:
        tx.zadd(scheduled, {dumps([k.slug, item.id]): sort_us(item)})


def _import_entry(dump: EventDump, editor: str, when: str) -> dict[str, Any]:
    return {
        "seq": None,
        "at": when,
        "editor": editor,
        "action": "import",
        "item_id": dump.slug,
        "detail": {"items": len(dump.items), "head": dump.head},
    }

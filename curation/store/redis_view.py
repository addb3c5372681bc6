"""One event as a Redis write transaction sees it: WATCHed reads, the writes laid over them, then one MULTI.

The store's decisions (timeline.*, posts.*) run in Python on what this view returns; the view remembers
every item as it was read so the commit can move it between indexes, and queues every write for EXEC.
Because each key read is WATCHed first, a concurrent writer in another process makes EXEC fail and the
whole call is tried again: seqs never repeat and no update is lost.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from redis.asyncio.client import Pipeline

from curation.codec import change_message, dumps, item_from_record, item_to_record
from curation.models import Change, ChangeOp, Item, ItemState, parse_rfc3339, rfc3339
from curation.normalize import canonical_url
from curation.store.redis_keys import EventKeys, exact_us, index_keys, member, sort_us

Text = bytes | str | None


def text(value: Text) -> str | None:
    """A reply as text (the client decodes responses; bytes only if someone opened it otherwise)."""
    return value.decode() if isinstance(value, bytes) else value


def scheduled_key(prefix: str) -> str:
    """ZSET over every event: score = publication time (us), member = JSON [slug, item id]."""
    return f"{prefix}scheduled"


def change_fields(change: Change) -> dict[str, str]:
    """A change as the fields of its log stream entry: few fields, because each one costs a parse on reading."""
    record = {
        "op": change.op,
        "item_id": change.item_id,
        "public": change.public,
        "at": change.at.isoformat(),
        "item": item_to_record(change.item) if change.item is not None else None,
    }
    return {"c": dumps(record), "m": change.message or ""}


def change_from_entry(event: str, entry_id: str, data: str, message: str) -> Change:
    """A change from its log stream entry: its id, its `c` field and its `m` field."""
    record = json.loads(data)
    when = parse_rfc3339(record["at"])
    assert when is not None
    op: ChangeOp = "remove" if record["op"] == "remove" else "upsert"
    return Change(
        event=event,
        seq=int(entry_id.partition("-")[0]),
        op=op,
        item_id=record["item_id"],
        item=item_from_record(record["item"]) if record.get("item") else None,
        public=bool(record["public"]),
        at=when,
        message=message or None,
    )


class EventView:
    """Reads of one event inside a WATCH, with this call's own writes visible to its later reads."""

    def __init__(self, pipe: Pipeline, keys: EventKeys, *, retention: int) -> None:
        self.pipe = pipe
        self.keys = keys
        self.retention = retention
        self.head = 0
        self.min_seq = 1
        self.audit_id = 0
        self.changes: list[Change] = []
        self._keys: dict[str, str | None] = {}
        self._items: dict[str, Item | None] = {}
        self._stored: dict[str, Item | None] = {}
        self._curls: dict[str, str | None] = {}
        self._dirty_keys: set[str] = set()
        self._dirty_curls: set[str] = set()
        self._audits: list[dict[str, Any]] = []
        self._writes: list[tuple[str, tuple[Any, ...]]] = []

    @classmethod
    async def open(cls, pipe: Pipeline, keys: EventKeys, *watch: str, retention: int) -> EventView:
        """WATCH the event's meta (log head, audit ids) and `watch`, then read the meta."""
        await pipe.watch(keys.meta, *watch)
        view = cls(pipe, keys, retention=retention)
        seq, min_seq, audit_id = await pipe.hmget(keys.meta, ["seq", "min", "audit"])
        view.head = int(text(seq) or 0)
        view.min_seq = int(text(min_seq) or 1)
        view.audit_id = int(text(audit_id) or 0)
        return view

    # -- reads, cached and overlaid -----------------------------------------------------------------

    async def load_keys(self, fields: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(f for f in fields if f not in self._keys))
        if wanted:
            for field, value in zip(wanted, await self.pipe.hmget(self.keys.keys, wanted), strict=True):
                self._keys[field] = text(value)

    async def load_items(self, ids: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(i for i in ids if i not in self._items))
        if wanted:
            for item_id, value in zip(wanted, await self.pipe.hmget(self.keys.items, wanted), strict=True):
                raw = text(value)
                item = item_from_record(json.loads(raw)) if raw else None
                self._items[item_id] = self._stored[item_id] = item

    async def load_curls(self, curls: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(c for c in curls if c not in self._curls))
        if wanted:
            for curl, value in zip(wanted, await self.pipe.hmget(self.keys.curl, wanted), strict=True):
                self._curls[curl] = text(value)

    def cached_key(self, field: str) -> str | None:
        return self._keys.get(field)

    def cached_curl(self, curl: str) -> str | None:
        return self._curls.get(curl)

    async def key(self, field: str) -> str | None:
        """The item id an entry key stands for, "" for a key left out, None for a key never seen."""
        await self.load_keys([field])
        return self._keys[field]

    async def item(self, item_id: str) -> Item | None:
        await self.load_items([item_id])
        return self._items[item_id]

    async def curl_owner(self, curl: str) -> str | None:
        await self.load_curls([curl])
        return self._curls[curl]

    async def muted(self, source_id: str, now: datetime) -> bool:
        until = text(await self.pipe.hget(self.keys.mutes, source_id))
        return until is not None and int(until) > exact_us(now)

    # -- writes, queued ---------------------------------------------------------------------------

    def map_key(self, field: str, item_id: str) -> None:
        """Remember what an entry key stands for, unless it already stands for something."""
        if self._keys.get(field) is None:
            self._keys[field] = item_id
            self._dirty_keys.add(field)

    async def put(self, item: Item) -> None:
        """Store the item as it is now (its indexes and canonical URL follow at commit)."""
        previous = await self.item(item.id)
        old = canonical_url(previous.url) if previous is not None and previous.url else None
        new = canonical_url(item.url) if item.url else None
        if old != new:
            if old and await self.curl_owner(old) == item.id:
                self._curls[old] = None
                self._dirty_curls.add(old)
            if new and not await self.curl_owner(new):
                self._curls[new] = item.id
                self._dirty_curls.add(new)
        self._items[item.id] = item

    def log(self, change: Change) -> Change:
        """Append a change (made with seq = head + 1) to the log, with its reader frame."""
        assert change.seq == self.head + 1, "a change takes the next seq"
        change = dataclasses.replace(change, message=change_message(change))
        self.head = change.seq
        self.changes.append(change)
        return change

    def audit(
        self, seq: int | None, when: datetime, editor: str, action: str, item_id: str, detail: dict[str, Any]
    ) -> None:
        self.audit_id += 1
        self._audits.append(
            {
                "id": self.audit_id,
                "seq": seq,
                "at": rfc3339(when),
                "editor": editor,
                "action": action,
                "item_id": item_id,
                "detail": detail,
            }
        )

    def also(self, command: str, *args: Any) -> None:
        """Queue one more plain command for the commit (mutes, headers, runtime settings)."""
        self._writes.append((command, args))

    @property
    def dirty(self) -> bool:
        return bool(
            self._dirty_keys or self._dirty_curls or self.changes or self._audits or self._writes or self._changed()
        )

    def _changed(self) -> list[str]:
        return [i for i, item in self._items.items() if item is not self._stored.get(i)]

    def write(self, pipe: Pipeline) -> None:
        """Queue every write of this view inside MULTI."""
        k = self.keys
        scheduled = scheduled_key(k.prefix)
        for item_id in self._changed():
            stored, item = self._stored.get(item_id), self._items[item_id]
            assert item is not None
            if stored is not None:
                for index in index_keys(k, stored):
                    pipe.zrem(index, member(stored))
                if stored.state is ItemState.SCHEDULED:
                    pipe.zrem(scheduled, dumps([k.slug, item_id]))
            pipe.hset(k.items, item_id, dumps(item_to_record(item)))
            for index in index_keys(k, item):
                pipe.zadd(index, {member(item): 0})
            if item.state is ItemState.SCHEDULED:
                pipe.zadd(scheduled, {dumps([k.slug, item_id]): sort_us(item)})
        if self._dirty_keys:
            pipe.hset(k.keys, mapping={f: self._keys[f] or "" for f in self._dirty_keys})
        for curl in self._dirty_curls:
            owner = self._curls[curl]
            if owner:
                pipe.hset(k.curl, curl, owner)
            else:
                pipe.hdel(k.curl, curl)
        for change in self.changes:
            pipe.xadd(k.log, change_fields(change), id=f"{change.seq}-0")  # type: ignore[arg-type]
        if self.changes:
            # prune in steps of a tenth (as the SQLite store does) so the trim is not paid on every write
            if self.head - self.min_seq + 1 > self.retention + max(1, self.retention // 10):
                self.min_seq = self.head - self.retention + 1
                pipe.xtrim(k.log, minid=f"{self.min_seq}-0", approximate=False)
            # the seq counter moves by INCR: under the WATCH it lands exactly on self.head
            pipe.hincrby(k.meta, "seq", len(self.changes))
            pipe.hset(k.meta, "min", self.min_seq)
            pipe.publish(k.channel, str(self.head))
        if self._audits:
            pipe.zadd(k.audit, {dumps(a): a["id"] for a in self._audits})
            pipe.hincrby(k.meta, "audit", len(self._audits))
        for command, args in self._writes:
            pipe.execute_command(command, *args)

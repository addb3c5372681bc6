"""The shared store: Redis (redis-py asyncio), so several Fil processes on several machines serve one newsroom.

Writes are optimistic transactions: WATCH what the call reads, decide in Python with the same pure
functions as the SQLite store (timeline, posts), then MULTI/EXEC (redis_view.EventView). A writer in
another process touching the same keys makes EXEC fail and the call runs again on fresh reads, so seqs
never repeat, no update is lost and ingest stays idempotent across processes. Reads that must agree
with each other (a page and its seq) are one Lua script or one MULTI.

`listen()` hears this process's commits. Each commit also PUBLISHes the event's new head on
`<prefix>changes:<slug>`: the seam for fan-out across processes.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, WatchError

from curation import posts, timeline
from curation.codec import item_from_record, item_to_record
from curation.errors import ItemNotFound, StoreError, VersionConflict
from curation.models import Change, Entry, Event, Item, ItemState, Order, Page, Source, utcnow
from curation.normalize import canonical_url
from curation.posts import Post
from curation.store import DEFAULT_PAGE, MAX_PAGE, MAX_QUEUE, ChangeListener, Listeners
from curation.store.redis_accounts import RedisAccountsMixin
from curation.store.redis_desk import RedisDeskMixin
from curation.store.redis_keys import (
    LOG_SCRIPT,
    PAGE_SCRIPT,
    RECENT_SCRIPT,
    TOKEN_SCRIPT,
    EventKeys,
    Write,
    exact_us,
    key_field,
    lex,
    unlex,
)
from curation.store.redis_transfer import RedisTransferMixin
from curation.store.redis_view import EventView, change_from_entry, scheduled_key, text
from curation.store.sqlite import decode_cursor, encode_cursor

T = TypeVar("T")

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "fil:"
#: a write that keeps losing to other processes gives up after this many tries (a hot loop elsewhere)
MAX_ATTEMPTS = 100

Body = Callable[[Pipeline], Awaitable[tuple[T, Write | None]]]


def split_url(url: str) -> tuple[str, str | None]:
    """The URL without Fil's own `prefix=` query option, and that option."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), None)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def redact(url: str) -> str:
    """The URL as it may appear in messages and logs: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***" if parts.username else ":***"
    host = parts.hostname or ""
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


#: seconds a Redis call may take (or wait for a connection) before it fails (StoreError)
SOCKET_TIMEOUT = 5.0
#: connections one process opens to Redis at most
MAX_CONNECTIONS = 64


class RedisStore(Listeners, RedisDeskMixin, RedisAccountsMixin, RedisTransferMixin):
    def __init__(self, url: str, *, log_retention: int = 10000, prefix: str | None = None) -> None:
        base, given = split_url(url)
        self.url = base
        self.where = redact(base)
        self.prefix = prefix if prefix is not None else (given if given is not None else DEFAULT_PREFIX)
        try:
            parse_url(base)
        except ValueError as e:
            raise ValueError(f"CURATION_STORE={self.where!r}: {e}") from None
        self.log_retention = max(1, log_retention)
        self._listeners: list[ChangeListener] = []
        self._client: Redis | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._scripts: dict[str, AsyncScript] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        # a call that hangs (Redis paused, a partition) fails after SOCKET_TIMEOUT instead of holding a
        # request, a collector or the hub's catch-up forever
        # a bounded pool that waits for a free connection: a burst of calls (a reconnect storm) queues
        # briefly instead of failing with "too many connections"
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=SOCKET_TIMEOUT,
            decode_responses=True,
            socket_connect_timeout=10,
            socket_timeout=SOCKET_TIMEOUT,
        )
        client = Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
        meta = f"{self.prefix}meta"
        try:
            await client.ping()
            await client.hsetnx(meta, "schema_version", str(SCHEMA_VERSION))
            version = int(text(await client.hget(meta, "schema_version")) or SCHEMA_VERSION)
        except RedisError as e:
            await client.aclose()
            raise StoreError(f"cannot reach Redis at {self.where}: {e}") from e
        if version > SCHEMA_VERSION:
            await client.aclose()
            raise StoreError(f"{self.where} ({self.prefix}): schema version {version} is newer than this Fil")
        self._scripts = {
            "page": client.register_script(PAGE_SCRIPT),
            "recent": client.register_script(RECENT_SCRIPT),
            "log": client.register_script(LOG_SCRIPT),
            "token": client.register_script(TOKEN_SCRIPT),
        }
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- plumbing --------------------------------------------------------------------------

    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreError(f"{self.where}: store not opened")
        return self._client

    def client(self) -> Redis:
        """The connection pool, for what lives beside the store on the same Redis (collector leases,
        the cluster's notes)."""
        return self._redis()

    def subscriber(self) -> Redis:
        """A client of its own for a long-lived subscription: no read timeout (it waits for messages),
        pinged every few seconds instead so a dead connection is noticed."""
        return Redis.from_url(self.url, decode_responses=True, socket_connect_timeout=10, health_check_interval=5)

    def _k(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _keys(self, event: str) -> EventKeys:
        return EventKeys(self.prefix, event)

    def _lock(self, event: str) -> asyncio.Lock:
        # this process's writers to one event take turns, so they never make each other retry
        return self._locks.setdefault(event, asyncio.Lock())

    async def _view(self, pipe: Pipeline, event: str, *watch: str) -> EventView:
        return await EventView.open(pipe, self._keys(event), *watch, retention=self.log_retention)

    async def _read(self, fn: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            return await fn(self._redis())
        except RedisError as e:
            raise StoreError(f"{self.where}: {e}") from e

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            raise StoreError(f"{self.where}: store not opened")
        return await self._read(lambda client: script(keys=keys, args=args, client=client))

    async def _transact(self, body: Body[T]) -> T:
        """Run `body` (WATCH, read, decide; returns the result and the writes) until its MULTI/EXEC commits."""
        client = self._redis()
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with client.pipeline(transaction=True) as pipe:
                    result, write = await body(pipe)
                    if write is not None:
                        pipe.multi()  # type: ignore[no-untyped-call]
                        write(pipe)
                        await pipe.execute()
                    return result
            except WatchError:
                if attempt >= 2:  # a busy event: let the other writers through
                    await asyncio.sleep(random.uniform(0, 0.001 * attempt))
            except RedisError as e:
                raise StoreError(f"{self.where}: {e}") from e
        raise StoreError(
            f"{self.where}: gave up after {MAX_ATTEMPTS} tries, other processes kept writing the same keys"
        )

    # -- listeners -------------------------------------------------------------------------

    # -- items -----------------------------------------------------------------------------

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
        keys = self._keys(event.slug)
        taken = [entry for entry in entries if timeline.admitted(entry, source)]

        async def body(pipe: Pipeline) -> tuple[list[Change], Write | None]:
            view = await self._view(pipe, event.slug, keys.items, keys.curl, keys.keys, keys.mutes)
            fields = [key_field(source.id, key) for key in (*ignore, *(e.key for e in taken), *deleted)]
            await view.load_keys(fields)
            # fetch in bulk what the loop below will ask for, one entry at a time
            fresh = [e for e in taken if view.cached_key(key_field(source.id, e.key)) is None]
            await view.load_curls(canonical_url(e.url) for e in fresh if e.url)
            owners = (view.cached_curl(canonical_url(e.url)) for e in fresh if e.url)
            mapped = (view.cached_key(f) for f in fields)
            await view.load_items(
                [i for i in (*mapped, *owners) if i] + [timeline.item_id(source.id, e.key) for e in fresh]
            )
            muted = await view.muted(source.id, when)
            after: Item | None
            for key in ignore:
                view.map_key(key_field(source.id, key), "")
            for entry in taken:
                before, skip = await _find(view, source.id, entry)
                if skip:
                    continue  # seen before and left out, or the same story already in from another source
                if before is None:
                    item_id = timeline.item_id(source.id, entry.key)
                    after = timeline.new_item(entry, source, event, item_id_=item_id, now=when, muted=muted)
                else:
                    after = timeline.updated_item(before, entry, now=when)
                if after is None:
                    continue
                await view.put(after)
                view.map_key(key_field(source.id, entry.key), after.id)
                view.log(timeline.change_for(before, after, seq=view.head + 1, now=when))
            for key in deleted:
                item_id_ = await view.key(key_field(source.id, key))
                gone = await view.item(item_id_) if item_id_ else None
                if gone is None or gone.source_id != source.id:
                    continue  # never taken, or the story belongs to another source
                after = timeline.deleted_item(gone, now=when)
                if after is None:
                    continue
                await view.put(after)
                view.log(timeline.change_for(gone, after, seq=view.head + 1, now=when))
            return view.changes, view.write if view.dirty else None

        async with self._lock(event.slug):
            changes = await self._transact(body)
            self._notify(changes)
        return changes

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
        keys = self._keys(event)

        async def body(pipe: Pipeline) -> tuple[tuple[Item, Change | None], Write | None]:
            view = await self._view(pipe, event, *keys.item_keys())
            before = await view.item(item_id)
            if before is None:
                raise ItemNotFound(event, item_id)
            if version is not None and version != before.version:
                raise VersionConflict(before, version)
            after = timeline.acted(before, action, label=label, text=text)
            if after is None:
                return (before, None), None
            await view.put(after)
            change = view.log(timeline.change_for(before, after, seq=view.head + 1, now=when))
            detail = {"before": item_to_record(before), "label": label, "text": text, "version": after.version}
            view.audit(change.seq, when, editor, action, item_id, detail)
            return (after, change), view.write

        async with self._lock(event):
            result = await self._transact(body)
            if result[1] is not None:
                self._notify([result[1]])
        return result

    async def add_post(self, item: Item, *, editor: str, now: datetime | None = None) -> Change:
        when = now or utcnow()

        async def body(pipe: Pipeline) -> tuple[Change, Write | None]:
            view = await self._view(pipe, item.event, *self._keys(item.event).item_keys())
            await view.put(item)
            change = view.log(timeline.change_for(None, item, seq=view.head + 1, now=when))
            view.audit(change.seq, when, editor, "post", item.id, {"before": None})
            return change, view.write

        async with self._lock(item.event):
            change = await self._transact(body)
            self._notify([change])
        return change

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

        async def body(pipe: Pipeline) -> tuple[tuple[Item, Change], Write | None]:
            view = await self._view(pipe, event, *self._keys(event).item_keys())
            before = await view.item(item_id)
            if before is None or before.source_id != posts.DESK_SOURCE:
                raise ItemNotFound(event, item_id)
            if version is not None and version != before.version:
                raise VersionConflict(before, version)
            after = posts.corrected(before, post, editor=editor, now=when)
            await view.put(after)
            change = view.log(timeline.change_for(before, after, seq=view.head + 1, now=when))
            view.audit(change.seq, when, editor, "correct", item_id, {"before": item_to_record(before)})
            return (after, change), view.write

        async with self._lock(event):
            result = await self._transact(body)
            self._notify([result[1]])
        return result

    async def publish_due(self, *, now: datetime | None = None) -> list[Change]:
        when = now or utcnow()
        scheduled = scheduled_key(self.prefix)
        due_us = exact_us(when)
        # every process calls this every second: one cheap read when nothing is due
        if not await self._read(lambda r: r.zrange(scheduled, "-inf", due_us, byscore=True, offset=0, num=1)):
            return []

        async def body(pipe: Pipeline) -> tuple[list[Change], Write | None]:
            await pipe.watch(scheduled)
            views: dict[str, EventView] = {}
            stale: list[str] = []
            for raw in cast(list[str], await pipe.zrange(scheduled, "-inf", due_us, byscore=True)):
                slug, item_id = json.loads(raw)
                if slug not in views:
                    views[slug] = await self._view(pipe, slug, *self._keys(slug).item_keys())
                view = views[slug]
                before = await view.item(item_id)
                if before is None or before.state is not ItemState.SCHEDULED:
                    stale.append(raw)  # never left behind by a commit; dropped so it is not looked at every second
                    continue
                after = before.replace(state=ItemState.PUBLISHED, version=before.version + 1)
                await view.put(after)
                view.log(timeline.change_for(before, after, seq=view.head + 1, now=when))

            def write(tx: Pipeline) -> None:
                if stale:
                    tx.zrem(scheduled, *stale)
                for view in views.values():
                    view.write(tx)

            return [c for v in views.values() for c in v.changes], write if views else None

        changes = await self._transact(body)
        self._notify(changes)
        return changes

    # -- item reads ------------------------------------------------------------------------

    async def head(self, event: str) -> int:
        return int(text(await self._read(lambda r: r.hget(self._keys(event).meta, "seq"))) or 0)

    async def get_item(self, event: str, item_id: str) -> Item | None:
        raw = text(await self._read(lambda r: r.hget(self._keys(event).items, item_id)))
        return item_from_record(json.loads(raw)) if raw else None

    async def page(
        self, event: str, *, limit: int = DEFAULT_PAGE, before: str | None = None, order: Order = Order.NEWEST
    ) -> Page:
        limit = max(1, min(MAX_PAGE, limit))
        cursor = decode_cursor(before) if before else None
        newest = order is Order.NEWEST
        end = "-" if newest else "+"
        start = f"({lex(*cursor)}" if cursor is not None else ("+" if newest else "-")
        k = self._keys(event)
        head, pinned, members, found = await self._script(
            "page",
            [k.meta, k.items, k.pinned, k.timeline],
            ["1" if newest else "0", start, end, limit + 1, "1" if cursor is None else "0"],
        )
        more = len(members) > limit
        items = [item_from_record(json.loads(raw)) for raw in [*pinned, *found[:limit]] if raw]
        nxt = encode_cursor(*unlex(members[limit - 1])) if more else None
        return Page(items=items, seq=int(head), next=nxt)

    async def recent(self, event: str, *, states: Sequence[ItemState], limit: int = MAX_PAGE) -> tuple[int, list[Item]]:
        k = self._keys(event)
        limit = max(1, min(limit, MAX_QUEUE))
        indexes = [k.state(s) for s in dict.fromkeys(states)]
        if not indexes:
            return await self.head(event), []
        head, members, found = await self._script("recent", [k.meta, k.items, *indexes], [limit])
        newest = sorted(zip(members, found, strict=True), reverse=True)[:limit]
        return int(head), [item_from_record(json.loads(raw)) for _, raw in newest if raw]

    async def queue(self, event: str, *, limit: int = MAX_PAGE) -> list[Item]:
        return (await self.recent(event, states=(ItemState.QUEUED,), limit=limit))[1]

    async def changes_since(self, event: str, since: int, *, limit: int = 1000) -> list[Change] | None:
        k = self._keys(event)
        start = f"{min(max(since, 0), 2**63) + 1}-0"
        reply = await self._script("log", [k.meta, k.log], [start, max(1, limit)])
        head, first = int(reply[0]), int(reply[1])
        if since < first - 1 or since > head:
            return None
        flat = reply[2 : 2 + 3 * max(0, limit)]
        return [change_from_entry(event, *flat[i : i + 3]) for i in range(0, len(flat), 3)]


async def _find(view: EventView, source_id: str, entry: Entry) -> tuple[Item | None, bool]:
    """The item this entry already is, and whether it stands for an item of another source (as SQLite's)."""
    field = key_field(source_id, entry.key)
    mapped = await view.key(field)
    if mapped is not None:
        item = await view.item(mapped) if mapped else None
        return item, item is None or item.source_id != source_id
    if entry.url:
        owner = await view.curl_owner(canonical_url(entry.url))
        item = await view.item(owner) if owner else None
        if item is not None:
            view.map_key(field, item.id)
            return item, item.source_id != source_id
    return None, False

"""One websocket per Jetstream endpoint, shared by every Bluesky account source that streams from it.

Design: subscriptions come and go by DID. A newcomer that is live from now on is added to the open socket with an
`options_update`; one that must catch up from an older cursor (a source coming back after a drop or a restart) makes
the socket reconnect once, with that cursor (registrations are gathered for `settle` seconds, so a burst costs one
reconnect). The connection never retries on its own: when it drops, every subscription gets `Dropped` and each
source's stream() ends, so the runner polls those sources at once (the safety net) and subscribes them again with its
backoff; they come back with the cursor they persisted (the position the socket had reached), and the first one
opens a fresh socket that replays from there. Replayed events already handed out are recognized and skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from yarl import URL

from curation.collectors.atproto import POST, JetstreamEvent, MalformedPost, parse_frame
from curation.collectors.fetch import Fetcher
from curation.errors import FetchError

log = logging.getLogger("curation.collectors.jetstream")

#: time_us is the order Jetstream saw events in, not quite monotonic across its workers: resume a little earlier
RESUME_MARGIN_US = 5_000_000
#: once live, everything older than this was delivered (network and server lag included)
LIVE_LAG_US = 10_000_000
#: an event this close to our clock means the socket has caught up with the present
LIVE_WINDOW_US = 60_000_000
#: never ask for a replay older than this (Jetstream keeps ~36 h; a longer gap is the first poll's job)
MAX_REPLAY_US = 24 * 3600 * 1_000_000
#: events a subscription may have waiting before it is cut off (its source polls and comes back)
MAX_PENDING = 10_000
#: DIDs sent in the query string; more go in an options_update right after connecting (URL length limits)
MAX_QUERY_DIDS = 100
#: (did, collection, rkey, rev) of recent events, to skip the ones a replay sends again
RECENT_EVENTS = 20_000


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Opened:
    """The socket is open and this subscription's DID is in its filter."""

    since: datetime


@dataclass(frozen=True, slots=True)
class Dropped:
    """The socket is gone (or this subscription fell too far behind); `position` is where it had got to."""

    reason: str
    position: int | None


Notice = JetstreamEvent | Opened | Dropped


class RecentKeys:
    """A bounded set of recently seen keys (oldest forgotten first)."""

    def __init__(self, limit: int = RECENT_EVENTS) -> None:
        self._limit = limit
        self._order: deque[Hashable] = deque()
        self._keys: set[Hashable] = set()

    def add(self, key: Hashable) -> bool:
        """Remember `key`; False when it was already there."""
        if key in self._keys:
            return False
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._limit:
            self._keys.discard(self._order.popleft())
        return True


class Subscription:
    """One source's interest in one DID on one connection; its stream() drains `next()`."""

    def __init__(self, connection: JetstreamConnection, did: str, resume: int | None) -> None:
        self.connection = connection
        self.did = did
        #: time_us to replay from (the source's persisted cursor), None for "from now on"
        self.resume = resume
        #: the connection's filter holds this DID, from the connection's position on
        self.live = False
        self.opened = False
        self.closed = False
        self._pending: deque[Notice] = deque()
        self._ready = asyncio.Event()

    def push(self, notice: Notice) -> None:
        self._pending.append(notice)
        self._ready.set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def position(self) -> int | None:
        """time_us up to which every event of this DID has been handed to this subscription."""
        return self.connection.position() if self.live else self.resume

    async def next(self, timeout: float | None = None) -> list[Notice]:
        """Everything waiting, in order; an empty list when `timeout` passes first."""
        if not self._pending:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return []
        notices = list(self._pending)
        self._pending.clear()
        return notices


class JetstreamConnection:
    """The socket to one Jetstream endpoint and the subscriptions it serves; lives until its first drop."""

    def __init__(
        self,
        url: str,
        fetcher: Fetcher,
        *,
        recent: RecentKeys,
        on_closed: Callable[[JetstreamConnection], None],
        settle: float = 0.2,
        heartbeat: float = 30.0,
        max_query_dids: int = MAX_QUERY_DIDS,
    ) -> None:
        self.url = url
        self.fetcher = fetcher
        self.recent = recent
        self.settle = settle
        self.heartbeat = heartbeat
        self.max_query_dids = max_query_dids
        self.subscriptions: dict[str, list[Subscription]] = {}
        self.closed = False
        #: frames that were not Jetstream events (counted, logged now and then, skipped)
        self.garbage = 0
        self._on_closed = on_closed
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._apply_task: asyncio.Task[None] | None = None
        self._filtered: frozenset[str] = frozenset()
        self._reconnect = False
        self._cursor: int | None = None
        self._latest: int | None = None
        self._live = False
        #: when the last socket closed (None while one is open)
        self._ended: int | None = None

    # -- subscriptions ---------------------------------------------------------------------------------

    def add(self, subscription: Subscription) -> None:
        self.subscriptions.setdefault(subscription.did, []).append(subscription)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"jetstream:{self.url}")
        elif self._ws is not None:
            self._schedule_apply()

    def remove(self, subscription: Subscription) -> None:
        subscription.closed = True
        subscriptions = self.subscriptions.get(subscription.did, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)
        if not subscriptions:
            self.subscriptions.pop(subscription.did, None)
        if not self.subscriptions:
            self.close()
        elif self._ws is not None:
            self._schedule_apply()

    def close(self) -> None:
        """Close the socket (the last subscription left)."""
        if self.closed:
            return
        self.closed = True
        self._on_closed(self)
        for task in (self._apply_task, self._task):
            if task is not None:
                task.cancel()

    def dids(self) -> list[str]:
        return sorted(self.subscriptions)

    def _all(self) -> list[Subscription]:
        return [s for subscriptions in self.subscriptions.values() for s in subscriptions]

    # -- position ----------------------------------------------------------------------------------------

    def position(self) -> int | None:
        """time_us up to which every event for the DIDs in the filter has been received."""
        if self._live:
            end = self._ended if self._ended is not None else now_us()
            return max(end - LIVE_LAG_US, self._latest or 0)
        return max(self._latest or 0, self._cursor or 0) or None

    def _connect_cursor(self) -> int | None:
        points = [p for p in (s.position() for s in self._all()) if p is not None]
        if not points:
            return None
        return max(min(points) - RESUME_MARGIN_US, now_us() - MAX_REPLAY_US)

    # -- the socket ------------------------------------------------------------------------------------

    def connect_url(self, dids: list[str], cursor: int | None) -> str:
        url = URL(self.url)
        query: list[tuple[str, str]] = [(k, v) for k, v in url.query.items() if k not in _OURS]
        query.append(("wantedCollections", POST))
        if len(dids) > self.max_query_dids:
            query.append(("requireHello", "true"))  # the filter follows in the first message
        else:
            query.extend(("wantedDids", did) for did in dids)
        if cursor is not None:
            query.append(("cursor", str(cursor)))
        return str(url.with_query(query))

    async def _run(self) -> None:
        reason = "the connection closed"
        try:
            await asyncio.sleep(self.settle)  # let the sources starting together share the first connect
            while self.subscriptions and not self.closed:
                reason = await self._session()
                if not self._reconnect:
                    break
        except asyncio.CancelledError:
            raise
        except FetchError as e:
            reason = e.message
        except Exception as e:  # a bug here must end the streams (the runner polls), not hang them
            log.exception("Jetstream %s: unexpected error", self.url)
            reason = f"internal error: {type(e).__name__}: {e}"
        finally:
            await self._finish(reason)

    async def _session(self) -> str:
        """One socket from connect to close; returns why it closed."""
        cursor = self._connect_cursor()
        dids = self.dids()
        ws = await self.fetcher.ws_connect(self.connect_url(dids, cursor), heartbeat=self.heartbeat)
        self._ws, self._reconnect = ws, False
        self._cursor, self._latest, self._live, self._ended = cursor, None, cursor is None, None
        self._filtered = frozenset(dids)
        log.info("Jetstream %s: open for %d DIDs (cursor %s)", self.url, len(dids), cursor)
        try:
            if len(dids) > self.max_query_dids:
                await ws.send_str(options_update(dids))
            since = datetime.now(UTC)
            for subscription in self._all():
                if subscription.did in self._filtered:
                    self._mark_live(subscription, since)
            if frozenset(self.subscriptions) != self._filtered:
                self._schedule_apply()  # sources that came while connecting
            return await self._read(ws)
        finally:
            self._ws, self._ended = None, now_us()
            if not ws.closed:
                await ws.close()

    def _mark_live(self, subscription: Subscription, since: datetime) -> None:
        subscription.live = True
        subscription.resume = None
        if not subscription.opened:
            subscription.opened = True
            subscription.push(Opened(since))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        while True:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                self._frame(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                self._garbage("a binary frame (compression is not asked for)")
            elif message.type is aiohttp.WSMsgType.ERROR:
                return f"connection error: {ws.exception() or message.data}"
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                code = ws.close_code
                return f"Jetstream closed the connection (code {code})" if code else "the connection closed"

    def _frame(self, data: str) -> None:
        try:
            event = parse_frame(data)
        except MalformedPost as e:
            self._garbage(str(e))
            return
        self._latest = max(self._latest or 0, event.time_us)
        if event.time_us >= now_us() - LIVE_WINDOW_US:
            self._live = True
        if not event.is_post or not self.recent.add(event.dedupe_key):
            return  # identity, account and other collections; or a replay of an event already handed out
        for subscription in list(self.subscriptions.get(event.did, ())):
            if subscription.backlog >= MAX_PENDING:
                self._cut(subscription, f"more than {MAX_PENDING} events waiting; dropped to catch up by polling")
            else:
                subscription.push(event)

    def _garbage(self, what: str) -> None:
        self.garbage += 1
        if self.garbage == 1 or self.garbage % 1000 == 0:
            log.warning("Jetstream %s: skipped %d unreadable frame(s), latest: %s", self.url, self.garbage, what[:200])

    def _cut(self, subscription: Subscription, reason: str) -> None:
        subscription.push(Dropped(reason, subscription.position()))
        self.remove(subscription)

    async def _finish(self, reason: str) -> None:
        apply_task, self._apply_task = self._apply_task, None
        if apply_task is not None and apply_task is not asyncio.current_task():
            apply_task.cancel()
        was_closed = self.closed
        self.closed = True
        if not was_closed:
            self._on_closed(self)
            log.warning("Jetstream %s: %s", self.url, reason)
        for subscription in self._all():
            subscription.push(Dropped(reason, subscription.position()))
            subscription.live = False

    # -- changing the filter -----------------------------------------------------------------------------

    def _schedule_apply(self) -> None:
        if self._apply_task is None or self._apply_task.done():
            self._apply_task = asyncio.create_task(self._apply(), name=f"jetstream-filter:{self.url}")

    async def _apply(self) -> None:
        """Bring the open socket's filter in line with the subscriptions, after a short pause to gather changes."""
        await asyncio.sleep(self.settle)
        ws = self._ws
        if ws is None or ws.closed:
            return
        newcomers = [s for s in self._all() if not s.live]
        position = self.position()
        if position is not None and any(s.resume is not None and s.resume < position for s in newcomers):
            log.info("Jetstream %s: reconnecting so newly added DIDs catch up from their cursor", self.url)
            self._reconnect = True
            await ws.close()
            return
        dids = frozenset(self.subscriptions)
        if dids != self._filtered:
            try:
                await ws.send_str(options_update(sorted(dids)))
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as e:
                log.info("Jetstream %s: could not update the filter (%s); the reader sees the drop", self.url, e)
                return
            self._filtered = dids
        since = datetime.now(UTC)
        for subscription in newcomers:
            self._mark_live(subscription, since)


_OURS = frozenset({"wantedCollections", "wantedDids", "cursor", "requireHello"})


def options_update(dids: list[str]) -> str:
    """The client message that replaces the socket's filter (Jetstream v1)."""
    payload = {"wantedCollections": [POST], "wantedDids": dids, "maxMessageSizeBytes": 0}
    return json.dumps({"type": "options_update", "payload": payload}, separators=(",", ":"))


class JetstreamPool:
    """The connections of one Fil process, one per endpoint URL, created on first use and closed with their last
    subscription; recently seen events are remembered per endpoint across reconnects."""

    def __init__(
        self, fetcher: Fetcher, *, settle: float = 0.2, heartbeat: float = 30.0, max_query_dids: int = MAX_QUERY_DIDS
    ) -> None:
        self.fetcher = fetcher
        self.settle = settle
        self.heartbeat = heartbeat
        self.max_query_dids = max_query_dids
        self.connections: dict[str, JetstreamConnection] = {}
        self._recent: dict[str, RecentKeys] = {}

    def subscribe(self, url: str, did: str, resume: int | None) -> Subscription:
        connection = self.connections.get(url)
        if connection is None or connection.closed:
            connection = JetstreamConnection(
                url,
                self.fetcher,
                recent=self._recent.setdefault(url, RecentKeys()),
                on_closed=self._closed,
                settle=self.settle,
                heartbeat=self.heartbeat,
                max_query_dids=self.max_query_dids,
            )
            self.connections[url] = connection
        subscription = Subscription(connection, did, resume)
        connection.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if not subscription.closed:
            subscription.connection.remove(subscription)

    def _closed(self, connection: JetstreamConnection) -> None:
        if self.connections.get(connection.url) is connection:
            del self.connections[connection.url]

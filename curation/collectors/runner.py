"""Runs every enabled source on its schedule: poll, store, record a status, back off on failure.

One task per source (there are tens, not thousands). A failure of any kind becomes the source's
visible status and a longer wait; it never stops the loop, and only 410 Gone stops polling. With
several processes, each active source runs only in the process holding its lease (leases.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from curation.collectors import REGISTRY, Collector, CollectorContext, PollResult, StreamingCollector
from curation.collectors.leases import Leases, LocalLeases
from curation.collectors.policy import next_delay
from curation.errors import GoneError, RetryLaterError, SourceError, StoreError
from curation.models import Config, Entry, Event, EventStatus, Source, SourceState, SourceStatus, rfc3339
from curation.store import Store

if TYPE_CHECKING:
    from curation.collectors.websub import WebSubManager

log = logging.getLogger("curation.collectors")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def backfill(entries: list[Entry], limit: int) -> tuple[list[Entry], list[str]]:
    """The newest `limit` entries of a first import, and the keys of the rest (remembered as seen)."""
    far_future = datetime.max.replace(tzinfo=UTC)
    ordered = sorted(entries, key=lambda e: e.published_at or far_future, reverse=True)
    return ordered[:limit], [e.key for e in ordered[limit:]]


@dataclass(slots=True)
class PollCounts:
    """Polls, failed polls and pushed batches per source id since the process started (read by /metrics).

    Collection keeps one for all its runners, so a source restarted by a reload keeps counting.
    """

    polls: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    pushes: collections.Counter[str] = field(default_factory=collections.Counter)


class SourceRunner:
    def __init__(
        self,
        source: Source,
        collector: Collector,
        store: Store,
        status: SourceStatus,
        events: Callable[[str], list[Event]],
        *,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.collector = collector
        self.store = store
        self.status = status
        self.events = events
        self.clock = clock
        self.rng = rng or random.Random()
        self.task: asyncio.Task[None] | None = None
        self.stream_task: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()
        # a poll asked for while another was under way must still happen (it sets next_poll_at after)
        self._poll_requested = False
        # polls and stream deliveries of one source are stored one at a time, in order
        self._lock = asyncio.Lock()
        #: seconds to wait before reopening a dropped stream, doubled per failure (tests shorten it)
        self.stream_retry = 1.0
        #: WebSub (issue 3): set by Collection when CURATION_PUBLIC_URL is configured
        self.websub: WebSubManager | None = None
        self.counts = PollCounts()

    @property
    def running(self) -> bool:
        return self.task is not None

    @property
    def passive(self) -> bool:
        """Only fed by deliveries (push ingest): every process takes them, none polls."""
        return bool(getattr(self.collector, "passive", False))

    @property
    def lease_key(self) -> str:
        """What one process holds to run this source: the source, or the connection it shares with others."""
        shared = getattr(self.collector, "lease_key", None)
        return str(shared(self.source)) if callable(shared) else f"source:{self.source.id}"

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"source:{self.source.id}")
        collector = self.collector
        if isinstance(collector, StreamingCollector) and collector.streams(self.source):
            self.stream_task = asyncio.create_task(self._stream_loop(collector), name=f"stream:{self.source.id}")

    async def stop(self) -> None:
        for task in (self.task, self.stream_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self.task = self.stream_task = None

    def poll_now(self) -> None:
        self._poll_requested = True
        self.status.next_poll_at = None
        self.wakeup.set()

    async def deliver(self, result: PollResult) -> None:
        """Store what a stream pushed, exactly as a poll result."""
        async with self._lock:
            await self._store(result)
            self.counts.pushes[self.source.id] += 1
            self.status.last_success_at = self.clock()
            if self.status.state is SourceState.PENDING:
                self.status.state = SourceState.OK
            await self._save()

    async def _stream_loop(self, collector: StreamingCollector) -> None:
        failures = 0
        while True:
            opened = self.clock()
            try:
                await collector.stream(self.source, self.status, self.deliver)
                error = "the stream ended"
            except asyncio.CancelledError:
                raise
            except SourceError as e:
                error = e.message
            except Exception as e:  # a bug in a stream must not stop the source
                log.exception("%s: unexpected error in the stream", self.source.id)
                error = f"internal error: {type(e).__name__}: {e}"
            failures = 1 if (self.clock() - opened).total_seconds() > 60 else failures + 1
            self.status.details["stream"] = {"state": "down", "error": error, "at": rfc3339(self.clock())}
            log.warning("%s: stream dropped (%s); polling until it is back", self.source.id, error)
            self.poll_now()  # whatever came while the stream was down is fetched now
            delay = min(300.0, self.stream_retry * 2 ** (failures - 1))
            await asyncio.sleep(delay * (1 + self.rng.random() / 2))

    async def run(self) -> None:
        while self.status.state is not SourceState.GONE:
            wait = 0.0
            if self.status.next_poll_at is not None:
                wait = max(0.0, (self.status.next_poll_at - self.clock()).total_seconds())
            if wait and not self._poll_requested:
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), wait)
                except TimeoutError:
                    pass
            await self.poll_once()

    async def poll_once(self) -> None:
        """One poll; never raises (but for cancellation)."""
        status = self.status
        now = self.clock()
        self._poll_requested = False
        status.last_poll_at = now
        retry_after: float | None = None
        retry_later = False
        try:
            result = await self.collector.poll(self.source, status)
            async with self._lock:
                new_keys = await self._store(result)
        except GoneError as e:
            self._failed(e, now)
            status.state = SourceState.GONE
            status.next_poll_at = None
            log.warning(
                "%s: gone, polling stopped until the source is edited: %s",
                self.source.id,
                e,
                extra={"source": self.source.id, "url": self.source.url},
            )
            self.counts.polls[self.source.id] += 1
            await self._save()
            return
        except RetryLaterError as e:
            self._failed(e, now)
            retry_after, retry_later = e.retry_after, True
        except SourceError as e:
            self._failed(e, now)
        except asyncio.CancelledError:
            raise
        except StoreError as e:
            # the store is away (Redis restarting, a locked disk): not the source's fault, so no backoff;
            # nothing was kept of this poll, and the next one at the usual interval fetches it again
            status.last_error, status.last_error_at = f"store unavailable: {e}", now
            log.warning("%s: polled, but the store is unavailable: %s", self.source.id, e)
        except Exception as e:  # a bug in a collector must not stop the source or the others
            log.exception("%s: unexpected error while polling", self.source.id)
            self._failed(SourceError(f"internal error: {type(e).__name__}: {e}", source_id=self.source.id), now)
        else:
            status.state = SourceState.OK
            status.error_count = 0
            status.last_success_at = now
            if self.websub is not None:
                # WebSub: subscribe to an advertised hub; new entries push never delivered mark it unhealthy
                self.websub.after_poll(self.source, status, result, new_keys, now)
        self.counts.polls[self.source.id] += 1
        # WebSub: while push is healthy, polling is only the slow safety net
        interval = self.source.interval
        if self.websub is not None:
            interval = self.websub.poll_interval(interval, status)
        delay = next_delay(
            interval,
            error_count=status.error_count,
            retry_after=retry_after,
            retry_later=retry_later,
            rng=self.rng,
        )
        status.next_poll_at = now + timedelta(seconds=delay)
        await self._save()

    def _failed(self, error: SourceError, now: datetime) -> None:
        status = self.status
        status.error_count += 1
        text, url = error.message, getattr(error, "url", "")
        status.last_error = f"{text} ({url})" if url and url not in text else text
        status.last_error_at = now
        status.state = SourceState.ERROR if status.error_count == 1 else SourceState.BACKING_OFF
        self.counts.errors[self.source.id] += 1
        log.warning(
            "%s: %s (failure %d)",
            self.source.id,
            status.last_error,
            status.error_count,
            extra={"source": self.source.id, "url": url or self.source.url},
        )

    async def _store(self, result: PollResult) -> set[str]:
        """Store one result; returns the keys of entries that became new items (for WebSub's missed check).

        The new validators and cursor are kept only once the entries are stored: if the store fails, the
        next poll asks for the same document again instead of being told "not modified" and losing it.
        """
        status = self.status
        new_keys: set[str] = set()
        if not result.not_modified:
            entries, ignore = list(result.entries), list[str]()
            if not status.imported:
                entries, ignore = backfill(entries, self.source.backfill)
            for event in self.events(self.source.id):
                changes = await self.store.ingest(event, self.source, entries, ignore=ignore, deleted=result.deleted)
                status.items_seen += sum(1 for c in changes if c.item is not None and c.item.version == 1)
                new_keys.update(c.item.key for c in changes if c.item is not None and c.item.version == 1)
            # stored first: a crash before this line re-reads from the old cursor, and ingest is idempotent
            if result.cursor is not None:
                status.cursor = result.cursor
            status.imported = True
        # validators are kept independently: a 304 may refresh one and not the other
        status.etag = result.etag or status.etag
        status.last_modified = result.last_modified or status.last_modified
        if result.moved_to and result.moved_to != (status.moved_to or self.source.url):
            log.info("%s: moved permanently to %s", self.source.id, result.moved_to)
            status.moved_to = result.moved_to
        return new_keys

    async def _save(self) -> None:
        try:
            await self.store.save_status(self.status)
        except Exception:  # the status is also kept in memory; a store hiccup must not kill the runner
            log.exception("%s: could not save the source status", self.source.id)


class Collection:
    """All runners, kept in step with the configuration (reloads start, stop and restart sources)."""

    def __init__(
        self,
        store: Store,
        context: CollectorContext,
        *,
        clock: Clock = _utcnow,
        leases: Leases | None = None,
        lease_ttl: float = 15.0,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.context = context
        self.clock = clock
        self.runners: dict[str, SourceRunner] = {}
        self.counts = PollCounts()
        self.statuses: dict[str, SourceStatus] = {}
        self.config: Config | None = None
        self._collectors: dict[str, Collector] = {}
        #: WebSub subscriptions (curation/collectors/websub.py); None unless CURATION_PUBLIC_URL is set
        self.websub: WebSubManager | None = None
        self.leases: Leases = leases or LocalLeases()
        #: seconds a lease lasts; it is extended every third of that, so a dead holder is replaced within it
        self.lease_ttl = lease_ttl
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        #: the lease keys this process holds
        self.held: set[str] = set()
        self._lease_task: asyncio.Task[None] | None = None

    def _collector(self, kind: str) -> Collector | None:
        if kind not in self._collectors:
            factory = REGISTRY.get(kind)
            if factory is None:
                return None
            self._collectors[kind] = factory(self.context)
        return self._collectors[kind]

    def events_of(self, source_id: str) -> list[Event]:
        if self.config is None:
            return []
        return [e for e in self.config.events_of(source_id) if e.status is not EventStatus.CLOSED]

    async def load(self) -> None:
        self.statuses = await self.store.load_statuses()

    async def apply(self, config: Config) -> None:
        """Start new sources, stop removed ones, restart edited ones; items already stored stay."""
        old = self.config
        self.config = config
        wanted = {sid: s for sid, s in config.sources.items() if s.enabled and self.events_of(sid)}
        for sid in list(self.runners):
            runner = self.runners[sid]
            if sid not in wanted or wanted[sid] != runner.source:
                await runner.stop()
                del self.runners[sid]
                if self.websub is not None:
                    # WebSub: removed, disabled or repointed sources leave their hub; a mere edit keeps it
                    gone = sid not in wanted or wanted[sid].url != runner.source.url
                    await self.websub.detach(sid, unsubscribe=gone)
        for sid, source in config.sources.items():
            status = self._status(source, edited=old is not None and old.sources.get(sid) != source)
            if sid not in wanted:
                status.state = SourceState.DISABLED if not source.enabled else status.state
                continue
            if sid in self.runners:
                continue
            collector = self._collector(str(source.kind))
            if collector is None:
                status.state = SourceState.ERROR
                status.last_error = f"no collector for kind {source.kind!r} in this release"
                continue
            if status.state is SourceState.DISABLED:
                status.state = SourceState.PENDING
            runner = SourceRunner(source, collector, self.store, status, self.events_of, clock=self.clock)
            runner.websub = self.websub
            runner.counts = self.counts
            self.runners[sid] = runner
            if runner.passive:
                status.imported = True  # every pushed item is live: no backfill trimming
        await self.renew()
        await self._release_unused()
        if self._lease_task is None:
            self._lease_task = asyncio.create_task(self._lease_loop(), name="source-leases")

    def _status(self, source: Source, *, edited: bool) -> SourceStatus:
        status = self.statuses.get(source.id)
        url = source.url
        if status is None or status.kind != str(source.kind) or status.url != url:
            # a new source, or the operator pointed it elsewhere: start afresh
            status = SourceStatus(id=source.id, kind=str(source.kind), url=url)
            self.statuses[source.id] = status
        elif edited and status.state is SourceState.GONE:
            # editing a gone source is how an operator re-enables it
            status.state = SourceState.PENDING
            status.next_poll_at = None
        return status

    async def stop(self) -> None:
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
            self._lease_task = None
        for runner in list(self.runners.values()):
            await runner.stop()
        self.runners.clear()
        await self._release_unused()  # a clean shutdown hands its sources over at once

    # -- leases: one process runs each active source ------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            await self.renew()

    async def renew(self) -> None:
        """Extend the leases held, stop what was lost, start what this process can take over."""
        groups: dict[str, list[SourceRunner]] = {}
        for runner in self.runners.values():
            if not runner.passive:
                groups.setdefault(runner.lease_key, []).append(runner)
        taken: list[SourceRunner] = []
        for key, runners in groups.items():
            try:
                held = await self.leases.claim(key, self.owner, self.lease_ttl)
            except Exception:  # the store is away: keep running what runs, start nothing, try again later
                log.warning("lease %s: could not be claimed or extended; trying again", key, exc_info=True)
                continue
            if held:
                self.held.add(key)
                taken.extend(runner for runner in runners if not runner.running)
            elif key in self.held or any(runner.running for runner in runners):
                self.held.discard(key)
                log.warning("lease %s: held by another process now; its sources stop here", key)
                for runner in runners:
                    await runner.stop()
                    if self.websub is not None:
                        await self.websub.detach(runner.source.id, unsubscribe=False)
        if taken:
            await self._start_taken(taken)
        if len(self.held) < len(groups):
            await self._refresh_others({sid for sid, r in self.runners.items() if not r.running})

    async def _start_taken(self, runners: list[SourceRunner]) -> None:
        """Start sources this process now holds, from their latest saved state (cursor, validators...)."""
        try:
            saved = await self.store.load_statuses()
        except Exception:
            log.warning("source states could not be read; starting from the ones in memory", exc_info=True)
            saved = {}
        for runner in runners:
            source = runner.source
            if source.id in saved:
                self.statuses[source.id] = saved[source.id]
            runner.status = self._status(source, edited=False)
            log.info("%s: collected by this process (%s)", source.id, self.owner)
            runner.start()
            if self.websub is not None:
                self.websub.attach(source, runner.status)

    async def _refresh_others(self, source_ids: set[str]) -> None:
        """What the holders of other sources saved, so this process shows it too (/api/sources, the desk)."""
        try:
            saved = await self.store.load_statuses()
        except Exception:
            return
        for sid in source_ids:
            if sid in saved and sid in self.runners:
                self.statuses[sid] = self.runners[sid].status = saved[sid]

    async def _release_unused(self) -> None:
        wanted = {r.lease_key for r in self.runners.values() if not r.passive}
        for key in self.held - wanted:
            self.held.discard(key)
            with contextlib.suppress(Exception):
                await self.leases.release(key, self.owner)

    async def deliver(self, source_id: str, result: PollResult) -> bool:
        """Store what was pushed to a source (push ingest, WebSub); False when it is not running."""
        runner = self.runners.get(source_id)
        if runner is None:
            return False
        await runner.deliver(result)
        return True

    def poll_now(self, source_id: str) -> None:
        runner = self.runners.get(source_id)
        if runner is not None:
            runner.poll_now()

"""Fan-out across processes on Redis: every process hears every commit of every process, in order.

Each commit publishes its event's new log head on `<prefix>changes:<slug>` (inside the commit's
MULTI, so only what was committed is announced). One subscription per process hears them all; the
process then reads what its hub has not delivered yet from the event's change log, one read per
process per commit whatever the number of readers, and hands it to the hub in seq order. The log is
the truth and the announcement only a nudge: one lost while Redis was away is made up by the
catch-up every (re)subscription starts with. This process's own commits skip the read when they
follow on from what the hub has (the usual case).

Notes (`<prefix>notes`) carry what is not in the log: a new header block, or a change to what the
desk added (sources, events), which the other processes then read from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from curation.hub import Hub
from curation.models import Change

if TYPE_CHECKING:
    from curation.store import Store
    from curation.store.redis import RedisStore

log = logging.getLogger("curation.cluster")

#: changes read from the log per catch-up round
BATCH = 1000

NoteHandler = Callable[[str, str], Awaitable[None]]


class Cluster:
    def __init__(
        self,
        redis: RedisStore,
        store: Store,
        hub: Hub,
        *,
        on_note: NoteHandler,
        retry: float = 0.5,
        max_retry: float = 10.0,
    ) -> None:
        """`redis` gives the connection and key prefix; `store` is what reads go through (the timed one)."""
        self.redis = redis
        self.store = store
        self.hub = hub
        self.on_note = on_note
        self.retry = retry
        self.max_retry = max_retry
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        #: False while the subscription is down (healthz says degraded; readers are still served)
        self.connected = False
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty: set[str] = set()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._notes_running: set[asyncio.Task[None]] = set()
        self._changes = f"{redis.prefix}changes:"
        self._notes = f"{redis.prefix}notes"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe_forever(), name="cluster-subscription")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._running.clear()

    # -- this process's commits ----------------------------------------------------------------

    def local(self, changes: Sequence[Change]) -> None:
        """Store listener: a commit of this process goes straight to the hub when it follows on from
        what the hub has; otherwise another process committed in between, and the log is read."""
        by_event: dict[str, list[Change]] = {}
        for change in changes:
            by_event.setdefault(change.event, []).append(change)
        for event, batch in by_event.items():
            channel = self.hub.channels.get(event)
            if channel is None or (batch[0].seq == channel.head + 1 and event not in self._running):
                self.hub.publish(batch)
            else:
                self.nudge(event)

    async def note(self, kind: str, event: str = "") -> None:
        """Tell the other processes something outside the log (`header` of an event, `config`)."""
        message = json.dumps({"kind": kind, "event": event, "from": self.owner})
        try:
            await self.redis.client().publish(self._notes, message)
        except Exception as e:  # the others catch up at their next (re)subscription or restart
            log.warning("could not tell the other processes about %s %s: %s", kind, event, e)

    # -- catching up from the log ----------------------------------------------------------------

    def nudge(self, event: str) -> None:
        """Something newer than the hub has may be in the event's log: read it (once, however often told)."""
        self._dirty.add(event)
        if event not in self._running:
            self._running[event] = asyncio.create_task(self._catch_up(event), name=f"catch-up:{event}")

    async def catch_up(self, event: str) -> None:
        """Wait until the hub holds everything the log had when this was called (a reader resuming here)."""
        self.nudge(event)
        task = self._running.get(event)
        if task is not None:
            await asyncio.shield(task)

    async def _catch_up(self, event: str) -> None:
        try:
            while event in self._dirty:
                self._dirty.discard(event)
                channel = self.hub.channels.get(event)
                if channel is None:
                    return  # nobody here listens to this event: a reader who comes reads the store
                try:
                    changes = await self.store.changes_since(event, channel.head, limit=BATCH)
                except Exception as e:
                    log.warning("%s: could not read the change log: %s", event, e)
                    return  # the next nudge or resubscription tries again
                if changes is None:
                    # this process fell behind what the log keeps: its readers and desks reload
                    self.hub.resync(event, await self.store.head(event))
                elif changes:
                    self.hub.publish(changes)
                    if len(changes) == BATCH:
                        self._dirty.add(event)
        finally:
            self._running.pop(event, None)

    # -- the subscription ------------------------------------------------------------------------

    async def _subscribe_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._subscribe()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                if self.connected or failures == 1:
                    log.warning("cluster subscription lost (%s); serving on, reconnecting", e)
                self.connected = False
                self.last_error = f"{type(e).__name__}: {e}"
            await asyncio.sleep(min(self.max_retry, self.retry * 2 ** min(failures, 10)))

    async def _subscribe(self) -> None:
        client = self.redis.subscriber()
        pubsub = client.pubsub()
        try:
            await pubsub.psubscribe(f"{self._changes}*")
            await pubsub.subscribe(self._notes)
            self.connected, self.last_error = True, None
            log.info("cluster subscription up: every process's commits reach this one's readers")
            # whatever was announced while we were away is in the logs
            for event in list(self.hub.channels):
                self.nudge(event)
            await self.on_note("config", "")
            async for message in pubsub.listen():
                self._on_message(message)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()

    def _on_message(self, message: dict[str, Any]) -> None:
        kind, channel, data = message.get("type"), str(message.get("channel") or ""), message.get("data")
        if kind == "pmessage" and channel.startswith(self._changes):
            event = channel[len(self._changes) :]
            hub_channel = self.hub.channels.get(event)
            try:
                head = int(str(data))
            except ValueError:
                return
            if hub_channel is not None and head > hub_channel.head:
                self.nudge(event)
        elif kind == "message" and channel == self._notes:
            try:
                note = json.loads(str(data))
                kind, event, sender = str(note["kind"]), str(note.get("event") or ""), note.get("from")
            except (ValueError, KeyError, TypeError):
                return
            if sender != self.owner:
                task = asyncio.create_task(self._note(kind, event), name=f"note:{kind}")
                self._notes_running.add(task)
                task.add_done_callback(self._notes_running.discard)

    async def _note(self, kind: str, event: str) -> None:
        try:
            await self.on_note(kind, event)
        except Exception:
            log.exception("could not apply the note %s %s from another process", kind, event)

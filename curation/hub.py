"""Fan-out of committed changes to every live reader of an event.

Each change is encoded once, into one websocket frame (server frames are unmasked, so the same
bytes are valid on every connection), and written straight to each reader's socket buffer: no
task and no queue per reader on the publish path. A reader whose buffer holds more than the bound
is disconnected at the next change; it comes back with `since` and misses nothing. The bound is
checked once per commit, before its frames are written, so a burst from one commit (a first
import) never costs a healthy reader its connection; what a reader may hold is the bound plus one
commit. A ring of recent frames
per event serves most resumes without touching the store, and makes joining race-free: the step
from "replayed up to here" to "registered for live changes" has no await in it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from curation.codec import dumps, editor_message
from curation.models import Change
from curation.store import Store

log = logging.getLogger("curation.hub")

RING_FRAMES = 4096
RING_BYTES = 8 * 1024 * 1024
REPLAY_BATCH = 500
#: resume reads kept, each shared by every reader resuming from the same seq
REPLAY_READS = 256

#: (seq, reader frame or None when readers do not get that change), in seq order
Replay = list[tuple[int, bytes | None]]


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked websocket text frame (RFC 6455 §5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def message_frame(message: dict[str, object]) -> bytes:
    return text_frame(dumps(message).encode())


RESET_FRAME = message_frame({"type": "reset"})


class Sink(Protocol):
    """One reader's connection, as the hub sees it."""

    def send(self, frames: Sequence[bytes]) -> bool:
        """Queue frames without waiting; False when the reader is gone, or was just dropped because the
        bytes it held back before these frames were over its bound."""
        ...

    def backlog(self) -> int:
        """Bytes written but not yet sent."""
        ...

    async def drain(self) -> None:
        """Wait until the backlog is low again (used only while replaying a resume)."""
        ...


class Channel:
    """The readers of one event and its recent frames."""

    __slots__ = (
        "changes",
        "connects",
        "deliveries",
        "disconnects",
        "dropped",
        "event",
        "head",
        "readers",
        "ring",
        "ring_bytes",
        "ring_start",
    )

    def __init__(self, event: str, head: int) -> None:
        self.event = event
        self.head = head
        #: the ring holds every change with seq > ring_start (frame None: not for readers)
        self.ring_start = head
        self.ring: deque[tuple[int, bytes | None]] = deque()
        self.ring_bytes = 0
        self.readers: set[Sink] = set()
        # plain integers for /metrics (curation/web/ops.py reads them at scrape time): counted per
        # commit or per registration, never per socket on the publish path
        self.changes = 0
        self.deliveries = 0
        self.dropped = 0
        self.connects = 0
        self.disconnects = 0

    def add(self, sink: Sink) -> None:
        self.readers.add(sink)
        self.connects += 1

    def discard(self, sink: Sink) -> None:
        if sink in self.readers:
            self.readers.remove(sink)
            self.disconnects += 1

    def drop(self, gone: list[Sink]) -> None:
        """Readers that refused a frame (too slow, or closing): no longer written to."""
        self.readers.difference_update(gone)
        self.dropped += len(gone)
        self.disconnects += len(gone)

    def push(self, seq: int, frame: bytes | None) -> bool:
        """Remember a change; False when it was already seen (a store may notify twice after a reconnect)."""
        if seq <= self.head:
            return False
        if seq != self.head + 1:
            # a gap in what we were told: the ring no longer covers what came before
            self.ring.clear()
            self.ring_bytes = 0
            self.ring_start = seq - 1
        self.head = seq
        self.ring.append((seq, frame))
        self.ring_bytes += len(frame) if frame else 0
        while len(self.ring) > RING_FRAMES or self.ring_bytes > RING_BYTES:
            old_seq, old = self.ring.popleft()
            self.ring_bytes -= len(old) if old else 0
            self.ring_start = old_seq
        return True

    def since(self, seq: int) -> list[bytes] | None:
        """The reader frames after `seq`, or None when the ring does not reach back that far."""
        if seq < self.ring_start:
            return None
        return [frame for s, frame in self.ring if s > seq and frame is not None]


class Hub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.channels: dict[str, Channel] = {}
        #: editors' desks per event: they get every change (queued, hidden...), as editor JSON
        self.editors: dict[str, set[Sink]] = {}
        #: the latest out-of-log message per event (the header), for readers who join later
        self.sticky: dict[str, bytes] = {}
        self.dropped = 0
        self.deliveries = 0
        self._heads: dict[str, asyncio.Future[int]] = {}
        self._replays: OrderedDict[tuple[str, int], asyncio.Future[Replay | None]] = OrderedDict()
        #: with several processes (curation/cluster.py): brings this hub up to the event's log, so a
        #: reader resuming here with a seq another process gave it is not taken for one from the future
        self.catch_up: Callable[[str], Awaitable[None]] | None = None

    def readers(self, event: str | None = None) -> int:
        if event is not None:
            channel = self.channels.get(event)
            return len(channel.readers) if channel else 0
        return sum(len(c.readers) for c in self.channels.values())

    def publish(self, changes: Sequence[Change]) -> None:
        """Store listener: runs on the event loop after each commit."""
        batches: dict[str, list[bytes]] = {}
        accepted: dict[str, list[Change]] = {}
        for change in changes:
            channel = self.channels.get(change.event)
            if channel is None:
                channel = self.channels[change.event] = Channel(change.event, change.seq - 1)
            frame = text_frame(change.message.encode()) if change.message is not None else None
            if not channel.push(change.seq, frame):
                continue
            accepted.setdefault(change.event, []).append(change)
            channel.changes += 1
            if frame is not None:
                batches.setdefault(change.event, []).append(frame)
        for event, fresh in accepted.items():
            if self.editors.get(event):
                self._to_editors(event, fresh)
        for event, frames in batches.items():
            channel = self.channels[event]
            if not channel.readers:
                continue
            gone = [sink for sink in channel.readers if not sink.send(frames)]
            delivered = (len(channel.readers) - len(gone)) * len(frames)
            self.deliveries += delivered
            channel.deliveries += delivered
            if gone:
                self.dropped += len(gone)
                channel.drop(gone)

    def resync(self, event: str, head: int) -> None:
        """This process fell behind what the event's log keeps: its readers and desks reload (a reset)
        and carry on from `head`."""
        channel = self.channels.get(event)
        if channel is None:
            return
        channel.head = channel.ring_start = head
        channel.ring.clear()
        channel.ring_bytes = 0
        frame = (RESET_FRAME,)
        channel.drop([sink for sink in channel.readers if not sink.send(frame)])
        desks = self.editors.get(event, set())
        desks.difference_update([sink for sink in desks if not sink.send(frame)])

    def send_all(self, event: str, message: dict[str, object]) -> int:
        """Send a message outside the change log (the header block) to every reader and desk of the event.

        It is framed once; a sink that refuses it is dropped like on a change. Returns how many got it.
        The latest such message is also sent to every reader that joins later, right after its hello,
        so a reader that was away when the header changed catches up without a log entry.
        """
        frame = (message_frame(message),)
        self.sticky[event] = frame[0]
        sent = 0
        channel = self.channels.get(event)
        for sinks in (channel.readers if channel else set(), self.editors.get(event, set())):
            gone = [sink for sink in sinks if not sink.send(frame)]
            sent += len(sinks) - len(gone)
            self.dropped += len(gone)
            if channel is not None and sinks is channel.readers:
                channel.deliveries += len(sinks) - len(gone)
                channel.drop(gone)
            else:
                sinks.difference_update(gone)
        return sent

    def _to_editors(self, event: str, changes: Sequence[Change]) -> None:
        frames = [text_frame(editor_message(c).encode()) for c in changes if c.item is not None]
        desks = self.editors[event]
        gone = [sink for sink in desks if not sink.send(frames)]
        desks.difference_update(gone)

    async def join_editor(self, event: str, sink: Sink) -> bool:
        """A desk: hello with the current seq, then every change; it loads its state through the API."""
        channel = await self._channel(event)
        if not sink.send((message_frame({"type": "hello", "seq": channel.head}),)):
            return False
        self.editors.setdefault(event, set()).add(sink)
        return True

    def leave_editor(self, event: str, sink: Sink) -> None:
        self.editors.get(event, set()).discard(sink)

    async def _channel(self, event: str) -> Channel:
        channel = self.channels.get(event)
        if channel is None:
            # the first readers of an event share one read of its head
            pending = self._heads.get(event)
            if pending is None or pending.done():
                pending = self._heads[event] = asyncio.ensure_future(self.store.head(event))
                pending.add_done_callback(lambda _: self._heads.pop(event, None))
            head = await asyncio.shield(pending)
            # a publish may have created it while we waited
            channel = self.channels.setdefault(event, Channel(event, head))
        return channel

    async def join(self, event: str, sink: Sink, since: int | None) -> bool:
        """Send hello, then what the reader missed after `since`, then register it for live changes.

        Returns False when the reader went away (or was too slow) before it was registered.
        """
        channel = await self._channel(event)
        hello = [message_frame({"type": "hello", "seq": channel.head})]
        if event in self.sticky:
            hello.append(self.sticky[event])
        if not sink.send(hello):
            return False
        if since is None:
            channel.add(sink)
            return True
        if since > channel.head and self.catch_up is not None:
            await self.catch_up(event)
        if since > channel.head or since < 0:
            return self._reset(channel, sink)
        position = since
        while True:
            tail = channel.since(position)
            if tail is not None:
                # no await from here to the registration: nothing can slip between
                if tail and not sink.send(tail):
                    return False
                channel.add(sink)
                return True
            replay = await asyncio.shield(self._replay(event, position))  # a reader leaving cancels only itself
            if replay is None:
                return self._reset(channel, sink)
            frames = []
            caught_up = True
            for seq, frame in replay:
                # a commit the hub has not been told of yet: it will come through publish()
                if seq > channel.head:
                    caught_up = False
                    break
                if frame is not None:
                    frames.append(frame)
                position = seq
            if frames and not sink.send(frames):
                return False
            if caught_up:
                await sink.drain()
            else:
                await asyncio.sleep(0.005)

    def _replay(self, event: str, since: int) -> asyncio.Future[Replay | None]:
        """The changes after `since`, framed, read from the store once for every reader resuming from the
        same point (a reconnect storm is thousands of readers with a handful of `since` values). Log
        entries never change, so a read stays good; only the latest few are kept."""
        key = (event, since)
        pending = self._replays.get(key)
        if pending is None or (pending.done() and (pending.cancelled() or pending.exception() is not None)):
            pending = asyncio.ensure_future(self._read_replay(event, since))
            self._replays[key] = pending
            while len(self._replays) > REPLAY_READS:
                self._replays.popitem(last=False)
        else:
            self._replays.move_to_end(key)
        return pending

    async def _read_replay(self, event: str, since: int) -> Replay | None:
        changes = await self.store.changes_since(event, since, limit=REPLAY_BATCH)
        if not changes:
            return None
        return [(c.seq, text_frame(c.message.encode()) if c.message is not None else None) for c in changes]

    def _reset(self, channel: Channel, sink: Sink) -> bool:
        if not sink.send((RESET_FRAME,)):
            return False
        channel.add(sink)
        return True

    def leave(self, event: str, sink: Sink) -> None:
        channel = self.channels.get(event)
        if channel is not None:
            channel.discard(sink)

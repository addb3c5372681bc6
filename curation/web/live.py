"""WS /api/events/{slug}/live?since=N: hello, what the reader missed (or reset), then live changes.

Readers send nothing the server needs; their frames are read and dropped (uvicorn caps their size).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Sequence

from starlette.websockets import WebSocket, WebSocketDisconnect

from curation.service import Fil
from curation.web.images import ImageProxy
from curation.web.wsproto import SCOPE_KEY, FilWebSocketProtocol

CLOSE_UNKNOWN_EVENT = 4404


class TransportSink:
    """A reader on Fil's uvicorn protocol: frames go straight into the socket's write buffer."""

    __slots__ = ("connection", "limit")

    def __init__(self, connection: FilWebSocketProtocol, limit: int) -> None:
        self.connection = connection
        self.limit = limit

    def send(self, frames: Sequence[bytes]) -> bool:
        transport = self.connection.transport
        if transport.is_closing() or self.connection.close_sent:
            return False
        if transport.get_write_buffer_size() > self.limit:
            # too slow: drop it now rather than hold its backlog; it resumes with `since`
            transport.abort()
            return False
        transport.writelines(frames)
        return True

    def backlog(self) -> int:
        return self.connection.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.connection.writable.wait()


class QueueSink:
    """Fallback for other ASGI servers: a byte-bounded queue and one sender task for this reader."""

    def __init__(self, websocket: WebSocket, limit: int) -> None:
        self.websocket = websocket
        self.limit = limit
        self.pending: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.closed = False
        self.ready = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task = asyncio.create_task(self._send())

    def send(self, frames: Sequence[bytes]) -> bool:
        if self.closed:
            return False
        if self.size > self.limit:
            self.close()
            return False
        # the frames are framed for a raw socket; the ASGI server frames text itself
        self.pending.extend(frames)
        self.size += sum(map(len, frames))
        self.idle.clear()
        self.ready.set()
        return True

    def backlog(self) -> int:
        return self.size

    async def drain(self) -> None:
        await self.idle.wait()

    def close(self) -> None:
        self.closed = True
        self.task.cancel()

    async def _send(self) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            while True:
                await self.ready.wait()
                while self.pending:
                    frame = self.pending.popleft()
                    self.size -= len(frame)
                    await self.websocket.send_text(_payload(frame).decode())
                self.ready.clear()
                self.idle.set()
        self.closed = True


def _payload(frame: bytes) -> bytes:
    """The payload of a frame made by hub.text_frame."""
    size = frame[1]
    return frame[2:] if size < 126 else frame[4:] if size == 126 else frame[10:]


def parse_since(raw: str | None) -> int | None:
    """None for a fresh reader; -1 (always reset) for a value that is not a count."""
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return -1
    return value if value >= 0 else -1


async def live(websocket: WebSocket) -> None:
    fil: Fil = websocket.app.state.fil
    slug = websocket.path_params["slug"]
    await websocket.accept()
    if fil.reader_event(slug) is None:
        await websocket.close(CLOSE_UNKNOWN_EVENT, f"no such event: {slug}"[:120])
        return
    connection = websocket.scope.get("extensions", {}).get(SCOPE_KEY)
    limit = fil.settings.reader_buffer
    since = parse_since(websocket.query_params.get("since"))
    # with CURATION_IMAGE_PROXY, frames gain the item's signed image paths (rewritten once per change)
    proxy: ImageProxy | None = getattr(websocket.app.state, "images", None)
    if isinstance(connection, FilWebSocketProtocol):
        transport_sink = proxy.sink(TransportSink(connection, limit)) if proxy else TransportSink(connection, limit)
        if await fil.hub.join(slug, transport_sink, since):
            # registered: the hub writes to the socket from now on, and this task ends here
            connection.detach(lambda: fil.hub.leave(slug, transport_sink))
        return
    sink = QueueSink(websocket, limit)
    reader = proxy.sink(sink) if proxy else sink
    try:
        if await fil.hub.join(slug, reader, since):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
    except WebSocketDisconnect:
        pass
    finally:
        fil.hub.leave(slug, reader)
        sink.close()

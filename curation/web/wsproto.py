"""uvicorn's sans-I/O websocket protocol, with the connection handed to the app through the scope.

The hub writes pre-encoded frames straight to the connection's transport, so one change is framed
once for every reader. Once a live reader is registered, the app *detaches* the connection: its
ASGI task ends (freeing the coroutine chain, about a third of a reader's memory), frames from the
reader are dropped instead of queued, and the protocol tells the hub when the socket goes away.
Set as uvicorn's `ws` class by the server (curation/server.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

SCOPE_KEY = "fil.connection"

log = logging.getLogger("uvicorn.error")


class FilWebSocketProtocol(WebSocketsSansIOProtocol):
    detached = False
    on_lost: Callable[[], None] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SCOPE_KEY] = self

    def detach(self, on_lost: Callable[[], None]) -> None:
        """The app stops reading this connection; `on_lost` runs once when the socket closes."""
        self.detached = True
        self.on_lost = on_lost
        # only the handshake needed these
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.transport.is_closing():
            self._lost()

    def send_receive_event_to_app(self) -> None:
        if self.detached:
            self.frames = []  # a reader has nothing to tell us; never let its frames pile up
            return
        super().send_receive_event_to_app()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost()

    def _lost(self) -> None:
        callback, self.on_lost = self.on_lost, None
        if callback is not None:
            callback()

    async def run_asgi(self) -> None:
        # uvicorn's run_asgi, except that a detached connection outlives its ASGI task
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            log.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                log.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None and not self.detached:
            self.transport.close()

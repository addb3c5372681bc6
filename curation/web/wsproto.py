"""uvicorn's sans-I/O websocket protocol, with the connection handed to the app through the scope.

The hub writes pre-encoded frames straight to the connection's transport, so one change is framed
once for every reader. Set as uvicorn's `ws` class by the server (curation/server.py).
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

SCOPE_KEY = "fil.connection"


class FilWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SCOPE_KEY] = self

"""CORS for the public read-only surface: any origin may read it, without credentials; nothing else gets CORS.

Editor routes carry no CORS header at all, so browsers keep them same-origin; their websocket checks Origin itself.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: GET routes whose JSON (or feed) any site's script may read: public data that carries no cookie
PUBLIC_READS = tuple(
    re.compile(pattern)
    for pattern in (
        r"/api/events",
        r"/api/events/[^/]+/items",
        r"/events/[^/]+/feed\.(?:atom|json)",
        r"/events/[^/]+/archive\.json",
        r"/oembed",
    )
)
READ_METHODS = ("GET", "HEAD")
#: request headers a reader's script may send: content negotiation and conditional requests
ALLOWED_HEADERS = "Accept, Accept-Language, Cache-Control, If-Modified-Since, If-None-Match"
#: beyond the safelisted response headers, what a script needs to revalidate
EXPOSED_HEADERS = "ETag, Retry-After"
PREFLIGHT_MAX_AGE = "86400"


def is_public_read(path: str) -> bool:
    return any(p.fullmatch(path) for p in PUBLIC_READS)


class PublicCORS:
    """Pure ASGI: adds `Access-Control-Allow-Origin: *` to public reads and answers their preflights."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_public_read(scope["path"]):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = dict(scope["headers"])
        if method == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(send)
            return
        if method not in READ_METHODS:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                if not any(name.lower() == b"access-control-allow-origin" for name, _ in raw):
                    raw.append((b"access-control-allow-origin", b"*"))
                    raw.append((b"access-control-expose-headers", EXPOSED_HEADERS.encode()))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _preflight(send: Send) -> None:
        # answered for any requested method: the browser compares it with Allow-Methods and refuses the rest
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-allow-methods", b"GET, HEAD"),
                    (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                    (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

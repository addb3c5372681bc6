"""The last good copy of each public page, served while the store is away (Redis restarting, a locked disk).

A pure ASGI middleware inside the caching one. For GET on a public path it keeps the last 200 it
served for each URL (bounded in count and bytes, oldest dropped first); when the application then
fails for that URL (an exception before the response starts, or a 5xx), the reader gets that copy,
marked `X-Fil-Stale`, instead of an error page. Live readers are meanwhile kept by their websockets,
which do not need the store, and /healthz says degraded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("curation.web")

#: copies kept, and the bytes they may take together; a body bigger than MAX_BODY is not kept
MAX_COPIES = 512
MAX_BYTES = 64 * 1024 * 1024
MAX_BODY = 4 * 1024 * 1024

Copy = tuple[list[tuple[bytes, bytes]], bytes]


class StaleOnError:
    def __init__(self, app: ASGIApp, public: Callable[[str], object], *, max_bytes: int = MAX_BYTES) -> None:
        """`public(path)` is true for the paths worth keeping (caching.fil_policy's answer)."""
        self.app = app
        self.public = public
        self.max_bytes = max_bytes
        self.copies: OrderedDict[str, Copy] = OrderedDict()
        self.size = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not self.public(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = scope["path"] + "?" + scope.get("query_string", b"").decode("latin-1")
        started: Message | None = None
        chunks: list[bytes] = []
        held = True  # a 5xx is held back until we know whether a copy replaces it

        async def keep(message: Message) -> None:
            nonlocal started, held
            if message["type"] == "http.response.start":
                started = message
                held = message["status"] >= 500 and key in self.copies
                if not held:
                    await send(message)
                return
            if message["type"] == "http.response.body" and started is not None:
                if not held:
                    await send(message)
                if started["status"] == 200 and sum(map(len, chunks)) <= MAX_BODY:
                    chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._done(key, started, chunks)

        try:
            await self.app(scope, receive, keep)
        except Exception:
            if (started is None or held) and key in self.copies:
                log.warning("%s failed: serving its last good copy", scope["path"], exc_info=True)
                await self._replay(key, send)
                return
            raise
        if held and started is not None:
            log.warning("%s answered %d: serving its last good copy", scope["path"], started["status"])
            await self._replay(key, send)

    def _done(self, key: str, started: Message, chunks: list[bytes]) -> None:
        body = b"".join(chunks)
        if started["status"] != 200 or len(body) > MAX_BODY:
            return
        old = self.copies.pop(key, None)
        if old is not None:
            self.size -= len(old[1])
        headers = [(k, v) for k, v in started.get("headers", []) if k.lower() != b"set-cookie"]
        self.copies[key] = (headers, body)
        self.size += len(body)
        while self.copies and (len(self.copies) > MAX_COPIES or self.size > self.max_bytes):
            _, (_, dropped) = self.copies.popitem(last=False)
            self.size -= len(dropped)

    async def _replay(self, key: str, send: Send) -> None:
        headers, body = self.copies[key]
        self.copies.move_to_end(key)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*headers, (b"x-fil-stale", b"the store is unavailable; this is the last good copy")],
            }
        )
        await send({"type": "http.response.body", "body": body})

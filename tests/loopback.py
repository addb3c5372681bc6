"""The lifecycle every fake server in tests shares: an aiohttp.web app on a loopback address and a free port.

    class FakeThing(LoopbackServer):
        def make_app(self) -> web.Application: ...     # the routes
        async def on_close(self) -> None: ...          # optional: drop streams, cancel tasks

    async with FakeThing() as fake:
        ... fake.base_url ... fake.origin ...

The base of FakeUpstream, FakeMastodon, FakeBluesky and FakeHub (whose public names code outside tests/ may use).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web


class LoopbackServer:
    """Serves `make_app()` on `host` and a port the system picks; `async with` starts it and closes it."""

    host: str
    #: 0 until started
    port: int
    _runner: web.AppRunner | None

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._runner = None

    def make_app(self) -> web.Application:
        """The application to serve, built afresh at each start: every subclass defines its routes here."""
        raise NotImplementedError(f"{type(self).__name__} defines no make_app()")

    async def on_close(self) -> None:
        """The fake's own cleanup, run while the server still serves (open websockets, background tasks)."""

    async def start(self) -> None:
        # a short shutdown_timeout: a trickling or streaming handler must not hold the test's teardown
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        self._runner = runner
        await web.TCPSite(runner, self.host, 0).start()
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        await self.on_close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        """The "host:port" key a Fetcher's trusted_origins takes."""
        return f"{self.host}:{self.port}"

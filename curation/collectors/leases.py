"""Which process collects which source: leases that expire, so a dead process's sources are taken over.

Each active source (or group of sources sharing one upstream connection, such as every Bluesky account
on one Jetstream endpoint) is collected by the one process holding its lease. The holder extends the
lease well before it runs out; a process that dies stops extending it, and another claims it once it
expires. Two holders at once (a process paused past its lease) cost duplicate fetches, never duplicate
items: the store's ingest is idempotent per entry key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Leases(Protocol):
    async def claim(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lease on `key` for `ttl` seconds, or extend it when `owner` holds it already.

        Returns False while another owner holds it.
        """
        ...

    async def release(self, key: str, owner: str) -> None:
        """Give the lease up at once (a clean shutdown), if `owner` holds it."""
        ...


class LocalLeases:
    """Leases within one process: the embedded store's single process always gets them. One instance
    shared by several collections stands for several processes in tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}

    async def claim(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        holder = self._held.get(key)
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        self._held[key] = (owner, now + ttl)
        return True

    async def release(self, key: str, owner: str) -> None:
        holder = self._held.get(key)
        if holder is not None and holder[0] == owner:
            del self._held[key]

"""Login throttling: too many failed logins for one account or from one address lock it for a while.

LoginLimiter counts in memory, for the one process on the embedded store; with several processes on
Redis, curation/store/redis_limits.py counts in Redis behind the same `Limiter` methods, so the
allowance is the same whichever process a guess lands on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol


def limiter_keys(account: str, address: str | None) -> list[str]:
    keys = [f"account:{account.casefold()}"]
    if address:
        keys.append(f"address:{address}")
    return keys


class Limiter(Protocol):
    async def check(self, keys: list[str]) -> float:
        """Seconds until every key may try again; 0 when none is locked."""
        ...

    async def fail(self, keys: list[str]) -> None:
        """Count a failed login against every key (locking those that reach their limit)."""
        ...

    async def clear(self, account: str) -> None:
        """A right password: the account's failures are forgotten (not the address's)."""
        ...


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginLimiter:
    """Counts failures per key ("account:NAME", "address:IP") inside a sliding window.

    The `limit`-th failure inside `window` seconds locks the key for `lockout` seconds: every attempt
    is then refused, right password or not, so guessing cannot go on at full speed.
    """

    #: beyond this many keys, stale ones are dropped first (a spray of made-up names must not grow memory forever)
    MAX_KEYS = 100_000

    def __init__(
        self,
        *,
        account_limit: int = 5,
        address_limit: int = 20,
        window: float = 300.0,
        lockout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # an address is shared by a whole newsroom behind one NAT: it gets more room than one account
        self.limits = {"account": account_limit, "address": address_limit}
        self.window = window
        self.lockout = lockout
        self.clock = clock
        self._records: dict[str, _Record] = {}

    keys = staticmethod(limiter_keys)

    async def check(self, keys: list[str]) -> float:
        return self.retry_after(keys)

    async def fail(self, keys: list[str]) -> None:
        self.failed(keys)

    async def clear(self, account: str) -> None:
        self.succeeded(account)

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until every key may try again; 0 when none is locked."""
        now = self.clock()
        waits = [record.locked_until - now for key in keys if (record := self._records.get(key)) is not None]
        return max([0.0, *waits])

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        if len(self._records) >= self.MAX_KEYS:
            self._prune(now)
        for key in keys:
            record = self._records.setdefault(key, _Record())
            record.failures.append(now)
            while record.failures and record.failures[0] <= now - self.window:
                record.failures.popleft()
            if len(record.failures) >= self.limits[key.partition(":")[0]]:
                record.locked_until = now + self.lockout
                record.failures.clear()

    def succeeded(self, account: str) -> None:
        """A right password clears the account's failures (not the address's: one good login from a
        shared address must not launder another account's guessing)."""
        record = self._records.get(self.keys(account, None)[0])
        if record is not None and record.locked_until <= self.clock():
            record.failures.clear()

    def _prune(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if r.locked_until <= now and self._stale(r, now)]:
            del self._records[key]

    def _stale(self, record: _Record, now: float) -> bool:
        return not record.failures or record.failures[-1] <= now - self.window

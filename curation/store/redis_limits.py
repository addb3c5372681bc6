"""Login throttling in Redis (curation/ratelimit.py's Limiter), shared by every process of one Fil."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

#: count one failure in the key's window; at the limit, lock the key and start counting afresh
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
end
return n
"""


class RedisLoginLimiter:
    """Failures counted per key in a window that opens at the first failure (INCR + expiry), and a lock
    key that expires by itself: the same limits as the in-memory limiter, whichever process is asked."""

    def __init__(
        self,
        client: Callable[[], Redis],
        prefix: str,
        *,
        account_limit: int = 5,
        address_limit: int = 20,
        window: float = 300.0,
        lockout: float = 300.0,
    ) -> None:
        self._client = client
        self._prefix = f"{prefix}login:"
        self.limits = {"account": account_limit, "address": address_limit}
        self.window_ms = int(window * 1000)
        self.lockout_ms = int(lockout * 1000)

    async def check(self, keys: list[str]) -> float:
        async with self._client().pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(f"{self._prefix}lock:{key}")
            waits = await pipe.execute()
        return max([0.0, *(int(ms) / 1000 for ms in waits if int(ms) > 0)])

    async def fail(self, keys: list[str]) -> None:
        client = self._client()
        for key in keys:
            limit = self.limits[key.partition(":")[0]]
            count, lock = f"{self._prefix}count:{key}", f"{self._prefix}lock:{key}"
            await client.eval(_FAIL, 2, count, lock, str(self.window_ms), str(limit), str(self.lockout_ms))

    async def clear(self, account: str) -> None:
        key = f"account:{account.casefold()}"
        client = self._client()
        if await client.pttl(f"{self._prefix}lock:{key}") <= 0:
            await client.delete(f"{self._prefix}count:{key}")

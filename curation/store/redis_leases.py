"""Collector leases in Redis: which Fil process collects which source (curation/collectors/leases.py)."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

#: take the lease when it is free or already ours, for ARGV[2] milliseconds
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLeases:
    """Leases as keys that expire: `SET key owner PX ttl` when free or held by the same owner, atomically."""

    def __init__(self, client: Callable[[], Redis], prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}lease:"

    async def claim(self, key: str, owner: str, ttl: float) -> bool:
        result = await self._client().eval(_CLAIM, 1, self._prefix + key, owner, str(max(1, int(ttl * 1000))))
        return bool(result)

    async def release(self, key: str, owner: str) -> None:
        await self._client().eval(_RELEASE, 1, self._prefix + key, owner)

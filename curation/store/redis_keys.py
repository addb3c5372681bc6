"""Where the Redis backend keeps things: the key layout, the item index members and the read-only Lua scripts.

Every per-event key carries the slug as a hash tag (`fil:ev:{stage-1}:items`) so an event's keys could live in
one Redis Cluster slot; everything sits under one prefix so several Fils (or tests) share a Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio.client import Pipeline

from curation.models import Item, ItemState

#: queues a write transaction's commands inside MULTI (what the queued commands return is not used)
Write = Callable[[Pipeline], object]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: index members start with sort_us + this, as 20 digits, so that byte order is time order (years 1 to 9999)
_SORT_OFFSET = 10**17
#: where the id starts in an index member: 20 digits and a `|`
ID_AT = 21


def exact_us(value: datetime) -> int:
    """Microseconds since the epoch, in integers (a float timestamp loses the last digit)."""
    return (value - EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def sort_us(item: Item) -> int:
    """The item's place, to the millisecond: what its stored record keeps, so a re-read item finds its entry."""
    us = exact_us(item.sort_at)
    return us - us % 1000


def member(item: Item) -> str:
    """The item's entry in a lexicographic index: (sort_us, id) order is the members' byte order."""
    return lex(sort_us(item), item.id)


def lex(sort_us_: int, item_id: str) -> str:
    return f"{sort_us_ + _SORT_OFFSET:020d}|{item_id}"


def unlex(member_: str) -> tuple[int, str]:
    """(sort_us, id) of an index member."""
    return int(member_[: ID_AT - 1]) - _SORT_OFFSET, member_[ID_AT:]


@dataclass(frozen=True, slots=True)
class EventKeys:
    """The keys of one event."""

    prefix: str
    slug: str

    def _k(self, name: str) -> str:
        return f"{self.prefix}ev:{{{self.slug}}}:{name}"

    @property
    def meta(self) -> str:
        """HASH: seq (the log head), min (the oldest seq kept), audit (the last audit entry id)."""
        return self._k("meta")

    @property
    def items(self) -> str:
        """HASH: item id -> item record JSON (codec.item_to_record)."""
        return self._k("items")

    @property
    def keys(self) -> str:
        """HASH: `source_id key` -> item id, or "" for a key seen and left out."""
        return self._k("keys")

    @property
    def curl(self) -> str:
        """HASH: canonical URL -> the item id that has it."""
        return self._k("curl")

    def state(self, state: ItemState | str) -> str:
        """ZSET (lexicographic, scores 0): every item in this state."""
        return self._k(f"state:{state}")

    @property
    def timeline(self) -> str:
        """ZSET (lexicographic): published items that are not pinned."""
        return self._k("timeline")

    @property
    def pinned(self) -> str:
        """ZSET (lexicographic): published pinned items."""
        return self._k("pinned")

    @property
    def log(self) -> str:
        """STREAM: the change log, entry id `seq-0`, trimmed to the retention."""
        return self._k("log")

    @property
    def audit(self) -> str:
        """ZSET: score = audit entry id, member = the entry's JSON."""
        return self._k("audit")

    @property
    def header(self) -> str:
        """STRING: the header record JSON."""
        return self._k("header")

    @property
    def mutes(self) -> str:
        """HASH: source id -> microseconds the mute ends at."""
        return self._k("mutes")

    @property
    def channel(self) -> str:
        """Pub/sub channel: the log head after each committed batch (the seam for cross-process fan-out)."""
        return f"{self.prefix}changes:{self.slug}"

    def every_key(self) -> list[str]:
        """Every key of the event (what replacing it by an import deletes)."""
        names = [self.meta, self.items, self.keys, self.curl, self.timeline, self.pinned, self.log, self.audit]
        return [*names, self.header, self.mutes, *(self.state(s) for s in ItemState)]

    def item_keys(self) -> list[str]:
        """What a write that changes items reads, so what it watches."""
        return [self.meta, self.items, self.curl]


def index_keys(keys: EventKeys, item: Item) -> list[str]:
    """The lexicographic indexes the item belongs in."""
    found = [keys.state(item.state)]
    if item.state is ItemState.PUBLISHED:
        found.append(keys.pinned if item.pinned else keys.timeline)
    return found


def key_field(source_id: str, key: str) -> str:
    # source ids never hold a space (sources.SOURCE_ID), so the first space splits
    return f"{source_id} {key}"


#: one page of the timeline and the seq it reflects, read at one instant.
#: KEYS: meta, items, pinned, timeline. ARGV: rev (1/0), start, stop, count, first page (1/0).
PAGE_SCRIPT = """
local function load(members)
  local out = {}
  for i = 1, #members, 500 do
    local ids = {}
    for j = i, math.min(i + 499, #members) do ids[#ids + 1] = string.sub(members[j], 22) end
    local got = redis.call('HMGET', KEYS[2], unpack(ids))
    for _, v in ipairs(got) do out[#out + 1] = v or '' end
  end
  return out
end
local rev = ARGV[1] == '1'
local head = redis.call('HGET', KEYS[1], 'seq') or '0'
local pinned = {}
if ARGV[5] == '1' then
  if rev then pinned = redis.call('ZRANGE', KEYS[3], '+', '-', 'BYLEX', 'REV')
  else pinned = redis.call('ZRANGE', KEYS[3], '-', '+', 'BYLEX') end
end
local members
if rev then members = redis.call('ZRANGE', KEYS[4], ARGV[2], ARGV[3], 'BYLEX', 'REV', 'LIMIT', 0, ARGV[4])
else members = redis.call('ZRANGE', KEYS[4], ARGV[2], ARGV[3], 'BYLEX', 'LIMIT', 0, ARGV[4]) end
return {head, load(pinned), members, load(members)}
"""

#: the newest items of several state indexes and the seq they reflect, read at one instant.
#: KEYS: meta, items, state indexes... ARGV: count per index.
RECENT_SCRIPT = """
local members = {}
for i = 3, #KEYS do
  for _, m in ipairs(redis.call('ZRANGE', KEYS[i], '+', '-', 'BYLEX', 'REV', 'LIMIT', 0, ARGV[1])) do
    members[#members + 1] = m
  end
end
local out = {}
for i = 1, #members, 500 do
  local ids = {}
  for j = i, math.min(i + 499, #members) do ids[#ids + 1] = string.sub(members[j], 22) end
  for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do out[#out + 1] = v or '' end
end
return {redis.call('HGET', KEYS[1], 'seq') or '0', members, out}
"""

#: the log's head, its oldest kept seq and up to `count` entries from `start`, as one flat reply (every nested
#: reply costs the client a parse step). KEYS: meta, log. ARGV: start id, count.
LOG_SCRIPT = """
local meta = redis.call('HMGET', KEYS[1], 'seq', 'min')
local out = {meta[1] or '0', meta[2] or '1'}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])) do
  local fields = {}
  for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
  out[#out + 1] = entry[1]
  out[#out + 1] = fields['c'] or '{}'
  out[#out + 1] = fields['m'] or ''
end
return out
"""

#: a token and the editor it belongs to, in one round trip. KEYS: tokens, editors. ARGV: token hash.
TOKEN_SCRIPT = """
local token = redis.call('HGET', KEYS[1], ARGV[1])
if not token then return {} end
local editor = redis.call('HGET', KEYS[2], cjson.decode(token)['name'])
if not editor then return {} end
return {token, editor}
"""

"""One reader process of the reconnect-storm benchmark: bench/loadgen.py's readers that drop and resume.

Connects `--count` readers, prints `{"ready": ...}`, then on `drop` aborts every connection at once
and reconnects each at once (to `--reconnect-port`, another process when there are two) with
`?since=<the last seq it had>`, at most `--storm-concurrency` handshakes in flight. A reader is caught
up when it holds everything up to the seq its new hello announced; each checks that seqs follow on
(no gap, no duplicate, no reset) and that the item of each seq is the one every other reader of this
process got for it. Prints `{"storm": ...}` once all are caught up (or at `--storm-timeout`), then a
final report on `report`. Launched by bench/storm.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadgen import Reader, Stats, abort_all, cli, connect, lines, seq_of  # noqa: E402

ITEM_ID = b'"item":{"id":"'
RESET = b'"type":"reset"'


class StormStats(Stats):
    def __init__(self) -> None:
        super().__init__()
        #: seq -> item id as first seen by a reader of this process
        self.items: dict[int, bytes] = {}
        self.mismatches = 0
        self.resets = 0
        self.caught_up = 0
        self.dropping = False
        self.all_caught_up = asyncio.Event()
        self.expected = 0


class StormReader(Reader):
    """A loadgen reader that carries its last seq across a reconnection and notes when it caught up."""

    __slots__ = ("caught_at", "dropped_at", "hello_at", "target")

    def __init__(self, request: bytes, stats: StormStats, ready: asyncio.Future[None], last_seq: int = -1) -> None:
        super().__init__(request, stats, ready)
        self.last_seq = last_seq
        self.dropped_at = 0.0
        self.hello_at = 0.0
        self.caught_at = 0.0
        #: the seq the (new) hello announced: caught up once last_seq reaches it
        self.target = -1

    def connection_lost(self, exc: Exception | None) -> None:
        stats = self.stats
        assert isinstance(stats, StormStats)
        if stats.dropping and self.greeted and self.dropped_at and not self.hello_at:
            return  # a connection the storm dropped (its successor got a new hello)
        super().connection_lost(exc)

    def _frame(self, opcode: int, buffer: bytes, start: int, end: int, now: float) -> None:
        stats = self.stats
        assert isinstance(stats, StormStats)
        if opcode != 1:
            super()._frame(opcode, buffer, start, end, now)
            return
        if not self.greeted:
            self.greeted = True
            self.target = seq_of(buffer, start, end)
            if self.last_seq < 0:
                self.last_seq = self.target
            if self.dropped_at:
                self.hello_at = now
                self._check_caught_up(now)
            if not self.ready.done():
                self.ready.set_result(None)
            return
        if buffer.find(RESET, start, end) >= 0:
            stats.resets += 1
            return
        seq = seq_of(buffer, start, end)
        if seq < 0:
            stats.other += 1
            return
        mark = buffer.find(ITEM_ID, start, end)
        if mark >= 0:
            mark += len(ITEM_ID)
            item = bytes(buffer[mark : buffer.find(b'"', mark, end)])
            if stats.items.setdefault(seq, item) != item:
                stats.mismatches += 1
        self.check_seq(seq)
        self.count += 1
        if self.dropped_at:
            self._check_caught_up(now)

    def _check_caught_up(self, now: float) -> None:
        if not self.caught_at and self.last_seq >= self.target >= 0:
            self.caught_at = now
            stats = self.stats
            assert isinstance(stats, StormStats)
            stats.caught_up += 1
            if stats.caught_up >= stats.expected:
                stats.all_caught_up.set()


def ms(values: list[float]) -> list[float]:
    return [round(v * 1000, 1) for v in values]


async def storm(readers: list[StormReader], stats: StormStats, args: argparse.Namespace) -> list[StormReader]:
    """Drop every reader at once, reconnect each with since=<its last seq>; returns the new readers."""
    sources = args.sources.split(",")
    gate = asyncio.Semaphore(args.storm_concurrency)
    stats.dropping = True
    stats.expected = len(readers)
    dropped_at = time.time()
    for reader in readers:
        reader.dropped_at = dropped_at
        if reader.transport is not None:
            reader.transport.abort()

    async def again(i: int, old: StormReader) -> StormReader:
        # live.js waits 1-1.5 s before its first reconnection; 0 (the default) is the worst case
        if args.away or args.jitter:
            await asyncio.sleep(args.away + random.random() * args.jitter)
        path = f"{args.path}?since={old.last_seq}"

        def make(request: bytes, stats_: Stats, ready: asyncio.Future[None]) -> StormReader:
            assert isinstance(stats_, StormStats)
            reader = StormReader(request, stats_, ready, old.last_seq)
            reader.dropped_at = dropped_at
            reader.count = old.count
            return reader

        async with gate:
            return await connect(args.host, args.reconnect_port, path, sources[i % len(sources)], stats, make)

    results = await asyncio.gather(*(again(i, r) for i, r in enumerate(readers)), return_exceptions=True)
    fresh = [r for r in results if isinstance(r, StormReader)]
    failed = [r for r in results if not isinstance(r, StormReader)]
    stats.expected = len(fresh)
    if stats.caught_up < stats.expected:
        try:
            await asyncio.wait_for(stats.all_caught_up.wait(), args.storm_timeout)
        except TimeoutError:
            pass
    stats.dropping = False
    caught = sorted(r.caught_at - dropped_at for r in fresh if r.caught_at)
    hellos = sorted(r.hello_at - dropped_at for r in fresh if r.hello_at)
    print(
        json.dumps(
            {
                "storm": {
                    "reconnected": len(fresh),
                    "failed": len(failed),
                    "error": str(failed[0]) if failed else None,
                    "caught_up_s": ms(caught),
                    "hello_s": ms(hellos),
                    "not_caught_up": len(fresh) - len(caught),
                }
            }
        )
    )
    sys.stdout.flush()
    return fresh


def report(readers: list[StormReader], stats: StormStats) -> dict[str, Any]:
    return {
        "connected": len(readers),
        "last_seqs": dict(Counter(r.last_seq for r in readers)),
        "lost": stats.lost,
        "gaps": stats.gaps,
        "dups": stats.dups,
        "resets": stats.resets,
        "mismatches": stats.mismatches,
        "other": stats.other,
    }


async def main(args: argparse.Namespace) -> None:
    stats = StormStats()
    sources = args.sources.split(",")
    gate = asyncio.Semaphore(args.concurrency)

    def make(request: bytes, stats_: Stats, ready: asyncio.Future[None]) -> StormReader:
        assert isinstance(stats_, StormStats)
        return StormReader(request, stats_, ready)

    async def one(i: int) -> StormReader:
        async with gate:
            return await connect(args.host, args.port, args.path, sources[i % len(sources)], stats, make)

    results = await asyncio.gather(*(one(i) for i in range(args.count)), return_exceptions=True)
    readers = [r for r in results if isinstance(r, StormReader)]
    errors = [r for r in results if not isinstance(r, StormReader)]
    gc.collect()
    gc.freeze()
    gc.disable()
    print(json.dumps({"ready": len(readers), "failed": len(errors), "error": str(errors[0]) if errors else None}))
    sys.stdout.flush()
    control = await lines()
    while line := await control.readline():
        word = line.strip()
        if word == b"drop":
            readers = await storm(readers, stats, args)
        elif word == b"report":
            print(json.dumps(report(readers, stats)))
            sys.stdout.flush()
            break
        elif word == b"quit":
            break
    abort_all(readers)


def more(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reconnect-port", type=int, required=True, help="where the readers come back")
    parser.add_argument("--storm-concurrency", type=int, default=1000, help="handshakes in flight in the storm")
    parser.add_argument("--storm-timeout", type=float, default=60.0, help="seconds to wait for all to catch up")
    parser.add_argument("--away", type=float, default=0.0, help="seconds each reader waits before reconnecting")
    parser.add_argument("--jitter", type=float, default=0.0, help="plus up to this many seconds at random")


def run() -> None:
    cli(__doc__, main, more)


if __name__ == "__main__":
    run()

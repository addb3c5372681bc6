"""One reader process of the ingest benchmark: bench/loadgen.py's raw-asyncio websocket readers, matching markers.

Each upsert carrying `ingest-mark=<path><n>t<sent>;` is timed once per reader (receive time minus `sent`);
repeats of a marker (an edit, a poll finding the same post) are counted apart. Prints `{"ready": ...}` once every
reader has its hello, then a report on the `report` line from stdin. Launched by bench/ingest.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bench.loadgen import (  # noqa: E402
    ATTEMPTS,
    CONNECT_TIMEOUT,
    Reader,
    Stats,
    abort_all,
    cli,
    open_connection,
    serve_reports,
    upgrade_request,
)

MARK = b"ingest-mark="
UPSERT = b'"type":"upsert"'
LAG_TICK = 0.005
#: reader-side pauses longer than this are reported with their wall-clock time, to tell them from Fil's delays
LONG_PAUSE = 0.03


class MarkStats(Stats):
    def __init__(self) -> None:
        super().__init__()
        #: marker -> receive times (one per reader that got it)
        self.received: defaultdict[bytes, list[float]] = defaultdict(list)
        self.repeats = 0
        #: (wall-clock start, seconds) of every pause of this process's loop longer than LONG_PAUSE
        self.pauses: list[tuple[float, float]] = []
        self.lag_max = 0.0

    async def watch(self) -> None:
        """Time this process's own stalls (a burst of 1,000 frames to read, the core taken by someone else)."""
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_TICK)
            pause = time.perf_counter() - before - LAG_TICK
            self.lag_max = max(self.lag_max, pause)
            if pause > LONG_PAUSE:
                self.pauses.append((time.time() - pause, pause))


class MarkReader(Reader):
    """A loadgen reader that keeps, per marker, the first time this reader saw it."""

    __slots__ = ("seen",)

    def __init__(self, request: bytes, stats: MarkStats, ready: asyncio.Future[None]) -> None:
        super().__init__(request, stats, ready)
        self.seen: set[bytes] = set()

    def _frame(self, opcode: int, buffer: bytes, start: int, end: int, now: float) -> None:
        if opcode != 1 or not self.greeted:
            super()._frame(opcode, buffer, start, end, now)
            return
        stats = self.stats
        assert isinstance(stats, MarkStats)
        mark = buffer.find(MARK, start, end)
        if mark < 0 or buffer.find(UPSERT, start, end) < 0:
            stats.other += 1
            return
        stop = buffer.find(b";", mark, end)
        key = bytes(buffer[mark + len(MARK) : stop])
        if key in self.seen:
            stats.repeats += 1
            return
        self.seen.add(key)
        stats.received[key].append(now)
        self.count += 1


async def connect(host: str, port: int, path: str, source: str, stats: MarkStats) -> MarkReader:
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    for attempt in range(ATTEMPTS):
        ready: asyncio.Future[None] = loop.create_future()
        reader = MarkReader(upgrade_request(host, port, path), stats, ready)
        try:
            await asyncio.wait_for(open_connection(reader, host, port, source), CONNECT_TIMEOUT)
            await asyncio.wait_for(ready, CONNECT_TIMEOUT)
            return reader
        except (OSError, TimeoutError) as e:
            last = e
            if reader.transport is not None:
                reader.transport.abort()
            await asyncio.sleep(0.1 * (attempt + 1))
    raise ConnectionError(f"{source} -> {host}:{port}{path}: {last}")


def report(readers: list[MarkReader], stats: MarkStats, failed: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {}
    for key, times in stats.received.items():
        sent = float(key[key.index(b"t") + 1 :])
        # milliseconds, rounded: enough for percentiles and a tenth of the size on the pipe
        latencies[key.decode()] = [round((t - sent) * 1000, 2) for t in times]
    return {
        "latencies_ms": latencies,
        "connected": len(readers),
        "failed": failed,
        "lost": stats.lost,
        "other": stats.other,
        "repeats": stats.repeats,
        "lag_max_ms": round(stats.lag_max * 1000, 1),
        "pauses": [(round(at, 3), round(p * 1000, 1)) for at, p in stats.pauses],
    }


async def main(args: argparse.Namespace) -> None:
    stats = MarkStats()
    sources = args.sources.split(",")
    gate = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> MarkReader:
        async with gate:
            return await connect(args.host, args.port, args.path, sources[i % len(sources)], stats)

    results = await asyncio.gather(*(one(i) for i in range(args.count)), return_exceptions=True)
    readers = [r for r in results if isinstance(r, MarkReader)]
    errors = [r for r in results if not isinstance(r, MarkReader)]
    # no collections while measuring: a pause here would show as ingest latency
    gc.collect()
    gc.freeze()
    gc.disable()
    print(json.dumps({"ready": len(readers), "failed": len(errors), "error": str(errors[0]) if errors else None}))
    sys.stdout.flush()
    watcher = asyncio.create_task(stats.watch())
    await serve_reports(lambda: report(readers, stats, len(errors)))
    watcher.cancel()
    abort_all(readers)


def run() -> None:
    cli(__doc__, main)


if __name__ == "__main__":
    run()

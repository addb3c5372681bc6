"""What every bench server shares: the stdin/stdout control channel, the publish schedule and the pause monitors.

A server prints JSON lines on its original stdout (anything else printed goes to stderr) and obeys
`start RATE DURATION`, `watch` (reset the pause monitors without publishing: a server whose readers
get changes another process publishes), `stats` and `quit` lines on stdin.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

#: the lag monitor's sleep; a pause shows as the overshoot of this sleep
LAG_TICK = 0.005
#: marks the publish time inside every message, `bench-ts=<unix seconds>;`, found by the load generator
TS_MARK = "bench-ts="
#: pauses longer than this are listed (seconds into the publish phase, milliseconds)
LONG_PAUSE = 0.1

Publish = Callable[[int, float], Awaitable[None]]
Extra = Callable[[], dict[str, Any]]


def raise_nofile() -> int:
    """Lift the soft open-files limit to the hard one; thousands of sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def open_reply_channel() -> Callable[[dict[str, Any]], None]:
    """Keep stdout for replies to the harness only; library output (uvicorn, logging) goes to stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    return send


class Monitor:
    """Longest event-loop pause and longest garbage collection since the last reset."""

    def __init__(self) -> None:
        self.reset()
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def reset(self) -> None:
        self.lag_max = 0.0
        self.lag_max_at = 0.0
        self.gc_max = 0.0
        self.gc_full = 0
        self.since = time.perf_counter()
        self.long: list[tuple[float, float]] = []

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        self.gc_max = max(self.gc_max, time.perf_counter() - self._gc_started)
        if info.get("generation") == 2:
            self.gc_full += 1

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_TICK)
            pause = time.perf_counter() - before - LAG_TICK
            if pause > LONG_PAUSE:
                self.long.append((before - self.since, pause))
            if pause > self.lag_max:
                self.lag_max = pause
                self.lag_max_at = before - self.since

    def snapshot(self) -> dict[str, Any]:
        return {
            "lag_max_ms": round(self.lag_max * 1000, 2),
            # seconds into the publish phase, to tell a first-call cost from a periodic one
            "lag_max_at_s": round(self.lag_max_at, 2),
            "long_pauses": len(self.long),
            "top_pauses": [(round(at, 2), round(p * 1000, 1)) for at, p in sorted(self.long, key=lambda x: -x[1])[:4]],
            "gc_max_ms": round(self.gc_max * 1000, 2),
            "gc_full": self.gc_full,
        }


async def commands() -> AsyncIterator[list[str]]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if words := line.decode().split():
            yield words


async def publish_schedule(publish: Publish, rate: float, duration: float) -> int:
    """Call `publish(i, ts)` at `rate` per second; `ts` is the scheduled wall-clock time of change i.

    Stamping the scheduled time (not the moment the call starts) means a publisher that falls behind
    shows up as latency instead of hiding it.
    """
    count = max(1, round(rate * duration))
    start = time.perf_counter() + 0.05
    wall = time.time() + (start - time.perf_counter())
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await publish(i, wall + i / rate)
    return count


async def control_loop(send: Callable[[dict[str, Any]], None], publish: Publish, extra: Extra) -> None:
    """Obey the harness until `quit` or end of input."""
    monitor = Monitor()
    lag_task = asyncio.create_task(monitor.run())
    publisher: asyncio.Task[None] | None = None

    async def run_publish(rate: float, duration: float) -> None:
        count = await publish_schedule(publish, rate, duration)
        # the last fan-out has run by now: the pauses of the publish phase end here
        send({"done": count, **monitor.snapshot(), **extra()})

    try:
        async for words in commands():
            if words[0] == "start":
                monitor.reset()
                publisher = asyncio.create_task(run_publish(float(words[1]), float(words[2])))
            elif words[0] == "watch":
                monitor.reset()
            elif words[0] == "stats":
                send({**monitor.snapshot(), **extra()})
            elif words[0] == "quit":
                break
    finally:
        lag_task.cancel()
        if publisher is not None:
            publisher.cancel()

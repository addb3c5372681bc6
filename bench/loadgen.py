"""One load-generator process of the fan-out benchmark: many light websocket readers on raw asyncio.

Each reader does the HTTP upgrade itself (no extensions offered, so no compression), answers pings,
and for every text frame after the first (the hello) records receive time minus the `bench-ts=`
publish time inside it, and checks that its `"seq":` follows on from the last one it had (the hello's
seq at first): a seq skipped is a gap, one already had is a duplicate. Prints `{"ready": ...}` once
every reader has its first message, then a report on the `report` line from stdin. Launched by
bench/fanout.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import resource
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, cast

import uvloop

TS_MARK = b"bench-ts="
SEQ_MARK = b'"seq":'
CONNECT_TIMEOUT = 30.0
ATTEMPTS = 5


class Stats:
    def __init__(self) -> None:
        self.latencies = array("d")
        self.other = 0
        self.lost = 0
        #: seqs skipped, and seqs received again, over every reader of the process
        self.gaps = 0
        self.dups = 0


class Reader(asyncio.Protocol):
    """One websocket reader; frames from a server are never masked, so parsing stays tiny."""

    __slots__ = ("buffer", "count", "greeted", "last_seq", "ready", "stats", "request", "transport", "upgraded")

    def __init__(self, request: bytes, stats: Stats, ready: asyncio.Future[None]) -> None:
        self.request = request
        self.stats = stats
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.greeted = False
        self.count = 0
        #: the seq of the last message (the hello's at first); -1 until the hello
        self.last_seq = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.greeted:
            self.stats.lost += 1
        elif not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before hello: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if b" 101 " not in buffer[: buffer.find(b"\r\n")]:
                self._fail(f"upgrade refused: {buffer[:80]!r}")
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
        self.buffer = self._frames(buffer, now)

    def _frames(self, buffer: bytes, now: float) -> bytes:
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            opcode = buffer[pos] & 0x0F
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            self._frame(opcode, buffer, start, end, now)
            pos = end
        return buffer[pos:] if pos < size else b""

    def _frame(self, opcode: int, buffer: bytes, start: int, end: int, now: float) -> None:
        if opcode == 1:
            if not self.greeted:
                self.greeted = True
                self.last_seq = seq_of(buffer, start, end)
                if not self.ready.done():
                    self.ready.set_result(None)
                return
            mark = buffer.find(TS_MARK, start, end)
            if mark < 0:
                self.stats.other += 1
                return
            self.check_seq(seq_of(buffer, start, end))
            stop = buffer.find(b";", mark, end)
            self.stats.latencies.append(now - float(buffer[mark + len(TS_MARK) : stop]))
            self.count += 1
        elif opcode == 9 and self.transport is not None:
            # a pong must be masked; a zero mask leaves the payload as is
            payload = buffer[start:end]
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
        elif opcode == 8 and self.transport is not None:
            self.transport.close()

    def check_seq(self, seq: int) -> None:
        if seq <= self.last_seq:
            self.stats.dups += 1
            return
        if self.last_seq >= 0 and seq != self.last_seq + 1:
            self.stats.gaps += seq - self.last_seq - 1
        self.last_seq = seq

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()


R = TypeVar("R", bound=Reader)


def seq_of(buffer: bytes, start: int, end: int) -> int:
    """The `"seq":N` of a hello or change message, -1 when it has none."""
    mark = buffer.find(SEQ_MARK, start, end)
    if mark < 0:
        return -1
    mark += len(SEQ_MARK)
    stop = mark
    while stop < end and 48 <= buffer[stop] <= 57:
        stop += 1
    return int(buffer[mark:stop]) if stop > mark else -1


def upgrade_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def open_connection(reader: Reader, host: str, port: int, source: str) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: reader, host, port, local_addr=(source, 0))


async def connect(host: str, port: int, path: str, source: str, stats: Stats, factory: Callable[..., R] = Reader) -> R:
    """One reader connected and greeted; `factory(request, stats, ready)` makes it (a Reader subclass)."""
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    for attempt in range(ATTEMPTS):
        ready: asyncio.Future[None] = loop.create_future()
        reader = factory(upgrade_request(host, port, path), stats, ready)
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


async def lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def report(readers: list[Reader], stats: Stats, failed: int) -> dict[str, Any]:
    return {
        # milliseconds, rounded: enough for percentiles and a tenth of the size on the pipe
        "latencies_ms": [round(x * 1000, 2) for x in stats.latencies],
        "per_reader": dict(Counter(r.count for r in readers)),
        "connected": len(readers),
        "failed": failed,
        "lost": stats.lost,
        "other": stats.other,
        "gaps": stats.gaps,
        "dups": stats.dups,
    }


async def main(args: argparse.Namespace) -> None:
    stats = Stats()
    sources = args.sources.split(",")
    gate = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> Reader:
        async with gate:
            return await connect(args.host, args.port, args.path, sources[i % len(sources)], stats)

    results = await asyncio.gather(*(one(i) for i in range(args.count)), return_exceptions=True)
    readers = [r for r in results if isinstance(r, Reader)]
    errors = [r for r in results if not isinstance(r, Reader)]
    # the load generator must not pause while it measures: no collections from here on
    gc.collect()
    gc.freeze()
    gc.disable()
    print(json.dumps({"ready": len(readers), "failed": len(errors), "error": str(errors[0]) if errors else None}))
    sys.stdout.flush()
    await serve_reports(lambda: report(readers, stats, len(errors)))
    abort_all(readers)


async def serve_reports(make_report: Callable[[], dict[str, Any]]) -> None:
    """Answer the harness on stdin: `report` prints one JSON line and ends, `quit` ends."""
    control = await lines()
    while line := await control.readline():
        if line.strip() == b"report":
            print(json.dumps(make_report()))
            sys.stdout.flush()
        if line.strip() in (b"report", b"quit"):
            break


def abort_all(readers: Iterable[Reader]) -> None:
    for reader in readers:
        if reader.transport is not None:
            reader.transport.abort()


def cli(
    doc: str | None,
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
    more: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """The reader processes' shared command line: where to connect, how many, from which addresses
    (and what `more` adds)."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sources", default=",".join(f"127.0.0.{i}" for i in range(2, 10)))
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once")
    if more is not None:
        more(parser)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.count + 100 > hard:
        raise SystemExit(f"--count {args.count} needs more open files than the hard limit {hard}")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args))


def run() -> None:
    cli(__doc__, main)


if __name__ == "__main__":
    run()

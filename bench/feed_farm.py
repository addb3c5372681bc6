"""The upstream of the polling benchmark: many RSS feeds on loopback, with ETags, a few changing per minute.

`/feed/<n>.xml` for n in 0..count-1, each `--entries` items long. A request whose If-None-Match is the
feed's current ETag gets 304 and no body; otherwise 200 and the document. On `change PER_MINUTE`, feeds
change one at a time at that rate, round-robin through a shuffled order (so no feed changes twice
before all changed once): a new first item whose title carries `ingest-mark=p<feed>x<k>t<when>;`,
the mark bench/ingest_readers.py times, and a new ETag. Speaks bench/control.py's JSON-lines channel:
prints `{"ready": ..., "url": ...}`, then obeys `status [SINCE]`, `change PER_MINUTE`, `hold` and `quit`.
Launched by bench/polls.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.control import Monitor, commands, open_reply_channel, raise_nofile  # noqa: E402

MARK = "ingest-mark="
TEXT = (
    "The peloton reached the foot of the last climb together; the favourites' teams set a steady pace while "
    "the breakaway's lead fell under a minute with twelve kilometres to go."
)


class Feed:
    __slots__ = ("body", "etag", "items", "number", "version")

    def __init__(self, number: int, entries: int) -> None:
        self.number = number
        self.version = 0
        now = time.time()
        # the first import: plain items, no mark (they are not part of what is timed)
        self.items = [self._item(f"Update {k} from desk {number}", k, now - 60 * (entries - k)) for k in range(entries)]
        self.items.reverse()
        self.etag = ""
        self.body = b""
        self._render()

    def _item(self, title: str, k: int, when: float) -> str:
        stamp = format_datetime(datetime.fromtimestamp(when, UTC), usegmt=True)
        return (
            f"<item><title>{title}</title><link>http://feeds.example/{self.number}/{k}</link>"
            f'<guid isPermaLink="false">feed{self.number}-item{k}</guid><pubDate>{stamp}</pubDate>'
            f"<description>{TEXT}</description></item>"
        )

    def _render(self) -> None:
        self.etag = f'"f{self.number}v{self.version}"'
        self.body = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>Desk {self.number}</title><link>http://feeds.example/{self.number}</link>"
            f"<description>Live desk {self.number}</description>" + "".join(self.items) + "</channel></rss>"
        ).encode()

    def change(self, k: int) -> float:
        """A new first item marked with the time it appeared; returns that time."""
        when = time.time()
        title = f"{MARK}p{self.number:04d}x{k:04d}t{when:.6f}; Update from desk {self.number}"
        self.items.insert(0, self._item(title, 100000 + k, when))
        del self.items[-1]
        self.version += 1
        self._render()
        return when


class Farm:
    def __init__(self, count: int, entries: int) -> None:
        self.feeds = [Feed(n, entries) for n in range(count)]
        self.requests: Counter[int] = Counter()
        #: when each feed was requested, to tell the interval each source actually got
        self.times: dict[int, list[float]] = {}
        self.not_modified = 0
        self.full = 0
        #: requests per whole second (time.time()), for the peak poll rate
        self.per_second: Counter[int] = Counter()
        self.changes: list[tuple[int, int, float]] = []
        self.changer: asyncio.Task[None] | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            feed = self.feeds[int(name)]
        except (ValueError, IndexError):
            raise web.HTTPNotFound() from None
        self.requests[feed.number] += 1
        now = time.time()
        self.times.setdefault(feed.number, []).append(now)
        self.per_second[int(now)] += 1
        if request.headers.get("If-None-Match") == feed.etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": feed.etag})
        self.full += 1
        return web.Response(body=feed.body, content_type="application/rss+xml", headers={"ETag": feed.etag})

    async def change_forever(self, per_minute: float) -> None:
        order = list(range(len(self.feeds)))
        random.shuffle(order)
        start = time.perf_counter()
        for k in range(10**9):
            delay = start + k * 60 / per_minute - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            feed = self.feeds[order[k % len(order)]]
            self.changes.append((feed.number, k, feed.change(k)))

    def status(self, since: float = 0.0) -> dict[str, Any]:
        """Counts since start; `gaps_s`: the time between consecutive requests of a feed, both after `since`."""
        gaps = [
            round(b - a, 3)
            for times in self.times.values()
            for a, b in zip(times, times[1:], strict=False)
            if a >= since
        ]
        return {
            "gaps_s": gaps,
            "requests": sum(self.requests.values()),
            "not_modified": self.not_modified,
            "full": self.full,
            "feeds_requested": len(self.requests),
            "changes": len(self.changes),
            "per_second": {str(k): v for k, v in sorted(self.per_second.items())},
            "changed": [[n, k, round(t, 6)] for n, k, t in self.changes],
        }


async def main(args: argparse.Namespace) -> None:
    send = open_reply_channel()
    farm = Farm(args.count, args.entries)
    app = web.Application()
    app.router.add_get("/feed/{name}.xml", farm.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    monitor = Monitor()
    lag = asyncio.create_task(monitor.run())
    gc.freeze()
    try:
        send({"ready": True, "url": f"http://127.0.0.1:{port}/feed/{{n}}.xml", "count": args.count})
        async for words in commands():
            if words[0] == "status":
                send({**farm.status(float(words[1]) if len(words) > 1 else 0.0), **monitor.snapshot()})
            elif words[0] == "change":
                monitor.reset()
                farm.changer = asyncio.create_task(farm.change_forever(float(words[1])))
            elif words[0] == "hold" and farm.changer is not None:
                farm.changer.cancel()
                send({"held": len(farm.changes)})
            elif words[0] == "quit":
                break
    finally:
        lag.cancel()
        if farm.changer is not None:
            farm.changer.cancel()
        await runner.cleanup()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=10, help="items per feed")
    args = parser.parse_args()
    raise_nofile()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args))


if __name__ == "__main__":
    run()

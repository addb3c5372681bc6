"""The upstreams of the ingest benchmark in one process: Mastodon, Bluesky (AppView + Jetstream), a WebSub hub
and its feed, and the push sender; each emitted event carries a marker and the time it left.

Reuses the test fakes (tests/fake_*.py, tests/upstreams.py). Speaks bench/control.py's JSON-lines channel:
prints `{"ready": ..., <upstream URLs>}`, then obeys `status`, `run RATE PER_PATH PATHS` and `quit`.
Launched by bench/ingest.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import uvloop  # noqa: E402

from bench.control import Monitor, commands, open_reply_channel, raise_nofile  # noqa: E402
from curation.collectors.push import sign  # noqa: E402
from tests.fake_bluesky import FakeBluesky  # noqa: E402
from tests.fake_mastodon import TOKEN, FakeMastodon  # noqa: E402
from tests.fake_websub_hub import ATOM, FakeHub  # noqa: E402
from tests.upstreams import FakeUpstream, fixture  # noqa: E402

#: `ingest-mark=<path letter><event number>t<unix time it left>;`, found in the upsert by bench/ingest_readers.py
MARK = "ingest-mark="
PATHS = {"jetstream": "j", "mastodon": "m", "websub": "w", "push": "p"}
MASTODON_ACCT = "mastodonpy_test"  # the account of tests/fixtures/mastodon/account_lookup.json
BLUESKY_HANDLE = "rider.test"
#: the rel=self of youtube_channel_tagesschau.xml: the topic Fil subscribes to
TOPIC = "http://www.youtube.com/feeds/videos.xml?channel_id=UC5NOEUbkLheQcaaRldYW5GA"
CHANNEL = "UC5NOEUbkLheQcaaRldYW5GA"
FILLER = (
    "Stage 12 live: the breakaway has 2'40'' on the peloton with 35 km to go; the team of the yellow jersey "
    "sets the pace at the front and the crosswinds on the plateau may split the race before the last climb."
)


def marker(path: str, n: int, ts: float) -> str:
    return f"{MARK}{PATHS[path]}{n:04d}t{ts:.6f};"


def youtube_notification(video_id: str, title: str, when: datetime) -> bytes:
    """What YouTube's hub delivers for a new video (the channel feed's Atom with just that entry)."""
    stamp = when.isoformat(timespec="seconds")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom">\n'
        '  <link rel="hub" href="https://pubsubhubbub.appspot.com"/>\n'
        f'  <link rel="self" href="https://www.youtube.com/xml/feeds/videos.xml?channel_id={CHANNEL}"/>\n'
        f"  <title>YouTube video feed</title>\n  <updated>{stamp}</updated>\n"
        f"  <entry>\n    <id>yt:video:{video_id}</id>\n    <yt:videoId>{video_id}</yt:videoId>\n"
        f"    <yt:channelId>{CHANNEL}</yt:channelId>\n    <title>{title}</title>\n"
        f'    <link rel="alternate" href="http://www.youtube.com/watch?v={video_id}"/>\n'
        f"    <author>\n      <name>tagesschau</name>\n      <uri>http://www.youtube.com/channel/{CHANNEL}</uri>\n"
        f"    </author>\n    <published>{stamp}</published>\n    <updated>{stamp}</updated>\n  </entry>\n</feed>\n"
    ).encode()


class Upstreams:
    """Every fake, started together; `emit()` sends one marked event down one path."""

    def __init__(self, fil: str, push_source: str, push_secret: str) -> None:
        self.fil = fil.rstrip("/")
        self.push_source = push_source
        self.push_secret = push_secret
        self.mastodon = FakeMastodon()
        self.bluesky = FakeBluesky()
        self.hub = FakeHub()
        self.feeds = FakeUpstream()
        self.session: aiohttp.ClientSession | None = None
        self.rider = self.bluesky.add_account(BLUESKY_HANDLE, display_name="Rider")
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[str] = []

    async def start(self) -> None:
        for fake in (self.mastodon, self.bluesky, self.hub, self.feeds):
            await fake.start()
        self.bluesky.add_post(self.rider, "Warming up before the stage")
        self.feeds.add(
            "/videos.xml",
            fixture("youtube_channel_tagesschau.xml"),
            content_type=ATOM,
            etag="auto",
            headers={"Link": f'<{self.hub.url}>; rel="hub"'},
        )
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        for fake in (self.feeds, self.hub, self.bluesky, self.mastodon):
            await fake.close()

    def addresses(self) -> dict[str, str]:
        return {
            "mastodon": self.mastodon.base_url,
            "mastodon_acct": MASTODON_ACCT,
            "mastodon_token": TOKEN,
            "appview": self.bluesky.base_url,
            "jetstream": self.bluesky.jetstream_url,
            "bluesky_actor": BLUESKY_HANDLE,
            "feed": self.feeds.url("/videos.xml"),
            "hub": self.hub.url,
        }

    def status(self) -> dict[str, Any]:
        """What Fil holds open on each upstream: the harness waits for all of it before measuring."""
        sockets = [s for s in self.bluesky.open_sockets if not s.dids or self.rider.did in s.dids]
        return {
            "mastodon_streams": sum(1 for c in self.mastodon.clients if c.subscriptions),
            "jetstream_sockets": len(sockets),
            "hub_subscribed": self.hub.subscription(TOPIC) is not None,
            "hub_verified": len(self.hub.verifications),
            "feed_requests": len(self.feeds.requests),
            "mastodon_requests": len(self.mastodon.requests),
            "bluesky_requests": len(self.bluesky.requests),
            "errors": self.errors[-5:],
        }

    def _later(self, what: str, job: Awaitable[Any], record: dict[str, Any]) -> None:
        async def run() -> None:
            try:
                record["result"] = await job
            except Exception as e:  # recorded and reported: one failed send must not stop the schedule
                record["result"] = f"{type(e).__name__}: {e}"
                self.errors.append(f"{what}: {record['result']}")

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def emit(self, path: str, n: int) -> dict[str, Any]:
        """Send event n down `path`; `ts` is time.time() just before the frame or request is written."""
        emitters: dict[str, Callable[[int], dict[str, Any]]] = {
            "mastodon": self._mastodon,
            "jetstream": self._jetstream,
            "websub": self._websub,
            "push": self._push,
        }
        return emitters[path](n)

    def _mastodon(self, n: int) -> dict[str, Any]:
        ts = time.time()
        # post() queues the `update` frame on each subscribed stream at once; its sender task writes it next
        self.mastodon.post(MASTODON_ACCT, f"<p>{marker('mastodon', n, ts)} {FILLER}</p>")
        streams = sum(1 for c in self.mastodon.clients if c.subscriptions)
        return {"path": "mastodon", "n": n, "ts": ts, "result": streams}

    def _jetstream(self, n: int) -> dict[str, Any]:
        ts = time.time()
        line = self.bluesky.post_event(self.rider, f"{marker('jetstream', n, ts)} {FILLER}"[:300])
        # what FakeBluesky.push() does, without its flush wait: each socket's sender task writes the line next
        self.bluesky.record(line)
        sockets = self.bluesky.open_sockets
        for socket in sockets:
            socket.queue.put_nowait(line)
        return {"path": "jetstream", "n": n, "ts": ts, "result": sum(1 for s in sockets if s.wants(line))}

    def _websub(self, n: int) -> dict[str, Any]:
        ts = time.time()
        title = f"{marker('websub', n, ts)} Etappe 12 live"
        body = youtube_notification(f"bEnCh{n:06d}", title, datetime.fromtimestamp(ts, UTC))
        record: dict[str, Any] = {"path": "websub", "n": n, "ts": ts}
        self._later("websub", self.hub.publish(TOPIC, body), record)
        return record

    def _push(self, n: int) -> dict[str, Any]:
        assert self.session is not None
        ts = time.time()
        item = {
            "id": f"wire-{n}-{ts:.6f}",
            "kind": "update",
            "url": f"https://wire.example.org/live/{n}",
            "title": f"Wire update {n}",
            "text": f"{marker('push', n, ts)} {FILLER}",
            "published_at": datetime.fromtimestamp(ts, UTC).isoformat(),
            "author": {"name": "Wire desk", "handle": "@wire"},
        }
        body = json.dumps({"items": [item]}).encode()
        stamp = int(ts)
        headers = {
            "Content-Type": "application/json",
            "X-Fil-Timestamp": str(stamp),
            "X-Fil-Signature": sign(self.push_secret, stamp, body),
        }
        record: dict[str, Any] = {"path": "push", "n": n, "ts": ts}
        self._later("push", self._post(f"{self.fil}/api/ingest/{self.push_source}", body, headers), record)
        return record

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        assert self.session is not None
        async with self.session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status


async def schedule(upstreams: Upstreams, rate: float, per_path: int, paths: list[str]) -> list[dict[str, Any]]:
    """`per_path` events on each path, one at a time at `rate` per second, the paths taken in turn."""
    order = [(path, n) for n in range(per_path) for path in paths]
    start = time.perf_counter() + 0.05
    emitted = []
    for k, (path, n) in enumerate(order):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        emitted.append(upstreams.emit(path, n))
    # the last sends (hub deliveries, push requests) finish before the report
    await asyncio.gather(*upstreams.tasks, return_exceptions=True)
    return emitted


async def main(args: argparse.Namespace) -> None:
    send = open_reply_channel()
    upstreams = Upstreams(args.fil, args.push_source, args.push_secret)
    await upstreams.start()
    monitor = Monitor()
    lag = asyncio.create_task(monitor.run())
    try:
        send({"ready": True, **upstreams.addresses()})
        async for words in commands():
            if words[0] == "status":
                send(upstreams.status())
            elif words[0] == "run":
                paths = words[3].split(",")
                # the fakes share a core with the readers: no collection pauses while emitting
                gc.collect()
                gc.disable()
                monitor.reset()
                emitted = await schedule(upstreams, float(words[1]), int(words[2]), paths)
                gc.enable()
                send({"emitted": emitted, **monitor.snapshot(), **upstreams.status()})
            elif words[0] == "quit":
                break
    finally:
        lag.cancel()
        await upstreams.close()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fil", required=True, help="Fil's base URL (push requests go there)")
    parser.add_argument("--push-source", required=True)
    parser.add_argument("--push-secret", required=True)
    args = parser.parse_args()
    raise_nofile()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args))


if __name__ == "__main__":
    run()

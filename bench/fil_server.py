"""The Fil side of the fan-out benchmark: the real app and uvicorn config, publishing through the store.

Each change goes the production path: SQLite commit on the writer thread, store listener on the
loop, hub frames it once and writes it to every reader's transport. With `--store redis://...`
several of these share one Redis: the one told to `start` writes, the others' readers get its
changes through the cluster subscription (curation/cluster.py). Driven by bench/fanout.py over
stdin/stdout (bench/control.py); run alone with `python bench/fil_server.py --port 8765`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
import uvloop  # noqa: E402

from bench.control import TS_MARK, control_loop, open_reply_channel, raise_nofile  # noqa: E402
from curation.codec import change_message  # noqa: E402
from curation.config import Settings  # noqa: E402
from curation.models import Author, Entry, Event, ItemKind, Moderation, Role, Source, SourceKind, utcnow  # noqa: E402
from curation.server import tune_gc, uvicorn_config  # noqa: E402
from curation.timeline import change_for, item_id, new_item  # noqa: E402
from curation.web import create_app  # noqa: E402

SLUG = "bench"
SECRET_KEY = "fil-bench-" + "0123456789abcdef" * 4
LIVE_PATH = f"/api/events/{SLUG}/live"
SOURCES_YAML = "events: [{slug: bench, title: Bench, sources: []}]\n"
SOURCE = Source(id="bench-src", kind=SourceKind.PUSH, role=Role.EDITORIAL, label="Bench", moderation=Moderation.AUTO)
FILLER = (
    "The second half has started under heavy rain; both teams changed their line-up at the break and the "
    "referee checked the pitch before the restart. Supporters are still arriving at the north stand while "
    "the visiting side presses high from the first minute, looking for an early equaliser."
)
#: what curation.server.serve() sets; the benchmark serves the app itself, so it repeats it


def make_entry(i: int, ts: float) -> Entry:
    """A push entry of realistic size (~300-char text and html) carrying its publish time."""
    text = f"{TS_MARK}{ts:.6f}; update {i}. {FILLER}"[:300]
    html = f"<p>{text[:280]}</p>"
    return Entry(
        key=f"bench-{i}-{ts:.6f}",
        kind=ItemKind.UPDATE,
        url=None,
        title=f"Live update {i}",
        text=text,
        html=html,
        content_hash=hashlib.sha256(text.encode()).hexdigest()[:32],
        author=Author(name="Bench Desk", handle="@bench", url="https://example.org/desk"),
        published_at=utcnow(),
    )


def sample_payload_bytes() -> int:
    """The size of one of Fil's upsert messages for make_entry(), without a server: baselines pad to it."""
    now = utcnow()
    entry = make_entry(12, time.time())
    event = Event(slug=SLUG, title="Bench")
    item = new_item(entry, SOURCE, event, item_id_=item_id(SOURCE.id, entry.key), now=now)
    message = change_message(change_for(None, item, seq=12, now=now))
    assert message is not None
    return len(message.encode())


async def main(port: int, store: str | None) -> None:
    send = open_reply_channel()
    with tempfile.TemporaryDirectory(prefix="fil-bench-") as folder:
        sources = Path(folder) / "sources.yaml"
        sources.write_text(SOURCES_YAML)
        settings = Settings(
            sources=str(sources),
            store=store or f"sqlite:///{folder}/fil.db",
            port=port,
            log_level="warning",
            # processes sharing a store must sign sessions alike (Fil asks for it with Redis)
            secret_key=SECRET_KEY,
        )
        app = create_app(settings)
        server = uvicorn.Server(uvicorn_config(settings, app=app))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
                raise SystemExit("uvicorn stopped before it started")
            await asyncio.sleep(0.05)
        fil = app.state.fil
        event = fil.config.event(SLUG)
        if event is None:
            raise SystemExit(f"{sources}: event {SLUG!r} not loaded")
        commits: list[float] = []
        sizes: list[int] = []

        async def publish(i: int, ts: float) -> None:
            started = time.perf_counter()
            changes = await fil.store.ingest(event, SOURCE, [make_entry(i, ts)])
            commits.append(time.perf_counter() - started)
            if changes and changes[0].message is not None:
                sizes.append(len(changes[0].message.encode()))

        def extra() -> dict[str, Any]:
            return {
                "deliveries": fil.hub.deliveries,
                "dropped": fil.hub.dropped,
                "readers": fil.hub.readers(SLUG),
                "payload_bytes": max(sizes, default=0),
                "ingest_ms_p50": round(statistics.median(commits) * 1000, 2) if commits else None,
                "ingest_ms_max": round(max(commits) * 1000, 2) if commits else None,
            }

        send({"ready": True, "path": LIVE_PATH, "gc_threshold": list(gc.get_threshold())})
        try:
            await control_loop(send, publish, extra)
        finally:
            server.should_exit = True
            await serving


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gc", choices=("fil", "default"), default="fil", help="fil: the threshold serve() sets")
    parser.add_argument("--store", help="CURATION_STORE (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    raise_nofile()
    if args.gc == "fil":
        tune_gc()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args.port, args.store))


if __name__ == "__main__":
    run()

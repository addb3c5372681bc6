"""Desk benchmark: two editors on one event in a real Chromium, with few and with hundreds of items.

A real Fil (`python app.py serve`) serves one event fed by two push sources: `wire` (role other, so its
items wait in the queue) and `desk-feed` (editorial, published at once). The harness pushes N items into
each, then opens the event's desk for two editors (two browser contexts of Debian's Chromium) and times:
- load: from navigation to both columns filled (every item on the desk, websocket live);
- action: editor A clicks Approve on a queued card; the time until that card is in editor B's timeline,
  timed with each page's own clock (one machine, one clock) and a MutationObserver in B;
- search: one keystroke's filter over every card, in the page;
- bulk: "Reject all from this source" over the whole queue, until B's queue is empty.
Sizes run interleaved (50, 500, 50, 500, ...): the 50-item desk is the baseline the larger one is read against.

    .venv/bin/python bench/desk.py                  # sizes 50 and 500 per column, 20 actions, 3 runs each
    .venv/bin/python bench/desk.py --sizes 50 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout import free_port, percentile  # noqa: E402
from curation.collectors.push import sign  # noqa: E402

SLUG = "desk-bench"
PASSWORD = "bench-password-long"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def sources_yaml() -> str:
    return (
        f"events:\n  - slug: {SLUG}\n    title: Desk bench\n    sources:\n"
        "      - {id: wire, kind: push, secret_env: BENCH_SECRET, role: other}\n"
        "      - {id: desk-feed, kind: push, secret_env: BENCH_SECRET, role: editorial}\n"
    )


def push(base: str, secret: str, source: str, start: int, count: int) -> None:
    """Signed push batches of at most 100 items (the API's cap)."""
    for first in range(start, start + count, 100):
        ids = range(first, min(first + 100, start + count))
        items = [
            {
                "id": f"{source}-{i}",
                "url": f"https://{source}.example/{i}",
                "title": f"{source} story {i}",
                "text": f"Breakaway update number {i} from the road, with a few words to search through.",
                "published_at": "2027-07-12T12:00:00Z",
            }
            for i in ids
        ]
        body = json.dumps({"items": items}).encode()
        ts = int(time.time())
        request = urllib.request.Request(
            f"{base}/api/ingest/{source}",
            data=body,
            headers={"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(secret, ts, body)},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202


class FilProcess:
    def __init__(self, folder: Path, secret: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        (folder / "sources.yaml").write_text(sources_yaml())
        self.env = dict(
            os.environ,
            CURATION_SOURCES=str(folder / "sources.yaml"),
            CURATION_STORE=f"sqlite:///{folder}/fil.db",
            CURATION_PORT=str(self.port),
            CURATION_SECRET_KEY=secrets.token_hex(32),
            BENCH_SECRET=secret,
        )
        self.env.pop("CURATION_DEMO", None)
        app = [sys.executable, str(ROOT / "app.py")]
        for name in ("ana", "ben"):
            subprocess.run([*app, "create-editor", name], input=PASSWORD + "\n", env=self.env, check=True, text=True)
        self.log = folder / "fil.log"
        out = self.log.open("wb")
        self.proc = subprocess.Popen([*app], env=self.env, cwd=folder, stdout=out, stderr=out)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Fil did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


WATCH_TIMELINE = """() => {
  window.arrived = {};
  new MutationObserver(records => {
    for (const r of records)
      for (const n of r.addedNodes) if (n.dataset && n.dataset.id) window.arrived[n.dataset.id] = Date.now();
  }).observe(document.getElementById('timeline'), {childList: true});
}"""

CLICK_APPROVE = """(n) => {
  const card = document.querySelectorAll('#queue .card')[n];
  const button = card.querySelector('button[data-action="approve"]');
  const t = Date.now(); button.click(); return [card.dataset.id, t];
}"""

SEARCH = """(q) => {
  const box = document.getElementById('search'); const t = performance.now();
  box.value = q; box.dispatchEvent(new Event('input'));
  return performance.now() - t;
}"""


async def run_one(size: int, actions: int) -> dict[str, float]:
    from playwright.async_api import async_playwright

    secret = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="fil-desk-bench-") as tmp:
        fil = FilProcess(Path(tmp), secret)
        try:
            push(fil.base, secret, "wire", 0, size)
            push(fil.base, secret, "desk-feed", 0, size)
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                pages = []
                loads = []
                for name in ("ana", "ben"):
                    context = await browser.new_context()
                    page = await context.new_page()
                    await page.goto(f"{fil.base}/editor/login?next=/editor/")
                    await page.fill('input[name="name"]', name)
                    await page.fill('input[name="password"]', PASSWORD)
                    await page.click('button[type="submit"]')
                    await page.wait_for_url(f"{fil.base}/editor/")
                    started = time.perf_counter()
                    await page.goto(f"{fil.base}/editor/events/{SLUG}")
                    await page.wait_for_function(
                        "n => document.querySelectorAll('#queue .card').length === n"
                        " && document.querySelectorAll('#timeline .card').length === n",
                        arg=size,
                        timeout=60_000,
                    )
                    loads.append((time.perf_counter() - started) * 1000)
                    pages.append(page)
                ana, ben = pages
                await ben.evaluate(WATCH_TIMELINE)
                latencies = []
                for _ in range(actions):
                    item_id, clicked = await ana.evaluate(CLICK_APPROVE, 0)
                    await ben.wait_for_function("id => id in window.arrived", arg=item_id, timeout=30_000)
                    latencies.append(await ben.evaluate("id => window.arrived[id]", item_id) - clicked)
                    await ana.wait_for_function("id => !document.querySelector('#queue #desk-' + id)", arg=item_id)
                searches = [await ben.evaluate(SEARCH, q) for q in ("number 1", "road", "zzz", "")]
                left = size - actions
                started = time.perf_counter()
                await ana.evaluate(
                    "() => document.querySelector('#queue .card button[data-action=\"reject-source\"]').click()"
                )
                await ben.wait_for_function(
                    "() => document.querySelectorAll('#queue .card').length === 0", timeout=120_000
                )
                bulk = (time.perf_counter() - started) * 1000
                await browser.close()
        finally:
            fil.stop()
    ordered = sorted(latencies)
    return {
        "load_ms": statistics.median(loads),
        "action_p50_ms": percentile(ordered, 0.5),
        "action_max_ms": ordered[-1],
        "search_ms": statistics.median(searches),
        "bulk_ms": bulk,
        "bulk_items": float(left),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500], help="items per column")
    parser.add_argument("--actions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[dict[str, float]]] = {size: [] for size in args.sizes}
    for run in range(args.runs):
        for size in args.sizes:  # interleaved, so a noisy minute hits every size alike
            result = asyncio.run(run_one(size, args.actions))
            results[size].append(result)
            print(f"run {run + 1} size {size}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()), flush=True)
    keys = ["load_ms", "action_p50_ms", "action_max_ms", "search_ms", "bulk_ms", "bulk_items"]
    print(f"\nmedians of {args.runs} runs\n| items per column | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for size, runs in results.items():
        row: list[Any] = [statistics.median(r[k] for r in runs) for k in keys]
        print(f"| {size} | " + " | ".join(f"{v:.1f}" for v in row) + " |")


if __name__ == "__main__":
    main()

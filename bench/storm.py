"""Reconnect storm: 10,000 readers drop at once and come back with `since` while changes keep coming.

Variants, interleaved (one, two, one, two, ...), each with fresh processes:

- **one**: one Fil process on SQLite (bench/fil_server.py); the readers come back to it;
- **two**: two Fil processes on one Redis, the readers split evenly; each half comes back to the
  *other* process, so every resume crosses processes (a seq given by one, resumed on the other).

The first process publishes at `--rate` throughout. After `--before` seconds every reader process
(bench/storm_readers.py) aborts all its connections at once and reconnects each with
`?since=<its last seq>`. Per run: time from the drop until each reader holds everything its new hello
announced (p50/p99/max), gaps, duplicates, resets and items that differ between readers (all must be
0), every reader at the final seq at the end, and the store calls the storm cost (`/metrics`:
fil_store_duration_seconds_count by operation, from just before the drop to when all caught up).

    .venv/bin/python bench/storm.py --json /tmp/storm.json       # 10,000 readers, 2 runs of each
    .venv/bin/python bench/storm.py --quick
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.capacity import add_machine_args, raise_priority, wait_quiet, write_json  # noqa: E402
from bench.fanout import (  # noqa: E402
    Child,
    cpu_seconds,
    free_port,
    machine_cpu,
    percentile,
    source_digests,
    split,
    taskset,
    versions,
)
from bench.fleet import by_label, scrape, start_redis, total  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

VARIANTS = {"one": 1, "two": 2}
LABELS = {"one": "one Fil process, SQLite", "two": "two Fil processes on Redis, each half resuming on the other"}
STORE = "fil_store_duration_seconds_count"


@dataclass
class StormResult:
    variant: str
    run: int
    readers: int
    connected: int
    reconnected: int
    failed: int
    not_caught_up: int
    caught_p50_s: float
    caught_p99_s: float
    caught_max_s: float
    hello_p50_s: float
    hello_p99_s: float
    gaps: int
    dups: int
    resets: int
    mismatches: int
    lost: int
    final_seq: int
    at_final_seq: int
    storm_window_s: float
    changes_in_window: float
    store_calls: dict[str, float]
    changes_since_reads: float
    fil_cpu_s: float
    #: CPU used on the whole machine in the storm window (Fil, readers, Redis and anything else)
    machine_busy_s: float


def run_storm(variant: str, run: int, args: argparse.Namespace, logs: Path) -> StormResult:
    processes = VARIANTS[variant]
    redis: RedisServer | None = start_redis(args.redis_cpu) if processes > 1 else None
    servers: list[Child] = []
    clients: list[Child] = []
    try:
        ports = [free_port() for _ in range(processes)]
        for i, port in enumerate(ports):
            argv = [sys.executable, str(HERE / "fil_server.py"), "--port", str(port)]
            argv += ["--store", redis.url] if redis is not None else []
            servers.append(Child(f"fil{i}", taskset(args.fil_cpu, argv), logs / f"{variant}-{run}-fil{i}.log"))
        hellos = [server.read(60) for server in servers]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for j, count in enumerate(split(args.readers, args.clients)):
            home = j % processes
            argv = [sys.executable, str(HERE / "storm_readers.py"), "--port", str(ports[home])]
            argv += ["--reconnect-port", str(ports[(home + 1) % processes]), "--path", hellos[home]["path"]]
            argv += ["--count", str(count), "--storm-concurrency", str(args.storm_concurrency)]
            argv += ["--storm-timeout", str(args.storm_timeout), "--away", str(args.away), "--jitter", str(args.jitter)]
            clients.append(
                Child(f"storm-{j}", taskset(args.client_cpu, argv), logs / f"{variant}-{run}-readers{j}.log")
            )
        connected = 0
        for client in clients:
            ready = client.read(args.readers / 20 + 60)
            connected += int(ready["ready"])
            if ready["failed"]:
                print(f"  {ready['failed']} readers failed to connect: {ready['error']}", file=sys.stderr)
        time.sleep(args.settle)
        servers[0].send(f"start {args.rate} {args.publish}")
        time.sleep(args.before)
        before = [scrape(base) for base in bases]
        cpu0 = sum(cpu_seconds(s.pid) for s in servers)
        busy0 = machine_cpu()[0]
        started = time.monotonic()
        for client in clients:
            client.send("drop")
        storms = [client.read(args.storm_timeout + 120)["storm"] for client in clients]
        window = time.monotonic() - started
        after = [scrape(base) for base in bases]
        fil_cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu0
        busy = machine_cpu()[0] - busy0
        done = servers[0].read(args.publish + 120)
        time.sleep(args.grace)
        reports = []
        for client in clients:
            client.send("report")
            reports.append(client.read(60))
    finally:
        for child in clients:
            child.stop()
        for server in servers:
            server.stop()
        if redis is not None:
            redis.close()
    calls: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for op, value in by_label(a, STORE, "operation").items():
            delta = value - by_label(b, STORE, "operation").get(op, 0.0)
            if delta:
                calls[op] = calls.get(op, 0.0) + delta
    caught = sorted(x for s in storms for x in s["caught_up_s"])
    hellos_s = sorted(x for s in storms for x in s["hello_s"])
    final = int(done["done"])
    return StormResult(
        variant=variant,
        run=run,
        readers=args.readers,
        connected=connected,
        reconnected=sum(s["reconnected"] for s in storms),
        failed=sum(s["failed"] for s in storms),
        not_caught_up=sum(s["not_caught_up"] for s in storms),
        caught_p50_s=percentile(caught, 0.5) / 1000,
        caught_p99_s=percentile(caught, 0.99) / 1000,
        caught_max_s=caught[-1] / 1000 if caught else math.nan,
        hello_p50_s=percentile(hellos_s, 0.5) / 1000,
        hello_p99_s=percentile(hellos_s, 0.99) / 1000,
        gaps=sum(r["gaps"] for r in reports),
        dups=sum(r["dups"] for r in reports),
        resets=sum(r["resets"] for r in reports),
        mismatches=sum(r["mismatches"] for r in reports),
        lost=sum(r["lost"] for r in reports),
        final_seq=final,
        at_final_seq=sum(int(n) for r in reports for seq, n in r["last_seqs"].items() if int(seq) == final),
        storm_window_s=window,
        changes_in_window=total(after[0], "fil_changes_total") - total(before[0], "fil_changes_total"),
        store_calls=calls,
        changes_since_reads=calls.get("changes_since", 0.0),
        fil_cpu_s=fil_cpu,
        machine_busy_s=busy,
    )


def line(r: StormResult) -> str:
    return (
        f"{r.variant} run {r.run}: {r.reconnected}/{r.connected} back ({r.failed} failed, {r.not_caught_up} not "
        f"caught up); caught up p50 {r.caught_p50_s:.2f} p99 {r.caught_p99_s:.2f} max {r.caught_max_s:.2f} s "
        f"(hello p50 {r.hello_p50_s:.2f} p99 {r.hello_p99_s:.2f}); gaps {r.gaps} dups {r.dups} resets {r.resets} "
        f"mismatches {r.mismatches} lost {r.lost}; {r.at_final_seq}/{r.connected} at final seq {r.final_seq}; "
        f"store calls in {r.storm_window_s:.1f} s: {r.store_calls} ({r.changes_in_window:.0f} changes); "
        f"Fil CPU {r.fil_cpu_s:.1f} s, machine busy {r.machine_busy_s:.1f} s"
    )


def render(results: list[StormResult]) -> str:
    head = (
        "| variant | runs | readers back | caught up p50 / p99 / max s | hello p50 / p99 s | gaps | dups | resets "
        "| items differing | at final seq | store reads in the storm (changes_since; all calls) | changes in the storm "
        "| Fil CPU s |"
    )
    lines = [head, "|" + "---|" * 13]
    for variant in dict.fromkeys(r.variant for r in results):
        runs = [r for r in results if r.variant == variant]

        def med(key: str, runs: list[StormResult] = runs) -> float:
            return float(statistics.median(getattr(r, key) for r in runs))

        lines.append(
            f"| {LABELS[variant]} | {len(runs)} | "
            f"{sum(r.reconnected for r in runs):,}/{sum(r.connected for r in runs):,} | "
            f"{med('caught_p50_s'):.2f} / {med('caught_p99_s'):.2f} / {med('caught_max_s'):.2f} | "
            f"{med('hello_p50_s'):.2f} / {med('hello_p99_s'):.2f} | {sum(r.gaps for r in runs)} | "
            f"{sum(r.dups for r in runs)} | {sum(r.resets for r in runs)} | {sum(r.mismatches for r in runs)} | "
            f"{sum(r.at_final_seq for r in runs):,}/{sum(r.connected for r in runs):,} | "
            f"{med('changes_since_reads'):.0f}; {med_calls(runs)} | {med('changes_in_window'):.0f} | "
            f"{med('fil_cpu_s'):.1f} |"
        )
    return "\n".join(lines)


def med_calls(runs: list[StormResult]) -> str:
    ops = sorted({op for r in runs for op in r.store_calls})
    return ", ".join(f"{op} {statistics.median(r.store_calls.get(op, 0.0) for r in runs):.0f}" for op in ops) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=10000)
    parser.add_argument("--variants", default="one,two")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--before", type=float, default=5.0, help="seconds of live changes before the drop")
    parser.add_argument("--publish", type=float, default=25.0, help="seconds of publishing in all")
    parser.add_argument("--clients", type=int, default=2, help="reader processes (split over the Fil processes)")
    parser.add_argument("--storm-concurrency", type=int, default=1000, help="handshakes in flight per reader process")
    parser.add_argument("--storm-timeout", type=float, default=60.0)
    parser.add_argument("--away", type=float, default=0.0, help="seconds a reader waits before reconnecting")
    parser.add_argument("--jitter", type=float, default=0.0, help="plus up to this at random (live.js: 1 + 0.5)")
    parser.add_argument("--fil-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--redis-cpu", default="1")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--grace", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 readers, 1 run, 12 s")
    add_machine_args(parser)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.readers, args.runs, args.publish = 1000, 1, 12.0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"--variants: unknown {sorted(unknown)}")
    if "two" in variants and shutil.which("redis-server") is None:
        parser.error("redis-server not found: `make system-deps` installs Debian's")
    if args.clients < max(VARIANTS[v] for v in variants):
        parser.error("--clients: at least one reader process per Fil process")
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    raise_priority(args.priority)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="storm-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    info = versions(source_digests())
    print(f"storm: {vars(args)}; {info}; logs in {logs}", flush=True)
    results = []
    for run in range(args.runs):
        for variant in variants:
            wait_quiet(args.max_other, args.patience)
            results.append(run_storm(variant, run, args, logs))
            print(line(results[-1]), flush=True)
    print()
    print(render(results))
    write_json(args.json, args=vars(args), versions=info, runs=[asdict(r) for r in results])


if __name__ == "__main__":
    main()

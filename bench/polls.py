"""Polling load: 1,000 feed sources on loopback, mostly 304, 5% changed per minute; what Fil keeps up with.

bench/feed_farm.py serves the feeds (ETag, 304 when unchanged) on the load core; Fil (`python app.py
serve`, as in production) polls every one at `--interval` (CURATION_MIN_POLL_INTERVAL set to allow it)
on the other. Variants, one after the other, each with fresh processes:

- **sqlite**: one Fil process on SQLite;
- **redis2**: two Fil processes on one Redis (both on the Fil core, Redis on the load core); the source
  leases decide which process polls which source (reported: how they split).

After the first round (every source polled and imported once at start, reported apart), a window of
`--window` seconds: the farm changes `--changes` of the feeds per minute during its first part, then
holds so every change is collected before it ends. Per run: polls per second (Fil's
fil_source_polls_total and the farm's requests), the interval each source actually got, event-loop lag
(Fil's fil_event_loop_lag_distribution_seconds, sampled every 0.25 s: p99 as a bucket bound, max from
fil_event_loop_lag_max_seconds), Fil CPU (every process of its session: the parse worker too), store
calls, and each new item's delay from the change at the farm to a reader's websocket
(bench/ingest_readers.py, one reader per Fil process): polling's own delay, about half an interval.

    .venv/bin/python bench/polls.py --json /tmp/polls.json
    .venv/bin/python bench/polls.py --quick                 # 100 feeds at 10 s, 30 s window
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.capacity import add_machine_args, raise_priority, wait_quiet, write_json  # noqa: E402
from bench.fanout import Child, cpu_seconds, free_port, machine_cpu, percentile, source_digests, taskset, versions  # noqa: E402
from bench.fil_server import SECRET_KEY  # noqa: E402
from bench.fleet import by_label, histogram_quantile, redis_pid, scrape, start_redis, total  # noqa: E402
from bench.ingest import FilProcess, fil_env, get_json, session_cpu  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

VARIANTS = {"sqlite": 1, "redis2": 2}
LABELS = {"sqlite": "one Fil process, SQLite", "redis2": "two Fil processes on Redis"}
SLUG = "polls"
LAG = "fil_event_loop_lag_distribution_seconds"
STORE = "fil_store_duration_seconds"


def sources_yaml(url: str, count: int, interval: float) -> str:
    lines = ["events:", f"  - slug: {SLUG}", "    title: Polling benchmark", "    sources:"]
    for n in range(count):
        lines += [
            f"      - id: desk{n:04d}",
            "        kind: feed",
            "        role: editorial",
            f"        url: {url.format(n=n)}",
            f"        interval: {interval:g}s",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class PollResult:
    variant: str
    sources: int
    interval_s: float
    first_round_s: float
    first_round_lag_max_ms: float
    window_s: float
    polls: float
    polls_per_s: float
    #: sources / the median interval each source got: the rate Fil sustains, whatever the window's phase
    sustained_per_s: float
    expected_per_s: float
    farm_requests: int
    farm_not_modified_share: float
    peak_polls_per_s: int
    source_interval_p50_s: float
    source_interval_max_s: float
    lag_p99_ms: float
    lag_max_ms: float
    fil_cpu_s: float
    fil_cpu_share: float
    changes: int
    changes_seen: int
    delay_p50_s: float
    delay_p99_s: float
    delay_max_s: float
    #: sources each process polls (its leases)
    split: list[int]
    store_calls_per_s: dict[str, float]
    store_p99_ms: dict[str, float]
    other_cpu_s: float
    errors: float
    extra: dict[str, Any] = field(default_factory=dict)


def wait_first_round(farm: Child, fils: list[FilProcess], base: str, count: int, timeout: float) -> float:
    """Seconds from now until every feed was polled once and what they held is stored (the event's seq
    stops moving), so the measuring window starts on the steady state."""
    started = time.monotonic()
    polled = False
    last, still = -1, 0
    while time.monotonic() - started < timeout:
        for fil in fils:
            fil.check()
        if not polled:
            farm.send("status")
            polled = farm.read(30)["feeds_requested"] >= count
        else:
            seq = int(get_json(f"{base}/api/events/{SLUG}/items?limit=1")["seq"])
            still = still + 1 if seq == last and seq > 0 else 0
            last = seq
            if still >= 3:
                return time.monotonic() - started - still
        time.sleep(1.0)
    raise TimeoutError(f"the first round of {count} feeds was not polled and stored within {timeout:.0f} s")


def run_polls(variant: str, args: argparse.Namespace, logs: Path) -> PollResult:
    processes = VARIANTS[variant]
    folder = Path(tempfile.mkdtemp(prefix="fil-polls-"))
    farm = Child(
        "farm",
        taskset(args.client_cpu, [sys.executable, str(HERE / "feed_farm.py"), "--count", str(args.sources)]),
        logs / f"{variant}-farm.log",
    )
    redis: RedisServer | None = None
    fils: list[FilProcess] = []
    readers: list[Child] = []
    try:
        url = farm.read(30)["url"]
        (folder / "sources.yaml").write_text(sources_yaml(url, args.sources, args.interval))
        if processes > 1:
            redis = start_redis(args.redis_cpu)
        ports = [free_port() for _ in range(processes)]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for i, port in enumerate(ports):
            env = fil_env(folder, port, "unused", "unused")
            env["CURATION_MIN_POLL_INTERVAL"] = f"{args.interval:g}s"
            if redis is not None:
                env["CURATION_STORE"] = redis.url
                env["CURATION_SECRET_KEY"] = SECRET_KEY
            fils.append(
                FilProcess(
                    taskset(args.fil_cpu, [sys.executable, str(ROOT / "app.py"), "serve"]),
                    env,
                    logs / f"{variant}-fil{i}.log",
                )
            )
        first_round = wait_first_round(farm, fils, f"http://127.0.0.1:{ports[0]}", args.sources, args.first_timeout)
        burst = [scrape(base) for base in bases]
        for i, port in enumerate(ports):
            argv = [sys.executable, str(HERE / "ingest_readers.py"), "--port", str(port)]
            argv += ["--path", f"/api/events/{SLUG}/live", "--count", "1"]
            readers.append(Child(f"reader{i}", taskset(args.client_cpu, argv), logs / f"{variant}-reader{i}.log"))
        for reader in readers:
            reader.read(60)
        before = [scrape(base) for base in bases]
        cpu0 = sum(session_cpu(f.pid) for f in fils)
        busy0 = machine_cpu()[0]
        farm_cpu0 = session_cpu(farm.pid) + sum(session_cpu(r.pid) for r in readers)
        redis_cpu0 = cpu_seconds(redis_pid(redis)) if redis is not None else 0.0
        farm.send("status")
        counts0 = farm.read(30)
        since = time.time()
        started = time.monotonic()
        farm.send(f"change {args.changes * args.sources / 100:g}")
        lag_max = 0.0
        held = False
        while (elapsed := time.monotonic() - started) < args.window:
            if not held and elapsed >= args.window - args.interval * 1.1 - 5:
                farm.send("hold")
                farm.read(30)
                held = True
            time.sleep(min(5.0, args.window - elapsed))
            for base in bases:
                lag_max = max(lag_max, total(scrape(base), "fil_event_loop_lag_max_seconds"))
            for fil in fils:
                fil.check()
        window = time.monotonic() - started
        after = [scrape(base) for base in bases]
        fil_cpu = sum(session_cpu(f.pid) for f in fils) - cpu0
        busy = machine_cpu()[0] - busy0
        bench_cpu = session_cpu(farm.pid) + sum(session_cpu(r.pid) for r in readers) - farm_cpu0
        redis_cpu = (cpu_seconds(redis_pid(redis)) if redis is not None else 0.0) - redis_cpu0
        farm.send(f"status {since}")
        status = farm.read(60)
        received: dict[str, list[float]] = {}
        for reader in readers:
            reader.send("report")
            for key, values in reader.read(60)["latencies_ms"].items():
                received.setdefault(key, []).extend(values)
    finally:
        for child in readers:
            child.stop()
        for fil in fils:
            fil.stop()
        farm.stop()
        if redis is not None:
            redis.close()
        shutil.rmtree(folder, ignore_errors=True)
    polls = sum(
        total(a, "fil_source_polls_total") - total(b, "fil_source_polls_total")
        for a, b in zip(after, before, strict=True)
    )
    errors = sum(
        total(a, "fil_source_errors_total") - total(b, "fil_source_errors_total")
        for a, b in zip(after, before, strict=True)
    )
    lag_p99 = max(histogram_quantile(b, a, LAG, 0.99) for a, b in zip(after, before, strict=True))
    store_calls: dict[str, float] = {}
    store_p99: dict[str, float] = {}
    for a, b in zip(after, before, strict=True):
        for op, value in by_label(a, f"{STORE}_count", "operation").items():
            delta = value - by_label(b, f"{STORE}_count", "operation").get(op, 0.0)
            if delta:
                store_calls[op] = store_calls.get(op, 0.0) + delta / window
                q = histogram_quantile_labeled(b, a, STORE, "operation", op, 0.99)
                store_p99[op] = max(store_p99.get(op, 0.0), q * 1000)
    # per change at the farm: when the first reader (any process) had it
    delays = sorted(min(v) / 1000 for v in received.values())
    changes = int(status["changes"])
    gaps = sorted(status["gaps_s"])
    seconds = sorted(v for k, v in status["per_second"].items() if float(k) >= since)
    in_window = sum(seconds)
    split = [int(total(a, "fil_source_running")) for a in after]
    return PollResult(
        variant=variant,
        sources=args.sources,
        interval_s=args.interval,
        first_round_s=first_round,
        first_round_lag_max_ms=max(total(s, "fil_event_loop_lag_max_seconds") for s in burst) * 1000,
        window_s=window,
        polls=polls,
        polls_per_s=polls / window,
        sustained_per_s=args.sources / percentile(gaps, 0.5) if gaps else math.nan,
        # next_delay() adds up to 10% at random to each interval
        expected_per_s=args.sources / (args.interval * 1.05),
        farm_requests=in_window,
        farm_not_modified_share=(status["not_modified"] - counts0["not_modified"])
        / max(1, status["requests"] - counts0["requests"]),
        peak_polls_per_s=seconds[-1] if seconds else 0,
        source_interval_p50_s=percentile(gaps, 0.5),
        source_interval_max_s=gaps[-1] if gaps else math.nan,
        lag_p99_ms=lag_p99 * 1000,
        lag_max_ms=lag_max * 1000,
        fil_cpu_s=fil_cpu,
        fil_cpu_share=fil_cpu / window,
        changes=changes,
        changes_seen=len(delays),
        delay_p50_s=percentile(delays, 0.5),
        delay_p99_s=percentile(delays, 0.99),
        delay_max_s=delays[-1] if delays else math.nan,
        split=split,
        store_calls_per_s=store_calls,
        store_p99_ms=store_p99,
        other_cpu_s=max(0.0, busy - fil_cpu - bench_cpu - redis_cpu),
        errors=errors,
        extra={"redis_cpu_s": redis_cpu, "bench_cpu_s": bench_cpu, "farm_lag_max_ms": status["lag_max_ms"]},
    )


def histogram_quantile_labeled(before: Any, after: Any, name: str, label: str, value: str, q: float) -> float:
    """histogram_quantile() of one labelled series."""

    def only(samples: Any) -> Any:
        return {k: v for k, v in samples.items() if (label, value) in k[1]}

    return histogram_quantile(only(before), only(after), name, q)


def line(r: PollResult) -> str:
    return (
        f"{r.variant}: {r.sources} sources at {r.interval_s:g} s; first round {r.first_round_s:.1f} s (lag max "
        f"{r.first_round_lag_max_ms:.0f} ms); {r.polls:.0f} polls in {r.window_s:.0f} s = {r.polls_per_s:.1f}/s "
        f"(expected {r.expected_per_s:.1f}, peak {r.peak_polls_per_s}/s, {r.farm_not_modified_share:.0%} 304, "
        f"errors {r.errors:.0f}); source interval p50 {r.source_interval_p50_s:.1f} "
        f"max {r.source_interval_max_s:.1f} s; "
        f"lag p99 <= {r.lag_p99_ms:.1f} ms, max {r.lag_max_ms:.1f} ms; Fil CPU {r.fil_cpu_share:.1%}; "
        f"changes {r.changes_seen}/{r.changes}, delay p50 {r.delay_p50_s:.1f} p99 {r.delay_p99_s:.1f} max "
        f"{r.delay_max_s:.1f} s; split {r.split}; store/s {r.store_calls_per_s}; store p99 ms {r.store_p99_ms}; "
        f"other CPU {r.other_cpu_s:.1f} s; {r.extra}"
    )


def render(results: list[PollResult]) -> str:
    head = (
        "| variant | sources × interval | polls/s sustained (expected; counted in the window) | peak polls/s "
        "| 304 share | interval each source got "
        "p50 / max s | loop lag p99 / max ms | Fil CPU % of a core | new items delay p50 / p99 / max s | changes seen "
        "| sources per process | first round s (lag max ms) |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in results:
        lines.append(
            f"| {LABELS[r.variant]} | {r.sources:,} × {r.interval_s:g} s | "
            f"{r.sustained_per_s:.1f} ({r.expected_per_s:.1f}; {r.polls_per_s:.1f}) | "
            f"{r.peak_polls_per_s} | {r.farm_not_modified_share:.0%} | {r.source_interval_p50_s:.1f} / "
            f"{r.source_interval_max_s:.1f} | ≤ {r.lag_p99_ms:.0f} / {r.lag_max_ms:.0f} | {r.fil_cpu_share:.1%} | "
            f"{r.delay_p50_s:.1f} / {r.delay_p99_s:.1f} / {r.delay_max_s:.1f} | {r.changes_seen}/{r.changes} | "
            f"{' + '.join(map(str, r.split))} | {r.first_round_s:.1f} ({r.first_round_lag_max_ms:.0f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between polls of each source")
    parser.add_argument("--changes", type=float, default=5.0, help="percent of the feeds changed per minute")
    parser.add_argument("--window", type=float, default=130.0, help="seconds measured after the first round")
    parser.add_argument("--variants", default="sqlite,redis2")
    parser.add_argument("--fil-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--redis-cpu", default="1")
    parser.add_argument("--first-timeout", type=float, default=180.0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 feeds at 10 s, 30 s window")
    add_machine_args(parser)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.sources, args.interval, args.window = 100, 10.0, 30.0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"--variants: unknown {sorted(unknown)}")
    if args.window < args.interval * 1.1 + 10:
        parser.error("--window: at least 1.1 intervals + 10 s, so every change is polled before it ends")
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    raise_priority(args.priority)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="polls-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    info = versions(source_digests())
    print(f"polls: {vars(args)}; {info}; logs in {logs}", flush=True)
    results = []
    for variant in variants:
        wait_quiet(args.max_other, args.patience)
        results.append(run_polls(variant, args, logs))
        print(line(results[-1]), flush=True)
    print()
    print(render(results))
    write_json(args.json, args=vars(args), versions=info, runs=[asdict(r) for r in results])


if __name__ == "__main__":
    main()

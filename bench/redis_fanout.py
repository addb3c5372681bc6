"""Fan-out across processes on Redis: readers split over two Fil processes, changes written through one.

Variants, interleaved in each run (one, two, one, two, ...; each a fresh redis-server and fresh Fil
processes, bench/fil_server.py with `--store redis://...`):

- **one**: one Fil process on Redis holds every reader (the same-run baseline);
- **two**: two Fil processes on the same Redis, the readers split evenly; the first process writes
  (the store's ingest: a Redis transaction, then its own hub), the second hears the commit on its
  cluster subscription and reads the change from the log (curation/cluster.py).

Per run: latency p50/p99/max per process's readers (what the cross-process path adds is the second
process's p99 minus the writer's, same run), every change delivered in order (bench/loadgen.py's seq
check), Fil CPU per 1,000 deliveries, Redis CPU (`/proc/<pid>/stat`) as a share of a core and of the
server side, and Redis commands per change (INFO commandstats, before and after the publish phase).
Runs at two reader counts show whether the commands per change move with the readers (they must not).

`--steps` runs the capacity step search of bench/capacity.py on the variants instead.

Cores: both Fil processes on CPU 0, Redis and the load generators on CPU 1 (`--fil-cpus 0,1` puts the
second process on CPU 1 with the load instead).

    .venv/bin/python bench/redis_fanout.py --json /tmp/redis-fanout.json       # 4k and 10k readers, 2 runs
    .venv/bin/python bench/redis_fanout.py --steps 10000,15000,19600,25000,30000
    .venv/bin/python bench/redis_fanout.py --quick
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.capacity import (  # noqa: E402
    PER_CLIENT,
    TARGET_P99_MS,
    add_machine_args,
    max_readers,
    parse_steps,
    raise_priority,
    step_search,
    undisturbed,
    write_json,
)
from bench.fanout import (  # noqa: E402
    DRAIN,
    Child,
    cpu_seconds,
    free_port,
    machine_cpu,
    percentile,
    rss_bytes,
    source_digests,
    split,
    taskset,
    versions,
)
from bench.fleet import calls_between, command_calls, redis_pid, start_redis  # noqa: E402

VARIANTS = {"one": 1, "two": 2}
LABELS = {"one": "one Fil process on Redis", "two": "two Fil processes on Redis"}


@dataclass
class Group:
    """The readers of one Fil process."""

    process: int
    writer: bool
    readers: int
    connected: int
    received: int
    expected: int
    readers_complete: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    gaps: int
    dups: int
    deliveries: int
    cpu_s: float
    mem_per_reader_kb: float
    lag_max_ms: float
    gc_max_ms: float


@dataclass
class ClusterResult:
    variant: str
    run: int
    readers: int
    published: int
    window_s: float
    groups: list[Group]
    connected: int
    received: int
    expected: int
    received_share: float
    lost: int
    gaps: int
    dups: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    fil_cpu_s: float
    cpu_ms_per_1000: float
    redis_cpu_s: float
    #: Redis CPU over the window as a share of one core, and of Redis + every Fil process
    redis_core_share: float
    redis_server_share: float
    commands: dict[str, int]
    commands_per_change: float
    client_cpu_s: float
    other_cpu_s: float
    #: the second process's readers' p99 minus the writer's (two processes only)
    added_p99_ms: float = math.nan
    added_p50_ms: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)


def run_variant(variant: str, readers: int, run: int, args: argparse.Namespace, logs: Path) -> ClusterResult:
    processes = VARIANTS[variant]
    cpus = [c.strip() for c in args.fil_cpus.split(",")] or [""]
    redis = start_redis(args.redis_cpu)
    servers: list[Child] = []
    clients: list[tuple[int, Child]] = []
    try:
        ports = [free_port() for _ in range(processes)]
        for i, port in enumerate(ports):
            argv = [sys.executable, str(HERE / "fil_server.py"), "--port", str(port), "--store", redis.url]
            servers.append(Child(f"fil{i}", taskset(cpus[i % len(cpus)], argv), logs / f"{variant}-{run}-fil{i}.log"))
        hellos = [server.read(60) for server in servers]
        time.sleep(0.5)
        rss_before = [rss_bytes(s.pid) for s in servers]
        shares = split(readers, processes)
        for i, share in enumerate(shares):
            for j, count in enumerate(split(share, max(1, math.ceil(share / PER_CLIENT)))):
                argv = [sys.executable, str(HERE / "loadgen.py"), "--port", str(ports[i])]
                argv += ["--path", hellos[i]["path"], "--count", str(count)]
                log = logs / f"{variant}-{run}-fil{i}-client{j}.log"
                clients.append((i, Child(f"loadgen-{i}-{j}", taskset(args.client_cpu, argv), log)))
        connected = [0] * processes
        for i, client in clients:
            ready = client.read(readers / 20 + 60)
            connected[i] += int(ready["ready"])
            if ready["failed"]:
                print(f"  {variant} fil{i}: {ready['failed']} readers failed: {ready['error']}", file=sys.stderr)
        time.sleep(args.settle)
        rss_after = [rss_bytes(s.pid) for s in servers]
        before = stats(servers)
        pids = [s.pid for s in servers]
        fil_cpu0 = [cpu_seconds(p) for p in pids]
        redis_cpu0 = cpu_seconds(redis_pid(redis))
        client_cpu0 = sum(cpu_seconds(c.pid) for _, c in clients)
        busy0 = machine_cpu()[0] - sum(os.times()[:2])
        calls0 = command_calls(redis.port)
        started = time.monotonic()
        for server in servers[1:]:
            server.send("watch")
        servers[0].send(f"start {args.rate} {args.duration}")
        done = servers[0].read(args.duration + 120)
        time.sleep(DRAIN)
        window = time.monotonic() - started
        fil_cpu = [cpu_seconds(p) - c for p, c in zip(pids, fil_cpu0, strict=True)]
        redis_cpu = cpu_seconds(redis_pid(redis)) - redis_cpu0
        client_cpu = sum(cpu_seconds(c.pid) for _, c in clients) - client_cpu0
        busy = machine_cpu()[0] - sum(os.times()[:2]) - busy0
        calls = calls_between(calls0, command_calls(redis.port))
        after = stats(servers)
        time.sleep(args.grace)
        reports: list[list[dict[str, Any]]] = [[] for _ in range(processes)]
        for i, client in clients:
            client.send("report")
            reports[i].append(client.read(120))
    finally:
        for _, child in clients:
            child.stop()
        for server in servers:
            server.stop()
        redis.close()
    published = int(done["done"])
    groups = []
    everything: list[float] = []
    for i in range(processes):
        latencies = sorted(x for rep in reports[i] for x in rep["latencies_ms"])
        everything.extend(latencies)
        complete = sum(int(n) for rep in reports[i] for c, n in rep["per_reader"].items() if int(c) == published)
        groups.append(
            Group(
                process=i,
                writer=i == 0,
                readers=shares[i],
                connected=connected[i],
                received=len(latencies),
                expected=shares[i] * published,
                readers_complete=complete,
                p50_ms=percentile(latencies, 0.5),
                p99_ms=percentile(latencies, 0.99),
                max_ms=latencies[-1] if latencies else math.nan,
                lost=sum(rep["lost"] for rep in reports[i]),
                gaps=sum(rep["gaps"] for rep in reports[i]),
                dups=sum(rep["dups"] for rep in reports[i]),
                deliveries=int(after[i]["deliveries"]) - int(before[i]["deliveries"]),
                cpu_s=fil_cpu[i],
                mem_per_reader_kb=(rss_after[i] - rss_before[i]) / max(1, connected[i]) / 1024,
                lag_max_ms=float(after[i]["lag_max_ms"]),
                gc_max_ms=float(after[i]["gc_max_ms"]),
            )
        )
    everything.sort()
    received = len(everything)
    expected = readers * published
    total_fil = sum(fil_cpu)
    result = ClusterResult(
        variant=variant,
        run=run,
        readers=readers,
        published=published,
        window_s=window,
        groups=groups,
        connected=sum(connected),
        received=received,
        expected=expected,
        received_share=received / expected if expected else 0.0,
        lost=sum(g.lost for g in groups),
        gaps=sum(g.gaps for g in groups),
        dups=sum(g.dups for g in groups),
        p50_ms=percentile(everything, 0.5),
        p99_ms=percentile(everything, 0.99),
        max_ms=everything[-1] if everything else math.nan,
        fil_cpu_s=total_fil,
        cpu_ms_per_1000=total_fil * 1e6 / received if received else math.nan,
        redis_cpu_s=redis_cpu,
        redis_core_share=redis_cpu / window,
        redis_server_share=redis_cpu / (redis_cpu + total_fil) if redis_cpu + total_fil else math.nan,
        commands=calls,
        commands_per_change=sum(calls.values()) / published if published else math.nan,
        client_cpu_s=client_cpu,
        other_cpu_s=max(0.0, busy - total_fil - redis_cpu - client_cpu),
    )
    if processes > 1:
        result.added_p99_ms = groups[1].p99_ms - groups[0].p99_ms
        result.added_p50_ms = groups[1].p50_ms - groups[0].p50_ms
    return result


def stats(servers: list[Child]) -> list[dict[str, Any]]:
    out = []
    for server in servers:
        server.send("stats")
        out.append(server.read(30))
    return out


def misses(result: ClusterResult) -> list[str]:
    """Why a run missed the service level (bench/capacity.py's, over every process's readers)."""
    why = []
    if result.connected < result.readers:
        why.append(f"{result.readers - result.connected} readers not connected")
    if result.lost:
        why.append(f"{result.lost} readers dropped")
    if result.received < result.expected:
        why.append(f"{result.expected - result.received} deliveries missing")
    if result.gaps or result.dups:
        why.append(f"{result.gaps} gaps, {result.dups} duplicates")
    if not result.p99_ms <= TARGET_P99_MS:
        why.append(f"p99 {result.p99_ms:.0f} ms > {TARGET_P99_MS:.0f}")
    return why


def line(r: ClusterResult) -> str:
    groups = "; ".join(
        f"fil{g.process}{' (writer)' if g.writer else ''}: {g.readers} readers p50 {g.p50_ms:.1f} p99 {g.p99_ms:.1f} "
        f"max {g.max_ms:.1f} ms, {g.received}/{g.expected}, CPU {g.cpu_s:.2f} s, {g.mem_per_reader_kb:.1f} KB/reader, "
        f"pause {g.lag_max_ms:.1f} ms"
        for g in r.groups
    )
    top = ", ".join(f"{k} {v / r.published:.2f}" for k, v in sorted(r.commands.items(), key=lambda kv: -kv[1])[:6])
    return (
        f"{r.variant} {r.readers} run {r.run}: {'held' if not misses(r) else 'MISSED: ' + '; '.join(misses(r))}; "
        f"p50 {r.p50_ms:.1f} p99 {r.p99_ms:.1f} ms; gaps {r.gaps} dups {r.dups} lost {r.lost}; "
        f"CPU {r.cpu_ms_per_1000:.1f} ms/1k; Redis {r.redis_cpu_s:.2f} s ({r.redis_core_share:.1%} of a core, "
        f"{r.redis_server_share:.1%} of server side); {r.commands_per_change:.2f} commands/change ({top}); "
        f"loadgen {r.client_cpu_s:.1f} s, other {r.other_cpu_s:.1f} s over {r.window_s:.1f} s\n    {groups}"
    )


def medians(results: list[ClusterResult]) -> list[dict[str, Any]]:
    rows = []
    for key in dict.fromkeys((r.variant, r.readers) for r in results):
        runs = [r for r in results if (r.variant, r.readers) == key]

        def med(get: Any, runs: list[ClusterResult] = runs) -> float:
            return float(statistics.median(get(r) for r in runs))

        rows.append(
            {
                "variant": key[0],
                "readers": key[1],
                "runs": len(runs),
                "delivered": f"{sum(r.received for r in runs):,}/{sum(r.expected for r in runs):,}",
                "gaps_dups": sum(r.gaps + r.dups for r in runs),
                "writer_p50_ms": med(lambda r: r.groups[0].p50_ms),
                "writer_p99_ms": med(lambda r: r.groups[0].p99_ms),
                "other_p50_ms": med(lambda r: r.groups[1].p50_ms) if len(runs[0].groups) > 1 else math.nan,
                "other_p99_ms": med(lambda r: r.groups[1].p99_ms) if len(runs[0].groups) > 1 else math.nan,
                "added_p99_ms": med(lambda r: r.added_p99_ms),
                "p99_ms": med(lambda r: r.p99_ms),
                "cpu_ms_per_1000": med(lambda r: r.cpu_ms_per_1000),
                "mem_per_reader_kb": med(lambda r: statistics.mean(g.mem_per_reader_kb for g in r.groups)),
                "lag_max_ms": med(lambda r: max(g.lag_max_ms for g in r.groups)),
                "redis_core_share": med(lambda r: r.redis_core_share),
                "redis_server_share": med(lambda r: r.redis_server_share),
                "commands_per_change": med(lambda r: r.commands_per_change),
                "other_cpu_share": med(lambda r: r.other_cpu_s / r.window_s),
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    head = (
        "| variant | readers | runs | delivered | gaps+dups | writer's readers p50 / p99 ms | other process's "
        "readers p50 / p99 ms | p99 added | CPU ms/1k deliv | KB/reader | longest pause ms | Redis % of a core "
        "| Redis share of server CPU | Redis commands per change | other load % |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        other = f"{r['other_p50_ms']:.1f} / {r['other_p99_ms']:.1f}" if not math.isnan(r["other_p99_ms"]) else "-"
        added = f"{r['added_p99_ms']:+.1f}" if not math.isnan(r["added_p99_ms"]) else "-"
        lines.append(
            f"| {LABELS[r['variant']]} | {r['readers']:,} | {r['runs']} | {r['delivered']} | {r['gaps_dups']} | "
            f"{r['writer_p50_ms']:.1f} / {r['writer_p99_ms']:.1f} | {other} | {added} | {r['cpu_ms_per_1000']:.1f} | "
            f"{r['mem_per_reader_kb']:.1f} | {r['lag_max_ms']:.1f} | {r['redis_core_share']:.1%} | "
            f"{r['redis_server_share']:.1%} | {r['commands_per_change']:.2f} | {r['other_cpu_share']:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", default="4000,10000", help="reader counts (all processes together)")
    parser.add_argument("--variants", default="one,two", help="subset of one,two, in run order")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", help="capacity step search over these reader counts instead")
    parser.add_argument("--confirm", type=int, default=2, help="with --steps: extra runs of a doubtful step")
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--fil-cpus", default="0", help="taskset CPU per Fil process, round-robin ('' = none)")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--redis-cpu", default="1")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--grace", type=float, default=2.0)
    add_machine_args(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 400 and 1,000 readers, 5 s, 1 run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.readers, args.duration, args.runs = "400,1000", 5.0, 1
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"--variants: unknown {sorted(unknown)}")
    if shutil.which("redis-server") is None:
        parser.error("redis-server not found: `make system-deps` installs Debian's")
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    raise_priority(args.priority)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="redis-fanout-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    info = versions(source_digests())
    print(f"redis fan-out: {vars(args)}; {info}; logs in {logs}", flush=True)

    def run(name: str, readers: int, attempt: int) -> ClusterResult:
        def once() -> ClusterResult:
            result = run_variant(name, readers, attempt, args, logs)
            print(line(result), flush=True)
            return result

        return undisturbed(once, lambda r: r.other_cpu_s / r.window_s, args)

    if args.steps:
        cap = max_readers()
        steps = parse_steps(args.steps, cap * max(VARIANTS[v] for v in variants))
        history = step_search(
            variants, steps, run, misses, runs=1, confirm=args.confirm, limit=lambda name: cap * VARIANTS[name]
        )
        print()
        for name, stepped in history.items():
            held = max((step for step, _, ok in stepped if ok), default=0)
            tried = ", ".join(
                f"{s:,} {'held' if ok else 'missed' if rs else 'over the open-files limit'}" for s, rs, ok in stepped
            )
            print(f"{LABELS[name]}: held {held:,} readers ({tried})")
        write_json(
            args.json,
            args=vars(args),
            versions=info,
            steps={n: [(s, [asdict(r) for r in rs], ok) for s, rs, ok in h] for n, h in history.items()},
        )
        return
    counts = [int(c) for c in args.readers.split(",") if c.strip()]
    results = [run(v, n, attempt) for n in counts for attempt in range(args.runs) for v in variants]
    rows = medians(results)
    print()
    print(render(rows))
    write_json(args.json, args=vars(args), versions=info, runs=[asdict(r) for r in results], medians=rows)


if __name__ == "__main__":
    main()

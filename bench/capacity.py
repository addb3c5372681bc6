"""Capacity step search: the most readers each server holds at the service level, at 2 changes/s.

The service level: every reader connected and kept, every change delivered to every reader in order
(no gap, no duplicate), p99 publish-to-receive latency <= 200 ms. Readers go up in steps (2k, 5k,
10k, 15k, then the open-files limit); at each step the servers still in the race run in turn (fil,
b0, b2: interleaved, so noise hits all alike) with bench/fanout.py's runner, and a server leaves the
race at its first step missed. A step whose first run misses gets two more runs and is decided by the
majority (the median run), so one noisy run does not end a search. Server on one core, load
generators on the other, as in bench/fanout.py.

    .venv/bin/python bench/capacity.py --json /tmp/capacity.json
    .venv/bin/python bench/capacity.py --quick          # 500 and 1,000 readers, 5 s: a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout import DRAIN, LABELS, SERVERS, RunResult, machine_cpu, run_one, source_digests, versions  # noqa: E402
from bench.fil_server import sample_payload_bytes  # noqa: E402

TARGET_P99_MS = 200.0
STEPS = (2000, 5000, 10000, 15000, 20000)
#: descriptors a server needs besides its readers' sockets (listening socket, store, pipes, logs)
SPARE_FDS = 400
#: readers one load-generator process takes at most (it needs a descriptor per reader too)
PER_CLIENT = 9000
#: a run during which other work on the machine used more than this share of a core is run again
MAX_OTHER = 0.25

R = TypeVar("R")


#: the bench's priority on a shared machine (nice value; children inherit it): others' work yields to it
PRIORITY = -10


def raise_priority(nice: int) -> None:
    """Run this process and every process it starts at `nice`, so other work on the machine yields."""
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as e:
            print(f"  (could not set the priority to {nice}: {e}; measuring at the usual one)", flush=True)


def add_machine_args(parser: argparse.ArgumentParser) -> None:
    """What every harness accepts about sharing the machine."""
    parser.add_argument("--priority", type=int, default=PRIORITY, help="nice value of the bench (0: unchanged)")
    parser.add_argument("--max-other", type=float, default=MAX_OTHER, help="share of a core others may take")
    parser.add_argument("--busy-retries", type=int, default=1, help="runs again of a run others disturbed")
    parser.add_argument("--patience", type=float, default=60.0, help="seconds to wait for a quiet machine")


def wait_quiet(limit: float = MAX_OTHER, patience: float = 60.0, sample: float = 3.0) -> float:
    """Wait (at most `patience` s) until the machine is nearly idle between runs; returns the busy share seen.

    Called when none of the bench's processes run, so whatever keeps the cores busy is someone else's.
    """
    deadline = time.monotonic() + patience
    told = False
    while True:
        before = machine_cpu()[0]
        time.sleep(sample)
        busy = (machine_cpu()[0] - before) / sample
        if busy <= limit:
            return busy
        if time.monotonic() > deadline:
            print(f"  (the machine stayed busy, {busy:.0%} of a core: running anyway)", flush=True)
            return busy
        if not told:
            print(f"  (others use {busy:.0%} of a core: waiting for the machine to quiet down)", flush=True)
            told = True
        time.sleep(5)


def undisturbed(run: Callable[[], R], other_share: Callable[[R], float], args: argparse.Namespace) -> R:
    """Run after the machine quiets down, and again (at most --busy-retries times) while other work took
    more than --max-other of a core during the run.

    The machine is shared; a run that lost its cores to someone else measures them, not the server.
    """
    wait_quiet(args.max_other, args.patience)
    result = run()
    for _ in range(args.busy_retries):
        share = other_share(result)
        if share <= args.max_other:
            break
        print(f"  (other work took {share:.0%} of a core during that run: running it again)", flush=True)
        wait_quiet(args.max_other, args.patience)
        result = run()
    return result


def misses(result: RunResult) -> list[str]:
    """Why a run missed the service level; empty when it held it."""
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


def max_readers() -> int:
    """The most readers one process can hold here: one descriptor each, under the hard open-files limit."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - SPARE_FDS


def step_search(
    names: Sequence[str],
    steps: Sequence[int],
    run: Callable[[str, int, int], R],
    missed: Callable[[R], list[str]],
    *,
    runs: int = 1,
    confirm: int = 2,
    report: Callable[[str, int, R], None] = lambda name, step, result: None,
    limit: Callable[[str], int] = lambda name: max_readers(),
) -> dict[str, list[tuple[int, list[R], bool]]]:
    """Per server, the steps it ran: (readers, its runs, held). `run(name, readers, attempt)`.

    Servers run in turn at each step; one that misses a step leaves the race after it. A step whose
    first runs do not all hold gets `confirm` more runs and holds when most of its runs did. A step
    over a server's `limit` (the open-files limit) ends its race without a run.
    """
    history: dict[str, list[tuple[int, list[R], bool]]] = {name: [] for name in names}
    alive = list(names)
    for step in steps:
        for name in [n for n in alive if step > limit(n)]:
            history[name].append((step, [], False))
            alive.remove(name)
        results: dict[str, list[R]] = {name: [] for name in alive}
        for attempt in range(runs):
            for name in alive:
                results[name].append(run(name, step, attempt))
                report(name, step, results[name][-1])
        doubtful = [name for name in alive if any(missed(r) for r in results[name])]
        for attempt in range(runs, runs + confirm):
            for name in doubtful:
                results[name].append(run(name, step, attempt))
                report(name, step, results[name][-1])
        for name in list(alive):
            held = sum(1 for r in results[name] if not missed(r)) * 2 > len(results[name])
            history[name].append((step, results[name], held))
            if not held:
                alive.remove(name)
        if not alive:
            break
    return history


def median_run(results: list[RunResult]) -> RunResult:
    """The run with the median p99 (for an odd count: the middle one)."""
    return sorted(results, key=lambda r: r.p99_ms)[(len(results) - 1) // 2]


def summary_rows(history: dict[str, list[tuple[int, list[RunResult], bool]]]) -> list[dict[str, Any]]:
    rows = []
    for name, stepped in history.items():
        held = [(step, median_run(results)) for step, results, ok in stepped if ok]
        failed = next(((step, results) for step, results, ok in stepped if not ok and results), None)
        best = held[-1][1] if held else None
        rows.append(
            {
                "server": name,
                "max_held": held[-1][0] if held else 0,
                "first_missed": failed[0] if failed else None,
                "missed_because": sorted({w for r in failed[1] for w in misses(r)}) if failed else [],
                "at_max": asdict(best) if best else None,
            }
        )
    return rows


def render_steps(history: dict[str, list[tuple[int, list[RunResult], bool]]], label: Callable[[str], str]) -> str:
    head = (
        "| server | readers | runs | held | p50 ms | p99 ms | received | CPU ms/1k deliv | KB/reader "
        "| longest pause ms | loadgen CPU % | other CPU % |"
    )
    lines = [head, "|" + "---|" * 12]
    for name, stepped in history.items():
        for step, results, ok in stepped:
            if not results:
                continue  # over the open-files limit: not run
            r = median_run(results)
            # the CPU window: the publish phase plus fanout.DRAIN
            window = (r.received / r.deliveries_per_s if r.deliveries_per_s else math.nan) + DRAIN
            lines.append(
                f"| {label(name)} | {step:,} | {len(results)} | {'yes' if ok else 'NO'} | {r.p50_ms:.1f} | "
                f"{r.p99_ms:.1f} | {r.received_share:.2%} | {r.cpu_ms_per_1000:.1f} | {r.mem_per_reader_kb:.1f} | "
                f"{r.lag_max_ms:.1f} | {100 * r.client_cpu_s / window:.0f} | {100 * r.other_cpu_s / window:.0f} |"
            )
    return "\n".join(lines)


def render_summary(rows: list[dict[str, Any]], label: Callable[[str], str]) -> str:
    head = (
        "| server | max readers held | first step missed (why) | CPU ms/1k deliv | KB/idle reader "
        "| longest pause ms | p99 ms |"
    )
    lines = [head, "|" + "---|" * 7]
    for row in rows:
        at = row["at_max"] or {}
        missed = f"{row['first_missed']:,} ({'; '.join(row['missed_because'])})" if row["first_missed"] else "none"
        lines.append(
            f"| {label(row['server'])} | {row['max_held']:,} | {missed} | {at.get('cpu_ms_per_1000', math.nan):.1f} | "
            f"{at.get('mem_per_reader_kb', math.nan):.1f} | {at.get('lag_max_ms', math.nan):.1f} | "
            f"{at.get('p99_ms', math.nan):.1f} |"
        )
    return "\n".join(lines)


def parse_steps(text: str, cap: int) -> list[int]:
    steps = sorted({min(int(s), cap) for s in text.split(",") if s.strip()})
    if not steps or steps[0] <= 0:
        raise ValueError("--steps: positive reader counts, comma-separated")
    return steps


def write_json(path: Path | None, **document: Any) -> None:
    if path is not None:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        path.write_text(json.dumps({"date": stamp, **document}, indent=2, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="reader counts, capped by open files")
    parser.add_argument("--servers", default=",".join(SERVERS), help="subset of fil,b0,b2, in run order")
    parser.add_argument("--rate", type=float, default=2.0, help="changes per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing per run")
    parser.add_argument("--runs", type=int, default=1, help="runs per server and step")
    parser.add_argument("--confirm", type=int, default=2, help="extra runs of a step whose first runs missed")
    parser.add_argument("--clients", type=int, default=2, help="load generators (more when a step needs them)")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--grace", type=float, default=2.0)
    add_machine_args(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 and 1,000 readers, 5 s, no confirm")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.duration, args.confirm = "500,1000", 5.0, 0
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(names) - set(SERVERS):
        parser.error(f"--servers: unknown {sorted(unknown)} (choose from {','.join(SERVERS)})")
    if (args.server_cpu or args.client_cpu) and shutil.which("taskset") is None:
        parser.error("taskset not found: install util-linux or pass --server-cpu '' --client-cpu ''")
    try:
        steps = parse_steps(args.steps, max_readers())
    except ValueError as e:
        parser.error(str(e))
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    raise_priority(args.priority)
    payload = sample_payload_bytes()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="capacity-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    info = versions(source_digests())
    print(f"capacity: steps {steps} at {args.rate}/s for {args.duration} s; {info}; logs in {logs}", flush=True)

    def run(name: str, readers: int, attempt: int) -> RunResult:
        step_args = argparse.Namespace(**vars(args))
        step_args.readers = readers
        step_args.clients = max(args.clients, math.ceil(readers / PER_CLIENT))
        return undisturbed(
            lambda: run_one(name, attempt, step_args, payload, logs),
            lambda r: r.other_cpu_s / (args.duration + DRAIN),
            args,
        )

    def report(name: str, step: int, r: RunResult) -> None:
        why = misses(r)
        print(
            f"{name} {step}: {'held' if not why else 'MISSED: ' + '; '.join(why)}; p50 {r.p50_ms:.1f} p99 "
            f"{r.p99_ms:.1f} ms, {r.received_share:.2%} received, CPU {r.cpu_ms_per_1000:.1f} ms/1k, "
            f"{r.mem_per_reader_kb:.1f} KB/reader, pause {r.lag_max_ms:.1f} ms, loadgen CPU {r.client_cpu_s:.1f} s, "
            f"other CPU {r.other_cpu_s:.1f} s",
            flush=True,
        )

    history = step_search(names, steps, run, misses, runs=args.runs, confirm=args.confirm, report=report)
    rows = summary_rows(history)
    print()
    print(render_steps(history, LABELS.__getitem__))
    print()
    print(render_summary(rows, LABELS.__getitem__))
    write_json(
        args.json,
        args=vars(args),
        versions=info,
        steps={name: [(s, [asdict(r) for r in rs], ok) for s, rs, ok in h] for name, h in history.items()},
        summary=rows,
    )


if __name__ == "__main__":
    main()

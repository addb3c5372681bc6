"""Ingest-latency benchmark: from an upstream event to a connected reader's websocket, per ingest path.

A real Fil (`python app.py serve`, pinned to one core) serves one live event fed by four sources: a Jetstream
account (bluesky), a streamed Mastodon account, a WebSub feed and a push source. bench/fakes.py runs every
upstream (the test fakes) on the other core with the readers (bench/ingest_readers.py). Once every reader has its
hello, the fakes emit events one at a time, the paths in turn, each carrying a marker and the time it left; the
readers time every marker they receive. Per path: p50/p99/max over all (reader, event) pairs and the share
delivered; medians over runs (each run: fresh Fil, fresh fakes, fresh readers).

    .venv/bin/python bench/ingest.py                      # 1,000 readers, 30 events per path at 2/s, 3 runs
    .venv/bin/python bench/ingest.py --readers 200 --per-path 5 --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout import (  # noqa: E402
    CLOCK_TICKS,
    Child,
    free_port,
    machine_cpu,
    percentile,
    source_digests,
    taskset,
    versions,
)

PATHS = ("jetstream", "mastodon", "websub", "push")
LETTER = {"jetstream": "j", "mastodon": "m", "websub": "w", "push": "p"}
LABELS = {
    "jetstream": "Jetstream frame (bluesky account)",
    "mastodon": "Mastodon stream event (account)",
    "websub": "WebSub delivery (feed)",
    "push": "push request (POST /api/ingest)",
}
SOURCE_IDS = {"jetstream": "rider", "mastodon": "reporter", "websub": "channel", "push": "wire"}
SLUG = "ingest"
TARGET_P99_MS = 300.0
#: every polled source polls this rarely, and the floor is set just below it: what is measured is the push path
INTERVAL = "1h"
MIN_POLL = "30m"


def sources_yaml(up: dict[str, str]) -> str:
    return f"""\
events:
  - slug: {SLUG}
    title: Ingest benchmark
    sources:
      - id: {SOURCE_IDS["push"]}
        kind: push
        role: editorial
        secret_env: BENCH_PUSH_SECRET
      - id: {SOURCE_IDS["mastodon"]}
        kind: mastodon
        role: journalist
        instance: {up["mastodon"]}
        account: {up["mastodon_acct"]}
        token_env: BENCH_MASTODON_TOKEN
        interval: {INTERVAL}
      - id: {SOURCE_IDS["jetstream"]}
        kind: bluesky
        role: athlete
        actor: {up["bluesky_actor"]}
        appview: {up["appview"]}
        jetstream: {up["jetstream"]}
        interval: {INTERVAL}
      - id: {SOURCE_IDS["websub"]}
        kind: feed
        role: editorial
        url: {up["feed"]}
        interval: {INTERVAL}
"""


class FilProcess:
    """`python app.py serve` with its settings in the environment; stopped with SIGTERM, then killed."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"Fil exited with {self.proc.returncode} (log: {self.log.name})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # the process pool's workers are in the same group: nothing may outlive the run
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()


def session_cpu(sid: int) -> float:
    """utime + stime of every live process of a session (Fil's process-pool worker is one of them)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


class CpuWindow:
    """Who used the machine while events were emitted: Fil, the bench's own processes, and everyone else."""

    def __init__(self, fil: int, bench: list[int]) -> None:
        self.fil, self.bench = fil, bench
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float, float]:
        busy, steal = machine_cpu()
        mine = os.times()
        harness = mine.user + mine.system
        return time.monotonic(), busy, steal, session_cpu(self.fil), sum(map(session_cpu, self.bench)) + harness

    def end(self) -> dict[str, float]:
        t0, busy0, steal0, fil0, bench0 = self.start
        t1, busy1, steal1, fil1, bench1 = self._sample()
        fil, bench = fil1 - fil0, bench1 - bench0
        return {
            "window_s": round(t1 - t0, 2),
            "fil_cpu_s": round(fil, 2),
            "bench_cpu_s": round(bench, 2),
            # other work on the machine (other test runs...) competes with Fil and the readers for 2 cores
            "other_cpu_s": round(max(0.0, busy1 - busy0 - fil - bench), 2),
            "steal_s": round(steal1 - steal0, 2),
        }


def get_json(url: str, timeout: float = 5.0, token: str | None = None) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


#: /api/sources is for editors: the harness makes one with the CLI before Fil starts (see editor_token)
TOKEN: dict[str, str] = {}


def editor_token(env: dict[str, str]) -> str:
    """An editor and its bearer token in the run's store, through `app.py create-editor` / `create-token`."""
    app = [sys.executable, str(ROOT / "app.py")]
    subprocess.run([*app, "create-editor", "bench"], input="bench-password-long\n", env=env, check=True, text=True)
    made = subprocess.run([*app, "create-token", "bench"], env=env, check=True, text=True, capture_output=True)
    return made.stdout.strip()


def source_states(base: str) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in get_json(f"{base}/api/sources", token=TOKEN.get(base))["sources"]}


def pushes_ready(states: dict[str, dict[str, Any]], fakes: dict[str, Any]) -> list[str]:
    """What is not ready yet (empty: every push path is open on both sides)."""
    missing = []
    for path in ("mastodon", "jetstream"):
        details = states.get(SOURCE_IDS[path], {}).get("details") or {}
        if (details.get("stream") or {}).get("state") != "open":
            missing.append(f"{path} stream ({details.get('stream')})")
    rider = states.get(SOURCE_IDS["jetstream"], {})
    if rider.get("state") != "ok":
        missing.append(f"bluesky first poll ({rider.get('state')}: {rider.get('last_error')})")
    websub = (states.get(SOURCE_IDS["websub"], {}).get("details") or {}).get("websub") or {}
    if websub.get("state") != "active":
        missing.append(f"websub ({websub.get('state')})")
    if not fakes.get("mastodon_streams"):
        missing.append("a subscribed Mastodon stream at the fake")
    if not fakes.get("jetstream_sockets"):
        missing.append("a Jetstream socket at the fake")
    if not fakes.get("hub_subscribed"):
        missing.append("the hub's subscription")
    return missing


@dataclass
class PathResult:
    path: str
    run: int
    emitted: int
    readers: int
    received: int
    expected: int
    share: float
    readers_complete: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: per event, the first reader to get it: the ingest part, before the fan-out spreads it
    first_p50_ms: float
    first_max_ms: float
    send_errors: int


@dataclass
class RunResult:
    run: int
    readers: int
    connected: int
    paths: list[PathResult]
    cpu: dict[str, float]
    polls_during: list[str]
    stream_drops: list[str]
    fakes_lag_max_ms: float
    repeats: int
    other: int
    lost: int
    reader_lag_max_ms: float
    reader_pauses: list[tuple[float, float]]
    events: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def sent_ok(path: str, result: object) -> bool:
    """Whether the fake could send: a stream or socket was there to write to, the hub or Fil answered 202."""
    if path in ("mastodon", "jetstream"):
        return isinstance(result, int) and result >= 1
    return result == ([202] if path == "websub" else 202)


def event_stats(emitted: list[dict[str, Any]], received: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Per event: how many readers got it, the first, median and last of them (ms after it left)."""
    rows = []
    for e in emitted:
        times = sorted(received.get(f"{LETTER[e['path']]}{e['n']:04d}t{e['ts']:.6f}", []))
        rows.append(
            {
                "path": e["path"],
                "n": e["n"],
                "ts": e["ts"],
                "readers": len(times),
                "first_ms": times[0] if times else None,
                "p50_ms": percentile(times, 0.5) if times else None,
                "last_ms": times[-1] if times else None,
            }
        )
    return rows


def summarize(
    path: str, run: int, emitted: list[dict[str, Any]], received: dict[str, list[float]], readers: int
) -> PathResult:
    mine = [e for e in emitted if e["path"] == path]
    keys = {f"{LETTER[path]}{e['n']:04d}t{e['ts']:.6f}" for e in mine}
    latencies = sorted(x for k in keys for x in received.get(k, []))
    firsts = sorted(min(received[k]) for k in keys if received.get(k))
    per_reader_complete = min((len(received.get(k, [])) for k in keys), default=0)
    expected = readers * len(mine)
    errors = sum(1 for e in mine if not sent_ok(path, e.get("result")))
    return PathResult(
        path=path,
        run=run,
        emitted=len(mine),
        readers=readers,
        received=len(latencies),
        expected=expected,
        share=len(latencies) / expected if expected else 0.0,
        readers_complete=per_reader_complete,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=latencies[-1] if latencies else float("nan"),
        first_p50_ms=percentile(firsts, 0.50),
        first_max_ms=firsts[-1] if firsts else float("nan"),
        send_errors=errors,
    )


def fil_env(folder: Path, port: int, push_secret: str, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATION_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CURATION_SOURCES=str(folder / "sources.yaml"),
        CURATION_STORE=f"sqlite:///{folder}/fil.db",
        CURATION_HOST="127.0.0.1",
        CURATION_PORT=str(port),
        # hubs call back there; the fakes are on loopback
        CURATION_PUBLIC_URL=f"http://127.0.0.1:{port}",
        CURATION_ALLOW_PRIVATE_HOSTS="1",
        CURATION_MIN_POLL_INTERVAL=MIN_POLL,
        # Fil's default `info` logs every websocket accept
        CURATION_LOG_LEVEL="warning",
        BENCH_PUSH_SECRET=push_secret,
        BENCH_MASTODON_TOKEN=token,
    )
    return env


def wait_ready(base: str, fil: FilProcess, fakes: Child, timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    missing: list[str] = ["Fil answering"]
    while time.monotonic() < deadline:
        fil.check()
        try:
            states = source_states(base)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
            continue
        fakes.send("status")
        missing = pushes_ready(states, fakes.read(10))
        if not missing:
            return states
        time.sleep(0.2)
    raise TimeoutError(f"not ready after {timeout:.0f} s: {'; '.join(missing)}")


def run_one(run: int, args: argparse.Namespace, logs: Path) -> RunResult:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    push_secret = secrets.token_hex(16)
    folder = Path(tempfile.mkdtemp(prefix="fil-ingest-"))
    fakes_argv = [sys.executable, str(HERE / "fakes.py"), "--fil", base, "--push-source", SOURCE_IDS["push"]]
    fakes_argv += ["--push-secret", push_secret]
    fakes = Child("fakes", taskset(args.client_cpu, fakes_argv), logs / f"fakes-{run}.log")
    fil: FilProcess | None = None
    clients: list[Child] = []
    try:
        up = fakes.read(30)
        (folder / "sources.yaml").write_text(sources_yaml(up))
        env = fil_env(folder, port, push_secret, up["mastodon_token"])
        TOKEN[base] = editor_token(env)
        fil = FilProcess(
            taskset(args.fil_cpu, [sys.executable, str(ROOT / "app.py"), "serve"]), env, logs / f"fil-{run}.log"
        )
        before = wait_ready(base, fil, fakes, args.ready_timeout)
        for i, count in enumerate(split(args.readers, args.clients)):
            argv = [sys.executable, str(HERE / "ingest_readers.py"), "--port", str(port)]
            argv += ["--path", f"/api/events/{SLUG}/live", "--count", str(count)]
            clients.append(Child(f"readers-{i}", taskset(args.client_cpu, argv), logs / f"readers-{run}-{i}.log"))
        connected = 0
        for client in clients:
            ready = client.read(args.readers / 20 + 60)
            connected += int(ready["ready"])
            if ready["failed"]:
                print(f"  {ready['failed']} readers failed to connect: {ready['error']}", file=sys.stderr)
        time.sleep(args.settle)
        window = CpuWindow(fil.pid, [fakes.pid, *(c.pid for c in clients)])
        fakes.send(f"run {args.rate} {args.per_path} {','.join(args.paths)}")
        done = fakes.read(args.per_path * len(args.paths) / args.rate + 120)
        time.sleep(args.grace)
        cpu = window.end()
        received: dict[str, list[float]] = {}
        repeats = other = lost = 0
        reader_lag = 0.0
        pauses: list[tuple[float, float]] = []
        for client in clients:
            client.send("report")
            rep = client.read(120)
            for key, values in rep["latencies_ms"].items():
                received.setdefault(key, []).extend(values)
            repeats += rep["repeats"]
            other += rep["other"]
            lost += rep["lost"]
            reader_lag = max(reader_lag, rep["lag_max_ms"])
            pauses += [tuple(p) for p in rep["pauses"]]
        after = source_states(base)
    finally:
        for child in clients:
            child.stop()
        if fil is not None:
            fil.stop()
        fakes.stop()
        shutil.rmtree(folder, ignore_errors=True)
    emitted = done["emitted"]
    polls = [
        f"{sid}: last poll {after[sid].get('last_poll_at')}"
        for sid in (SOURCE_IDS[p] for p in ("mastodon", "jetstream", "websub"))
        if after[sid].get("last_poll_at") != before[sid].get("last_poll_at")
    ]
    drops = [
        f"{sid}: {after[sid]['details'].get('stream')}"
        for sid in (SOURCE_IDS[p] for p in ("mastodon", "jetstream"))
        if (after[sid].get("details") or {}).get("stream", {}).get("since")
        != (before[sid].get("details") or {}).get("stream", {}).get("since")
    ]
    return RunResult(
        run=run,
        readers=args.readers,
        connected=connected,
        paths=[summarize(p, run, emitted, received, connected) for p in args.paths],
        cpu=cpu,
        polls_during=polls,
        stream_drops=drops,
        fakes_lag_max_ms=float(done["lag_max_ms"]),
        repeats=repeats,
        other=other,
        lost=lost,
        reader_lag_max_ms=reader_lag,
        reader_pauses=sorted(pauses),
        events=event_stats(emitted, received),
        extra={"fakes_errors": done.get("errors"), "fakes_top_pauses": done.get("top_pauses")},
    )


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


METRICS = (
    ("share", "delivered", "{:.2%}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("max_ms", "max ms", "{:.1f}"),
    ("first_p50_ms", "first reader p50 ms", "{:.1f}"),
)


def medians(results: list[RunResult], paths: list[str]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for path in paths:
        rows = [asdict(p) for r in results for p in r.paths if p.path == path]
        table[path] = {key: statistics.median(row[key] for row in rows) for key, _, _ in METRICS}
        for key in ("p50_ms", "p99_ms", "max_ms", "share"):
            table[path][key + "_min"] = min(row[key] for row in rows)
            table[path][key + "_max"] = max(row[key] for row in rows)
        table[path]["received"] = sum(row["received"] for row in rows)
        table[path]["expected"] = sum(row["expected"] for row in rows)
    return table


def render(table: dict[str, dict[str, float]], runs: int) -> str:
    head = ["path", *(label for _, label, _ in METRICS), "p99 over runs", f"p99 <= {TARGET_P99_MS:.0f} ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path, row in table.items():
        cells = [LABELS[path], *(fmt.format(row[key]) for key, _, fmt in METRICS)]
        cells.append(f"{row['p99_ms_min']:.1f}-{row['p99_ms_max']:.1f}")
        cells.append("met" if row["p99_ms"] <= TARGET_P99_MS else "MISSED")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"medians of {runs} run(s); delivered over all runs:")
    for path, row in table.items():
        lines.append(f"  {path}: {row['received']:,.0f} of {row['expected']:,.0f} (reader, event) pairs")
    return "\n".join(lines)


def stalls_near(result: RunResult, event: dict[str, Any]) -> list[str]:
    """Reader-side pauses while this event was on its way: those delays are the readers', not Fil's."""
    until = event["ts"] + (event["last_ms"] or 0) / 1000
    return [
        f"{ms:.0f} ms at +{at - event['ts']:.3f} s"
        for at, ms in result.reader_pauses
        if event["ts"] - 0.5 <= at <= until
    ]


def print_run(result: RunResult) -> None:
    for p in result.paths:
        print(
            f"run {result.run} {p.path}: delivered {p.share:.2%} ({p.received}/{p.expected}), p50 {p.p50_ms:.1f} ms, "
            f"p99 {p.p99_ms:.1f} ms, max {p.max_ms:.1f} ms, first reader p50 {p.first_p50_ms:.1f} ms "
            f"(max {p.first_max_ms:.1f}), send errors {p.send_errors}"
        )
        worst = max((e for e in result.events if e["path"] == p.path), key=lambda e: e["last_ms"] or 0)
        print(
            f"    slowest event #{worst['n']}: first reader {worst['first_ms']} ms, median {worst['p50_ms']} ms, "
            f"last {worst['last_ms']} ms; reader stalls meanwhile: {stalls_near(result, worst) or 'none'}"
        )
    print(
        f"run {result.run}: {result.connected} readers; CPU {result.cpu}; longest pause: fakes "
        f"{result.fakes_lag_max_ms:.1f} ms, readers {result.reader_lag_max_ms:.1f} ms; repeats {result.repeats}, "
        f"other {result.other}, lost {result.lost}; polls during: {result.polls_during or 'none'}; "
        f"stream drops: {result.stream_drops or 'none'}; {result.extra}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2.0, help="events per second, all paths together")
    parser.add_argument("--per-path", type=int, default=30, help="events per path and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paths", default=",".join(PATHS), help="subset of " + ",".join(PATHS) + ", in turn order")
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--clients", type=int, default=1, help="reader processes")
    parser.add_argument("--fil-cpu", default="0", help="taskset CPU list for Fil ('' = no pinning)")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU list for the fakes and the readers")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds after the readers connected")
    parser.add_argument("--grace", type=float, default=2.0, help="seconds after the last event for stragglers")
    parser.add_argument("--ready-timeout", type=float, default=90.0, help="seconds for every push path to open")
    parser.add_argument("--logs", type=Path, help="keep every process's stderr here (default: a temp dir)")
    args = parser.parse_args()
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if unknown := set(args.paths) - set(PATHS):
        parser.error(f"--paths: unknown {sorted(unknown)} (choose from {','.join(PATHS)})")
    if (args.fil_cpu or args.client_cpu) and shutil.which("taskset") is None:
        parser.error("taskset not found: install util-linux or pass --fil-cpu '' --client-cpu ''")
    if args.client_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    logs = args.logs or Path(tempfile.mkdtemp(prefix="ingest-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    digests = source_digests()
    info = versions(digests)
    with contextlib.suppress(Exception):
        from importlib import metadata

        info["aiohttp"] = metadata.version("aiohttp")
    print(
        f"ingest: {args.readers} readers, {args.per_path} events per path ({','.join(args.paths)}) at {args.rate}/s, "
        f"{args.runs} run(s); {info}; logs in {logs}",
        flush=True,
    )
    results: list[RunResult] = []
    for run in range(args.runs):
        results.append(run_one(run, args, logs))
        print_run(results[-1])
    table = medians(results, args.paths)
    after = source_digests()
    if changed := sorted(k for k in digests.keys() | after.keys() if digests.get(k) != after.get(k)):
        print(f"WARNING: curation/ changed during the benchmark: {', '.join(changed)}", flush=True)
        info["changed"] = ", ".join(changed)
    print()
    print(render(table, args.runs))
    verdict = all(row["p99_ms"] <= TARGET_P99_MS for row in table.values())
    print(f"  target p99 <= {TARGET_P99_MS:.0f} ms on every path: {'met' if verdict else 'MISSED'}")
    if args.json:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        document = {
            "date": stamp,
            "args": {k: str(v) for k, v in vars(args).items()},
            "versions": info,
            "runs": [asdict(r) for r in results],
            "medians": table,
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()

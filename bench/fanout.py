"""Fan-out benchmark: N websocket readers of one event, changes published at R/s, Fil against two baselines.

Per server and run: publish-to-receive latency (p50/p99/max), share of changes received, deliveries
per second, server CPU per 1,000 deliveries over the publish phase, server memory per idle reader,
and the longest event-loop pause and GC pass inside the server. Runs are interleaved (fil, b0, b2,
fil, ...) and summarised as medians. Server on one core, load generators on the other (taskset).

    .venv/bin/python bench/fanout.py                      # 5,000 readers, 2 changes/s, 20 s, 3 runs
    .venv/bin/python bench/fanout.py --readers 500 --runs 1 --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fil_server import sample_payload_bytes  # noqa: E402

SERVERS = ("fil", "b0", "b2")
LABELS = {
    "fil": "Fil (store -> hub -> transports)",
    "b0": "B0 naive Starlette send_text loop",
    "b2": "B2 websockets.broadcast()",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: after the last publish returns, the kernel may still be flushing buffered writes
DRAIN = 1.0


class Child:
    """A subprocess speaking JSON lines on stdout, with a read timeout."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log.open("ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, start_new_session=True
        )
        self.pending = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no reply within {timeout:.0f} s (log: {self.log.name})")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited with {self.proc.wait()} (log: {self.log.name})")
                self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return dict(json.loads(line))

    def stop(self) -> None:
        """Ask politely, then kill the process group: nothing may outlive the run."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy seconds of every core, of which steal) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS, fields[7] / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status: no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class RunResult:
    server: str
    run: int
    readers: int
    connected: int
    published: int
    received: int
    expected: int
    received_share: float
    readers_complete: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    deliveries_per_s: float
    cpu_ms_per_1000: float
    cpu_s: float
    mem_per_reader_kb: float
    rss_idle_mb: float
    lag_max_ms: float
    gc_max_ms: float
    gc_full: int
    lost: int
    payload_bytes: int
    server_extra: dict[str, Any] = field(default_factory=dict)
    #: seqs the readers missed or got twice (loadgen's order check)
    gaps: int = 0
    dups: int = 0
    #: CPU of the load generators over the publish window: near 1 s per second, they bound the latency
    client_cpu_s: float = 0.0
    #: CPU used by anything else on the machine over the same window (other test runs): noise
    other_cpu_s: float = 0.0


def taskset(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu else argv


def server_argv(name: str, port: int, payload: int) -> list[str]:
    if name == "fil":
        return [sys.executable, str(HERE / "fil_server.py"), "--port", str(port)]
    return [sys.executable, str(HERE / "baselines.py"), name, "--port", str(port), "--payload-bytes", str(payload)]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_one(name: str, run: int, args: argparse.Namespace, payload: int, logs: Path) -> RunResult:
    port = free_port()
    server = Child(name, taskset(args.server_cpu, server_argv(name, port, payload)), logs / f"{name}-{run}.log")
    clients: list[Child] = []
    try:
        hello = server.read(60)
        time.sleep(0.5)
        rss_before = rss_bytes(server.pid)
        for i, count in enumerate(split(args.readers, args.clients)):
            argv = [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--path", hello["path"]]
            argv += ["--count", str(count)]
            clients.append(Child(f"loadgen-{i}", taskset(args.client_cpu, argv), logs / f"{name}-{run}-client{i}.log"))
        connected = 0
        for client in clients:
            ready = client.read(args.readers / 20 + 60)
            connected += int(ready["ready"])
            if ready["failed"]:
                print(f"  {name}: {ready['failed']} readers failed to connect: {ready['error']}", file=sys.stderr)
        time.sleep(args.settle)
        rss_after = rss_bytes(server.pid)
        cpu_before = cpu_seconds(server.pid)
        clients_before = sum(cpu_seconds(c.pid) for c in clients)
        busy_before = machine_cpu()[0] - os.times().user - os.times().system
        server.send(f"start {args.rate} {args.duration}")
        done = server.read(args.duration + 120)
        time.sleep(DRAIN)
        cpu_used = cpu_seconds(server.pid) - cpu_before
        clients_used = sum(cpu_seconds(c.pid) for c in clients) - clients_before
        busy = machine_cpu()[0] - os.times().user - os.times().system - busy_before
        time.sleep(args.grace)
        latencies: list[float] = []
        per_reader: dict[int, int] = {}
        lost = gaps = dups = 0
        for client in clients:
            client.send("report")
            rep = client.read(120)
            latencies.extend(rep["latencies_ms"])
            for count, readers in rep["per_reader"].items():
                per_reader[int(count)] = per_reader.get(int(count), 0) + readers
            lost += rep["lost"]
            gaps += rep["gaps"]
            dups += rep["dups"]
    finally:
        for child in clients:
            child.stop()
        server.stop()
    published = int(done["done"])
    latencies.sort()
    received = len(latencies)
    expected = args.readers * published
    extra = {k: v for k, v in done.items() if k not in {"done", "lag_max_ms", "gc_max_ms", "gc_full"}}
    return RunResult(
        server=name,
        run=run,
        readers=args.readers,
        connected=connected,
        published=published,
        received=received,
        expected=expected,
        received_share=received / expected if expected else 0.0,
        readers_complete=per_reader.get(published, 0),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=latencies[-1] if latencies else float("nan"),
        deliveries_per_s=received / args.duration,
        cpu_ms_per_1000=cpu_used * 1000 / received * 1000 if received else float("nan"),
        cpu_s=cpu_used,
        mem_per_reader_kb=(rss_after - rss_before) / max(1, connected) / 1024,
        rss_idle_mb=rss_after / 2**20,
        lag_max_ms=float(done["lag_max_ms"]),
        gc_max_ms=float(done["gc_max_ms"]),
        gc_full=int(done["gc_full"]),
        lost=lost,
        payload_bytes=int(done.get("payload_bytes", payload)),
        server_extra=extra,
        gaps=gaps,
        dups=dups,
        client_cpu_s=clients_used,
        other_cpu_s=max(0.0, busy - cpu_used - clients_used),
    )


METRICS = (
    ("received_share", "received", "{:.2%}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("max_ms", "max ms", "{:.1f}"),
    ("deliveries_per_s", "deliv/s", "{:,.0f}"),
    ("cpu_ms_per_1000", "CPU ms/1k deliv", "{:.1f}"),
    ("mem_per_reader_kb", "KB/reader", "{:.1f}"),
    ("lag_max_ms", "loop pause ms", "{:.1f}"),
    ("gc_max_ms", "GC max ms", "{:.1f}"),
)


def medians(results: list[RunResult]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.server for r in results):
        rows = [asdict(r) for r in results if r.server == name]
        table[name] = {key: statistics.median(row[key] for row in rows) for key, _, _ in METRICS}
        for key in ("cpu_ms_per_1000", "p99_ms"):
            values = [row[key] for row in rows]
            table[name][key + "_min"] = min(values)
            table[name][key + "_max"] = max(values)
    return table


def ratios(table: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "fil" not in table:
        return out
    for base in ("b2", "b0"):
        if base in table:
            for key in ("cpu_ms_per_1000", "p99_ms"):
                out[f"fil/{base} {key}"] = table["fil"][key] / table[base][key]
    return out


def render(table: dict[str, dict[str, float]], runs: int) -> str:
    head = ["server", *(label for _, label, _ in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.items():
        cells = [LABELS[name], *(fmt.format(row[key]) for key, _, fmt in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"medians of {runs} interleaved run(s); spread (min-max) over runs:")
    for name, row in table.items():
        lines.append(
            f"  {name}: CPU ms/1k {row['cpu_ms_per_1000_min']:.1f}-{row['cpu_ms_per_1000_max']:.1f}, "
            f"p99 {row['p99_ms_min']:.1f}-{row['p99_ms_max']:.1f} ms"
        )
    return "\n".join(lines)


def verdict(table: dict[str, dict[str, float]], ratio: dict[str, float], readers: int) -> list[str]:
    if "fil" not in table:
        return []
    fil = table["fil"]
    lines = [
        f"every change delivered: {'yes' if fil['received_share'] >= 1.0 else 'NO'} ({fil['received_share']:.4%})",
        f"p99 <= 200 ms: {'yes' if fil['p99_ms'] <= 200 else 'NO'} ({fil['p99_ms']:.1f} ms)",
    ]
    if "fil/b2 cpu_ms_per_1000" in ratio:
        r = ratio["fil/b2 cpu_ms_per_1000"]
        lines.append(f"CPU per delivery <= 1.3x B2: {'yes' if r <= 1.3 else 'NO'} ({r:.2f}x)")
    kb = fil["mem_per_reader_kb"]
    lines.append(
        f"memory per idle reader <= 20 KB (goal): {'yes' if kb <= 20 else 'NO'} ({kb:.1f} KB, {readers} readers)"
    )
    return lines


def source_digests() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in sorted((ROOT / "curation").rglob("*.py"))
    }


def code_state(digests: dict[str, str]) -> str:
    """The commit plus a digest of curation/ as it is on disk: the tree changes between commits too."""
    digest = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:12]
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    return f"{head}+curation:{digest}"


def versions(digests: dict[str, str]) -> dict[str, str]:
    out = {"python": platform.python_version(), "cpus": str(os.cpu_count()), "code": code_state(digests)}
    for package in ("uvicorn", "websockets", "starlette", "uvloop", "httptools"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[package] = metadata.version(package)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=2.0, help="changes per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS), help="subset of fil,b0,b2, in run order")
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list for the server ('' = no pinning)")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU list for the load generators")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before measuring memory")
    parser.add_argument("--grace", type=float, default=2.0, help="seconds after the last publish for stragglers")
    parser.add_argument("--logs", type=Path, help="keep server and client stderr here (default: a temp dir)")
    args = parser.parse_args()
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(names) - set(SERVERS):
        parser.error(f"--servers: unknown {sorted(unknown)} (choose from {','.join(SERVERS)})")
    if (args.server_cpu or args.client_cpu) and shutil.which("taskset") is None:
        parser.error("taskset not found: install util-linux or pass --server-cpu '' --client-cpu ''")
    if args.client_cpu:
        # the harness is idle while measuring, but keep it off the server's core
        os.sched_setaffinity(0, {int(c) for c in args.client_cpu.split(",")})
    payload = sample_payload_bytes()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="fanout-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    digests = source_digests()
    info = versions(digests)
    print(
        f"fan-out: {args.readers} readers x {args.rate}/s for {args.duration} s, {args.runs} run(s) of "
        f"{','.join(names)}; payload {payload} B; {info}; logs in {logs}",
        flush=True,
    )
    results: list[RunResult] = []
    for run in range(args.runs):
        for name in names:
            result = run_one(name, run, args, payload, logs)
            results.append(result)
            print(
                f"run {run} {name}: received {result.received_share:.2%}, p50 {result.p50_ms:.1f} ms, "
                f"p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms, "
                f"CPU {result.cpu_ms_per_1000:.1f} ms/1k, {result.mem_per_reader_kb:.1f} KB/reader, "
                f"pause {result.lag_max_ms:.1f} ms, GC {result.gc_max_ms:.1f} ms, lost {result.lost}"
                + f", {result.server_extra}",
                flush=True,
            )
    table = medians(results)
    ratio = ratios(table)
    after = source_digests()
    if changed := sorted(k for k in digests.keys() | after.keys() if digests.get(k) != after.get(k)):
        # other work goes on in the tree; whether it matters depends on whether it is on the fan-out path
        print(f"WARNING: curation/ changed during the benchmark: {', '.join(changed)}", flush=True)
        info["code_after"] = code_state(after)
        info["changed"] = ", ".join(changed)
    print()
    print(render(table, args.runs))
    for key, value in ratio.items():
        print(f"  {key}: {value:.2f}")
    for line in verdict(table, ratio, args.readers):
        print("  " + line)
    if args.json:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        document = {
            "date": stamp,
            "args": {k: str(v) for k, v in vars(args).items()},
            "versions": info,
            "payload_bytes": payload,
            "runs": [asdict(r) for r in results],
            "medians": table,
            "ratios": ratio,
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()

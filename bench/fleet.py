"""What the multi-process benchmarks share: a pinned redis-server, its command counts and CPU, and /metrics scraped.

Used by bench/redis_fanout.py, bench/storm.py and bench/polls.py; the single-process pieces (Child, CPU and
memory from /proc, percentiles) stay in bench/fanout.py.
"""

from __future__ import annotations

import math
import os
import re
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.redis_server import RedisServer  # noqa: E402

#: (metric name, labels) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def start_redis(cpu: str, *, appendonly: bool = True) -> RedisServer:
    """A fresh redis-server on a free port, pinned; AOF fsynced every second (docker-compose.yml fsyncs
    every write, `always`: one disk flush more per commit, on the writer's path only)."""
    server = RedisServer(appendonly=appendonly, fsync="everysec")
    server.start()
    if cpu and server.process is not None:
        os.sched_setaffinity(server.process.pid, {int(c) for c in cpu.split(",")})
    return server


def redis_pid(server: RedisServer) -> int:
    assert server.process is not None
    return server.process.pid


def command_calls(port: int) -> dict[str, int]:
    """Calls per command since Redis started (INFO commandstats), without the INFO calls themselves."""
    client = redis.Redis(port=port, socket_timeout=10)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    calls.pop("info", None)
    return calls


def calls_between(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] - before.get(k, 0) > 0}


def scrape(base: str, timeout: float = 30.0) -> Samples:
    """GET /metrics and parse the samples (Prometheus text format; no HELP or TYPE kept)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = tuple(sorted((k, v) for k, v in _LABEL.findall(match.group(3) or "")))
        samples[(match.group(1), labels)] = float(match.group(4))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        if n == name:
            key = dict(ls).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def histogram_quantile(before: Samples, after: Samples, name: str, q: float) -> float:
    """The upper bound of the bucket holding quantile q of what was observed between two scrapes."""
    buckets: list[tuple[float, float]] = []
    for (n, ls), v in after.items():
        if n == f"{name}_bucket":
            le = dict(ls)["le"]
            bound = math.inf if le == "+Inf" else float(le)
            buckets.append((bound, v - before.get((n, ls), 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    return next(bound for bound, count in buckets if count >= rank)

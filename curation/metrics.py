"""Prometheus metrics without a dependency: counters, gauges and histograms, rendered as text format 0.0.4.

Also the instruments Fil owns directly: a timing proxy around the store, the event-loop lag monitor,
and the process figures read from /proc. What other parts already count as plain integers (the hub,
the collectors) is read at scrape time instead, so their hot paths carry no metric objects.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import inspect
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from curation.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]
Labels = tuple[str, ...]

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: store calls: a cached read takes well under a millisecond, a fsynced SQLite commit a few, Redis a network hop
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: event-loop lag: the issue's target is a p99 under 20 ms
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(names: Labels, values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metric:
    """A counter or a gauge: one value per combination of label values."""

    kind: Kind

    def __init__(self, name: str, help: str, kind: Kind, labels: Sequence[str] = ()) -> None:
        if not _NAME.match(name):
            raise ValueError(f"not a metric name: {name!r}")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__") or label == "le":
                raise ValueError(f"{name}: not a label name: {label!r}")
        self.name = name
        self.help = help
        self.kind = kind
        self.labelnames: Labels = tuple(labels)
        self.values: dict[Labels, float] = {}
        # increments may come from another thread (a store's writer thread); `+=` on a dict is not atomic
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> Labels:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, value: float, *labels: str) -> None:
        """For gauges, and for counters whose count is kept elsewhere (read at scrape time)."""
        key = self._key(labels)
        with self._lock:
            self.values[key] = value

    def samples(self) -> list[str]:
        with self._lock:
            items = list(self.values.items())
        if not items and not self.labelnames:
            items = [((), 0.0)]
        return [f"{self.name}{_labels(self.labelnames, key)} {format_value(value)}" for key, value in items]


class Histogram(Metric):
    """Cumulative buckets, a sum and a count per combination of label values."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float]) -> None:
        super().__init__(name, help, "histogram", labels)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct numbers")
        self.bounds = bounds
        #: per label values: [count in each bucket (not cumulative) + overflow, sum]
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = labels if len(labels) == len(self.labelnames) else self._key(labels)
        with self._lock:
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = ([0] * (len(self.bounds) + 1), [0.0])
            series[0][bisect.bisect_left(self.bounds, value)] += 1
            series[1][0] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            series = self.series.get(self._key(labels))
            return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        with self._lock:
            items = [(key, list(counts), total[0]) for key, (counts, total) in self.series.items()]
        if not items and not self.labelnames:
            items = [((), [0] * (len(self.bounds) + 1), 0.0)]
        lines = []
        for key, counts, total in items:
            cumulative = 0
            for bound, n in zip([*self.bounds, math.inf], counts, strict=True):
                cumulative += n
                le = f'le="{format_value(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {format_value(total)}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {cumulative}")
        return lines


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text: HELP, TYPE, then the samples of each metric."""
    lines = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        lines.extend(metric.samples())
    return "\n".join(lines) + "\n"


class Registry:
    """The metrics a Fil keeps between scrapes."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def _add(self, metric: Metric) -> Metric:
        if any(m.name == metric.name for m in self.metrics):
            raise ValueError(f"metric registered twice: {metric.name}")
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Metric:
        return self._add(Metric(name, help, "counter", labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Metric:
        return self._add(Metric(name, help, "gauge", labels))

    def histogram(self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float]) -> Histogram:
        histogram = Histogram(name, help, labels, buckets=buckets)
        self._add(histogram)
        return histogram


# -- the store, timed -------------------------------------------------------------------------


class TimedStore:
    """Passes every call through to the store; awaits of its coroutine methods are timed by method name.

    The timed methods live in the instance's own namespace, so a runtime Protocol check (AccountStore)
    sees them as the store's; anything else (attributes, sync methods such as listen) is forwarded.
    """

    def __init__(self, store: object, histogram: Histogram) -> None:
        self.__dict__["_inner"] = store
        for name, member in inspect.getmembers(type(store)):
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                self.__dict__[name] = self._timed(name, histogram)

    def _timed(self, name: str, histogram: Histogram) -> Callable[..., Awaitable[Any]]:
        inner = self.__dict__["_inner"]
        method = getattr(type(inner), name)

        @wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                # looked up per call: a backend may rebind a method on its instance
                return await getattr(inner, name)(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started, name)

        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_inner"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__dict__["_inner"], name, value)


def timed_store(store: Store, histogram: Histogram) -> Store:
    """The store as Fil uses it: the same methods, each await observed in `histogram` by method name."""
    return cast("Store", TimedStore(store, histogram))


# -- the event loop -----------------------------------------------------------------------------


class LoopLag:
    """Sleeps `interval` again and again and records how late it wakes: the time anything else hogged the loop."""

    WINDOW = 60.0

    def __init__(self, registry: Registry, *, interval: float = 0.25) -> None:
        self.interval = interval
        self.last = registry.gauge("fil_event_loop_lag_seconds", "How late the lag monitor's last wake-up was")
        self.peak = registry.gauge("fil_event_loop_lag_max_seconds", "The longest event-loop lag over the last minute")
        self.histogram = registry.histogram(
            "fil_event_loop_lag_distribution_seconds",
            f"Event-loop lag, measured every {interval:g} s",
            buckets=LAG_BUCKETS,
        )
        self.recent: deque[tuple[float, float]] = deque()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def record(self, now: float, lag: float) -> None:
        self.last.set(lag)
        self.histogram.observe(lag)
        self.recent.append((now, lag))
        while self.recent and self.recent[0][0] < now - self.WINDOW:
            self.recent.popleft()
        self.peak.set(max(value for _, value in self.recent))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            now = loop.time()
            # the loop's clock may wake a hair early: that is no lag
            self.record(now, max(0.0, now - before - self.interval))


# -- the process --------------------------------------------------------------------------------


def _start_time() -> float:
    """When this process started, from /proc (the import time where there is no /proc)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            # the command name (field 2) may hold spaces and parentheses: count fields after the last ")"
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


START_TIME = _start_time()


def process_metrics() -> list[Metric]:
    """Resident memory, open descriptors and start time; reads /proc, so call it off the event loop."""
    start = Metric("fil_process_start_time_seconds", "When the process started, seconds since the Unix epoch", "gauge")
    start.set(START_TIME)
    metrics = [start]
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        rss = Metric("fil_process_resident_memory_bytes", "Resident memory of the process", "gauge")
        rss.set(pages * os.sysconf("SC_PAGE_SIZE"))
        metrics.append(rss)
    with contextlib.suppress(OSError):
        fds = Metric("fil_process_open_fds", "Open file descriptors (each reader holds one)", "gauge")
        fds.set(len(os.listdir("/proc/self/fd")))
        metrics.append(fds)
    return metrics

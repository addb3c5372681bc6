"""GET /metrics and JSON logs as an operator sees them: a real Fil, real readers, a real scrape, a real `serve`."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from curation.collectors.push import sign
from curation.config import Settings
from curation.metrics import Histogram, Metric, render
from curation.store.accounts import AccountStore
from tests.conftest import RunningFil, free_port, start_fil

ROOT = Path(__file__).resolve().parent.parent
SLUG = "stage-1"
SECRET = "metrics-test-secret"
WAIT = 20.0

# -- a strict reader of the text format 0.0.4 ----------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_VALUE = r'"((?:[^"\\\n]|\\[\\"n])*)"'
_LABEL = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)={_LABEL_VALUE}")
_PAIR = rf"[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE}"
_SAMPLE = re.compile(rf"^(?P<name>{_NAME})(?:\{{(?P<labels>{_PAIR}(?:,{_PAIR})*)?\}})? (?P<value>[^ ]+)(?: -?\d+)?$")
_HELP = re.compile(rf"^# HELP ({_NAME}) ((?:[^\\\n]|\\[\\n])*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def _number(text: str) -> float:
    if text in {"+Inf", "-Inf", "NaN"}:
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text), f"not a sample value: {text!r}"
    return float(text)


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Every line checked against the format; returns the TYPE of each family and every sample by labels."""
    assert text.endswith("\n"), "the exposition ends with a line feed"
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: Samples = {}
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("# HELP "):
            match = _HELP.match(line)
            assert match, where
            assert match.group(1) not in helps, f"HELP twice: {where}"
            helps.add(match.group(1))
            continue
        if line.startswith("# TYPE "):
            match = _TYPE.match(line)
            assert match, where
            name = match.group(1)
            assert name not in types, f"TYPE twice: {where}"
            assert not any(key[0] == name or key[0].startswith(name + "_") for key in samples), f"TYPE late: {where}"
            types[name] = match.group(2)
            continue
        match = _SAMPLE.match(line)
        assert match, where
        name = match.group("name")
        family = name
        if name not in types:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert types.get(family) == "histogram", f"sample of an undeclared family: {where}"
        pairs = _LABEL.findall(match.group("labels") or "")
        labels = frozenset((k, _unescape(v)) for k, v in pairs)
        assert len({k for k, _ in pairs}) == len(pairs), f"a label twice: {where}"
        key = (name, labels)
        assert key not in samples, f"sample twice: {where}"
        samples[key] = _number(match.group("value"))
        if types[family] == "counter":
            assert name.endswith("_total") and samples[key] >= 0, where
    for family, kind in types.items():
        if kind == "histogram":
            _check_histogram(family, samples)
    return types, samples


def _check_histogram(family: str, samples: Samples) -> None:
    """Buckets cumulative and ending with +Inf, which equals _count, per label set."""
    series: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    for (name, labels), value in samples.items():
        if name == f"{family}_bucket":
            le = dict(labels)["le"]
            series.setdefault(labels - {("le", le)}, []).append((_number(le), value))
    for labels, buckets in series.items():
        buckets.sort()
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), f"{family}: buckets not cumulative"
        assert math.isinf(buckets[-1][0]), f"{family}: no +Inf bucket"
        assert samples[(f"{family}_count", labels)] == counts[-1]
        assert (f"{family}_sum", labels) in samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


# -- a Fil with a push source, a feed nobody serves, and readers ----------------------------------


def write_sources(path: Path, dead_port: int) -> None:
    path.write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: METRICS_WIRE_SECRET\n        role: editorial\n"
        f"      - id: broken\n        kind: feed\n        url: http://127.0.0.1:{dead_port}/feed.xml\n"
        "        role: editorial\n        interval: 0.3s\n"
    )


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("METRICS_WIRE_SECRET", SECRET)
    write_sources(tmp_path / "sources.yaml", free_port())
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    yield running
    await running.stop()


async def push(fil: RunningFil, *ids: str) -> None:
    items = [
        {"id": i, "url": f"https://wire.example/{i}", "text": f"Story {i}", "published_at": "2026-07-12T12:00:00Z"}
        for i in ids
    ]
    body = json.dumps({"items": items}).encode()
    ts = int(time.time())
    headers = {"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRET, ts, body)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fil.base}/api/ingest/wire", data=body, headers=headers) as response:
            assert response.status == 202, await response.text()


async def scrape(fil: RunningFil, token: str | None = None) -> tuple[dict[str, str], Samples]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/metrics", headers=headers) as response:
            text = await response.text()
            assert response.status == 200, text
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-store"
    return parse(text)


async def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


async def until(fil: RunningFil, check: Any, what: str) -> Samples:
    deadline = time.monotonic() + WAIT
    while True:
        _, samples = await scrape(fil)
        try:
            check(samples)
            return samples
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}") from None
        await asyncio.sleep(0.1)


async def test_metrics_show_readers_deliveries_changes_store_latency_and_loop_lag(fil: RunningFil) -> None:
    live = f"{fil.ws_base}/api/events/{SLUG}/live"
    async with connect(live) as first, connect(live) as second:
        for ws in (first, second):
            await next_of(ws, "hello")
        await push(fil, "a")
        for ws in (first, second):
            assert (await next_of(ws, "upsert"))["item"]["text"] == "Story a"

        types, samples = await scrape(fil)
        assert value(samples, "fil_readers", event=SLUG) == 2
        assert value(samples, "fil_reader_connects_total", event=SLUG) == 2
        assert value(samples, "fil_deliveries_total", event=SLUG) >= 2
        assert value(samples, "fil_changes_total", event=SLUG) >= 1
        assert value(samples, "fil_slow_readers_dropped_total", event=SLUG) == 0
        assert value(samples, "fil_source_pushes_total", source="wire") == 1
        assert value(samples, "fil_store_duration_seconds_count", operation="ingest") >= 1
        assert value(samples, "fil_store_duration_seconds_bucket", operation="ingest", le="+Inf") >= 1
        assert types["fil_store_duration_seconds"] == "histogram"
        assert types["fil_event_loop_lag_seconds"] == "gauge"
        assert value(samples, "fil_event_loop_lag_seconds") >= 0
        assert value(samples, "fil_ready") == 1
        assert value(samples, "fil_process_resident_memory_bytes") > 1_000_000
        assert value(samples, "fil_process_open_fds") >= 3
        assert 0 < value(samples, "fil_process_start_time_seconds") <= time.time()

    # both readers gone: the gauge follows, and every connect is matched by a disconnect
    await until(fil, lambda s: value(s, "fil_readers", event=SLUG) == 0, "the readers to leave")
    _, samples = await scrape(fil)
    assert value(samples, "fil_reader_disconnects_total", event=SLUG) == 2
    # the lag monitor wakes every 0.25 s: its distribution fills while the test runs
    await until(fil, lambda s: value(s, "fil_event_loop_lag_distribution_seconds_count") >= 1, "a lag sample")


async def test_a_failing_feed_source_shows_its_errors_and_state(fil: RunningFil) -> None:
    def failed_twice(samples: Samples) -> None:
        assert value(samples, "fil_source_errors_total", source="broken") >= 2

    samples = await until(fil, failed_twice, "the dead feed to fail twice")
    assert value(samples, "fil_source_polls_total", source="broken") >= value(
        samples, "fil_source_errors_total", source="broken"
    )
    states = {state: value(samples, "fil_source_state", source="broken", state=state) for state in ("ok", "error")}
    backing_off = value(samples, "fil_source_state", source="broken", state="backing off")
    assert states["ok"] == 0 and states["error"] + backing_off == 1
    assert value(samples, "fil_source_running", source="broken") == 1
    assert value(samples, "fil_source_errors_total", source="wire") == 0


async def test_the_store_keeps_its_account_side_through_the_timing_proxy(fil: RunningFil) -> None:
    assert isinstance(fil.fil.store, AccountStore)
    assert len(await fil.token()) > 20  # an editor made and a token issued through the proxy
    _, samples = await scrape(fil)
    assert value(samples, "fil_store_duration_seconds_count", operation="put_editor") == 1


async def test_a_metrics_token_is_asked_for_when_set(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text("events: []\n")
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data", metrics_token="a-scrape-token")
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic a-scrape-token"}):
                async with session.get(f"{running.base}/metrics", headers=headers) as response:
                    assert response.status == 401
                    assert response.headers["Cache-Control"] == "no-store"
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    assert "CURATION_METRICS_TOKEN" in (await response.json())["error"]
            async with session.get(f"{running.base}/healthz") as response:
                assert response.status == 200  # the token guards /metrics only
        _, samples = await scrape(running, token="a-scrape-token")
        assert value(samples, "fil_ready") == 1
    finally:
        await running.stop()


def test_label_values_and_help_are_escaped() -> None:
    odd = 'quote " backslash \\ newline \n end'
    counter = Metric("fil_test_total", "help with \\ and\na newline", "counter", ["source"])
    counter.inc(2, odd)
    histogram = Histogram("fil_test_seconds", "a histogram", ["op"], buckets=[0.1, 1])
    histogram.observe(0.05, odd)
    histogram.observe(5, odd)
    text = render([counter, histogram, Metric("fil_empty", "nothing yet", "gauge")])
    assert 'source="quote \\" backslash \\\\ newline \\n end"' in text
    assert "# HELP fil_test_total help with \\\\ and\\na newline\n" in text
    types, samples = parse(text)
    assert types == {"fil_test_total": "counter", "fil_test_seconds": "histogram", "fil_empty": "gauge"}
    assert value(samples, "fil_test_total", source=odd) == 2
    assert value(samples, "fil_test_seconds_bucket", op=odd, le="0.1") == 1
    assert value(samples, "fil_test_seconds_bucket", op=odd, le="1") == 1
    assert value(samples, "fil_test_seconds_count", op=odd) == 2
    assert value(samples, "fil_empty") == 0
    with pytest.raises(ValueError, match="not a label name"):
        Metric("fil_x", "x", "gauge", ["bad-label"])


# -- structured logs ------------------------------------------------------------------------------


def test_log_format_setting_is_checked() -> None:
    assert Settings.from_env({"CURATION_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ValueError, match="CURATION_LOG_FORMAT='xml'"):
        Settings.from_env({"CURATION_LOG_FORMAT": "xml"})


async def test_serve_with_json_logs_writes_one_object_per_line(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    write_sources(tmp_path / "sources.yaml", dead)
    env = {
        **os.environ,
        "CURATION_SOURCES": str(tmp_path / "sources.yaml"),
        "CURATION_STORE": f"sqlite:///{tmp_path}/fil.db",
        "CURATION_PORT": str(port),
        "CURATION_ALLOW_PRIVATE_HOSTS": "1",
        "CURATION_MIN_POLL_INTERVAL": "0.2s",
        "CURATION_LOG_FORMAT": "json",
        "METRICS_WIRE_SECRET": SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "app.py", cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    lines: list[str] = []

    async def read() -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            lines.append(raw.decode().rstrip("\n"))

    reader = asyncio.create_task(read())
    try:
        records: list[dict[str, Any]] = []

        async def wait_for(what: str, test: Any) -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                records[:] = [json.loads(line) for line in lines]  # every line is one JSON object
                found = next((r for r in records if test(r)), None)
                if found is not None:
                    return found
                assert process.returncode is None, f"Fil exited: {lines}"
                await asyncio.sleep(0.1)
            raise AssertionError(f"no log line {what}: {lines}")

        await wait_for(
            "saying uvicorn started", lambda r: r["logger"] == "uvicorn.error" and "startup complete" in r["message"]
        )
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
        access = await wait_for("for the scrape", lambda r: r["logger"] == "uvicorn.access")
        assert access["method"] == "GET" and access["path"] == "/metrics" and access["status"] == 200
        failure = await wait_for("for the dead feed", lambda r: r.get("source") == "broken")
        assert failure["level"] == "warning" and failure["logger"] == "curation.collectors"
        assert failure["url"].startswith(f"http://127.0.0.1:{dead}/")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", failure["time"])
        assert "broken" in failure["message"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        await asyncio.wait_for(reader, 10)

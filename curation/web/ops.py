"""GET /metrics: Fil's state in the Prometheus text format, public like /healthz unless CURATION_METRICS_TOKEN is set.

The hub and the collectors count with plain integers on their own paths; this module turns those
counts, and what Fil measures itself (store latency, event-loop lag), into metrics at scrape time.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from curation.metrics import CONTENT_TYPE, Metric, process_metrics, render
from curation.models import SourceState
from curation.service import Fil

NO_STORE = {"Cache-Control": "no-store"}


def _counter(name: str, help: str, labels: list[str]) -> Metric:
    return Metric(name, help, "counter", labels)


def _gauge(name: str, help: str, labels: list[str] | None = None) -> Metric:
    return Metric(name, help, "gauge", labels or [])


def hub_metrics(fil: Fil) -> list[Metric]:
    """Per public event (a draft's slug is not public yet): readers, desks, changes, deliveries, drops."""
    readers = _gauge("fil_readers", "Readers connected to the event's live websocket", ["event"])
    desks = _gauge("fil_editor_desks", "Editor desks connected to the event's live feed", ["event"])
    connects = _counter("fil_reader_connects_total", "Readers registered for live changes", ["event"])
    disconnects = _counter(
        "fil_reader_disconnects_total", "Readers that left, or that the hub dropped for being slow", ["event"]
    )
    deliveries = _counter("fil_deliveries_total", "Frames written to readers' sockets", ["event"])
    dropped = _counter(
        "fil_slow_readers_dropped_total",
        "Readers disconnected because they held more unsent bytes than CURATION_READER_BUFFER (or were closing)",
        ["event"],
    )
    changes = _counter(
        "fil_changes_total",
        "Changes to the event's log seen by this process; rate() gives changes per second",
        ["event"],
    )
    hub = fil.hub
    for event in fil.public_events():
        slug = event.slug
        channel = hub.channels.get(slug)
        readers.set(len(channel.readers) if channel else 0, slug)
        desks.set(len(hub.editors.get(slug, ())), slug)
        connects.set(channel.connects if channel else 0, slug)
        disconnects.set(channel.disconnects if channel else 0, slug)
        deliveries.set(channel.deliveries if channel else 0, slug)
        dropped.set(channel.dropped if channel else 0, slug)
        changes.set(channel.changes if channel else 0, slug)
    return [readers, desks, connects, disconnects, deliveries, dropped, changes]


def source_metrics(fil: Fil) -> list[Metric]:
    """Per source, the sources /healthz reports on: polls, errors, pushes, state, last success."""
    polls = _counter("fil_source_polls_total", "Polls of the source by this process", ["source"])
    errors = _counter("fil_source_errors_total", "Polls of the source that failed", ["source"])
    pushes = _counter(
        "fil_source_pushes_total", "Batches the source delivered (push ingest, WebSub, streams)", ["source"]
    )
    state = _gauge("fil_source_state", "1 for the source's current state, 0 for the others", ["source", "state"])
    running = _gauge("fil_source_running", "1 when this process polls the source (it holds its lease)", ["source"])
    success = _gauge(
        "fil_source_last_success_timestamp_seconds", "When the source last polled or delivered fine", ["source"]
    )
    collection = fil.collection
    for status in fil.statuses():
        sid = status.id
        counts = collection.counts if collection else None
        polls.set(counts.polls[sid] if counts else 0, sid)
        errors.set(counts.errors[sid] if counts else 0, sid)
        pushes.set(counts.pushes[sid] if counts else 0, sid)
        for each in SourceState:
            state.set(1 if status.state is each else 0, sid, str(each))
        runner = collection.runners.get(sid) if collection else None
        running.set(1 if runner is not None and runner.running else 0, sid)
        if status.last_success_at is not None:
            success.set(status.last_success_at.timestamp(), sid)
    return [polls, errors, pushes, state, running, success]


async def exposition(fil: Fil) -> str:
    ready = _gauge("fil_ready", "1 once Fil serves (as /healthz), 0 while starting or stopping")
    ready.set(1 if fil.ready else 0)
    # /proc/self/fd holds one entry per reader: listing ten thousand is best done off the loop
    process = await asyncio.to_thread(process_metrics)
    return render([ready, *hub_metrics(fil), *source_metrics(fil), *fil.metrics.metrics, *process])


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    token = fil.settings.metrics_token
    if token and not _authorized(request, token):
        return JSONResponse(
            {"error": "metrics: send Authorization: Bearer with the CURATION_METRICS_TOKEN value"},
            status_code=401,
            headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(await exposition(fil), media_type=CONTENT_TYPE, headers=NO_STORE)

"""The public JSON API: events, an event's timeline pages, source status, health."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from curation.auth import require_editor
from curation.codec import item_to_json
from curation.models import SourceState
from curation.service import Fil
from curation.store import DEFAULT_PAGE, MAX_PAGE
from curation.web.images import proxied


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def events(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    base = fil.settings.base_url
    return JSONResponse(
        {
            "events": [
                {
                    "slug": e.slug,
                    "title": e.title,
                    "language": e.language,
                    "timezone": e.timezone,
                    "order": str(e.order),
                    "status": str(e.status),
                    "url": f"{base}/events/{e.slug}",
                }
                for e in fil.public_events()
            ]
        }
    )


async def items(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    slug = request.path_params["slug"]
    event = fil.reader_event(slug)
    if event is None:
        return _error(404, f"no such event: {slug}")
    raw_limit = request.query_params.get("limit", str(DEFAULT_PAGE))
    try:
        limit = int(raw_limit)
    except ValueError:
        return _error(400, f"limit: not a number: {raw_limit[:40]!r}")
    if not 1 <= limit <= MAX_PAGE:
        return _error(400, f"limit: must be between 1 and {MAX_PAGE}")
    try:
        page = await fil.store.page(slug, limit=limit, before=request.query_params.get("before"), order=event.order)
    except ValueError as e:
        return _error(400, f"before: {e}")
    header = await fil.store.get_header(slug)
    return JSONResponse(
        {
            "items": [proxied(request, item_to_json(i)) for i in page.items],
            "seq": page.seq,
            "next": page.next,
            "header": header.to_json() if header and not header.empty else None,
        }
    )


async def sources(request: Request) -> Response:
    """Source status (DESIGN.md: editors only once editor accounts exist)."""
    await require_editor(request, csrf=False)
    fil: Fil = request.app.state.fil
    statuses = {s.id: s for s in fil.statuses()}
    listing = []
    for source in fil.config.sources.values():
        status = statuses.get(source.id)
        record: dict[str, object] = (
            status.to_json() if status else {"id": source.id, "kind": str(source.kind), "state": "pending"}
        )
        record.update(
            label=source.label,
            role=str(source.role),
            enabled=source.enabled,
            interval=source.interval,
            events=[e.slug for e in fil.config.events_of(source.id)],
        )
        listing.append(record)
    return JSONResponse({"sources": listing, "reload_error": fil.last_reload_error})


async def healthz(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    if not fil.ready:
        return JSONResponse({"status": "starting"}, status_code=503)
    problems: list[str] = []
    try:
        await asyncio.wait_for(fil.store.head("-healthz-"), 5)
        store = "ok"
    except Exception as e:
        store = f"error: {type(e).__name__}: {e}"
        problems.append("store")
    # reads can go on while writes fail (disk full, a lock held past the busy timeout): the store says so
    trouble = getattr(fil.store, "write_trouble", None)
    write_error = trouble() if callable(trouble) else None
    if store == "ok" and isinstance(write_error, str):
        store = f"error: writes failing: {write_error}"
        problems.append("store")
    failing = [s.id for s in fil.statuses() if s.state in (SourceState.ERROR, SourceState.BACKING_OFF)]
    if failing:
        problems.append("sources")
    cluster = None
    if fil.cluster is not None:
        # other processes' commits reach this one's readers only through this subscription
        cluster = "ok" if fil.cluster.connected else f"reconnecting: {fil.cluster.last_error or 'starting'}"
        if not fil.cluster.connected:
            problems.append("cluster")
    return JSONResponse(
        {
            "status": "degraded" if problems else "ok",
            "store": store,
            "cluster": cluster,
            "sources_failing": failing,
            "readers": fil.hub.readers(),
            "config_reload_error": fil.last_reload_error,
        }
    )

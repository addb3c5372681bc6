"""POST /api/ingest/{source_id}: signed batches from a newsroom's CMS, an agency wire, an X integration."""

from __future__ import annotations

import asyncio
import os
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from curation.collectors import PollResult
from curation.collectors.push import MAX_BODY, PushRejected, parse_batch, secrets_from, verify
from curation.models import SourceKind
from curation.service import Fil


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise PushRejected(413, f"body larger than {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PushRejected(413, f"body larger than {MAX_BODY} bytes")
    return bytes(body)


async def ingest(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    source_id = request.path_params["source_id"]
    source = fil.config.sources.get(source_id)
    if source is None or source.kind is not SourceKind.PUSH or not source.enabled:
        return _error(404, f"no enabled push source {source_id!r}")
    env = str(source.options.get("secret_env", ""))
    secrets = secrets_from(os.environ.get(env))
    if not secrets:
        return _error(503, f"{source_id}: the server has no secret: environment variable {env} is not set")
    try:
        body = await _body(request)
        verify(
            secrets, request.headers.get("x-fil-timestamp"), request.headers.get("x-fil-signature"), body, time.time()
        )
        # JSON and sanitizing up to 100 items is CPU work: keep it off the event loop
        entries = await asyncio.to_thread(parse_batch, body)
    except PushRejected as e:
        return _error(e.status, e.message)
    except ClientDisconnect:
        return _error(400, "body: the client went away")
    assert fil.collection is not None
    if not await fil.collection.deliver(source_id, PollResult(entries=entries)):
        return _error(503, f"{source_id}: not running (is it used by a live or draft event?)")
    return JSONResponse({"accepted": len(entries)}, status_code=202)

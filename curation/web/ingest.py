"""POST /api/ingest/{source_id}: signed batches from a newsroom's CMS, an agency wire, an X integration.

Replays: a signed request is good for MAX_SKEW seconds either side of its timestamp. Within that window
a captured request sent again would be taken again, and could put back a text a later batch corrected;
so each process remembers the requests it took (their timestamp and body, not the secret) until they
leave the window, and answers a repeat with `{"accepted": 0, "replayed": true}`, changing nothing. A
request the store failed to take is not remembered: the sender sends it again as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from curation.collectors import PollResult
from curation.collectors.push import MAX_BODY, MAX_SKEW, PushRejected, parse_batch, secrets_from, verify
from curation.errors import StoreError
from curation.models import SourceKind, utcnow
from curation.service import Fil

#: requests remembered at most (the oldest are forgotten first): memory stays bounded under a flood
MAX_REMEMBERED = 10_000


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _taken(request: Request) -> OrderedDict[bytes, float]:
    """This app's requests taken lately: fingerprint -> when their timestamp leaves the window."""
    taken: OrderedDict[bytes, float] | None = getattr(request.app.state, "pushes_taken", None)
    if taken is None:
        taken = request.app.state.pushes_taken = OrderedDict()
    return taken


def _remember(taken: OrderedDict[bytes, float], fingerprint: bytes, until: float, now: float) -> None:
    taken[fingerprint] = until
    while taken and (len(taken) > MAX_REMEMBERED or next(iter(taken.values())) < now):
        taken.popitem(last=False)


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
    timestamp = request.headers.get("x-fil-timestamp")
    try:
        body = await _body(request)
        verify(secrets, timestamp, request.headers.get("x-fil-signature"), body, time.time())
        assert timestamp is not None  # verify() refuses a request without one
        fingerprint = hashlib.sha256(f"{source_id}\0{timestamp.strip()}.".encode() + body).digest()
        if fingerprint in _taken(request):
            return JSONResponse({"accepted": 0, "replayed": True}, status_code=202)
        # JSON and sanitizing up to 100 items is CPU work: keep it off the event loop
        entries = await asyncio.to_thread(parse_batch, body)
    except PushRejected as e:
        return _error(e.status, e.message)
    except ClientDisconnect:
        return _error(400, "body: the client went away")
    assert fil.collection is not None
    try:
        delivered = await fil.collection.deliver(source_id, PollResult(entries=entries))
    except StoreError as e:
        # not stored, so not acknowledged: the sender sends the batch again (the same ids update nothing)
        status = fil.collection.statuses.get(source_id)
        if status is not None:
            status.last_error, status.last_error_at = f"store unavailable: {e}", utcnow()
        message = f"{source_id}: the store is unavailable, the batch was not (all) stored; send it again ({e})"
        response = _error(503, message)
        response.headers["Retry-After"] = "5"
        return response
    if not delivered:
        return _error(503, f"{source_id}: not running (is it used by a live or draft event?)")
    _remember(_taken(request), fingerprint, int(timestamp) + MAX_SKEW, time.time())
    return JSONResponse({"accepted": len(entries)}, status_code=202)

"""GET|POST /websub/{source_id}: the WebSub callback (a hub's verification of intent, and its deliveries).

The decisions live in curation/collectors/websub.py (WebSubManager); this module only speaks HTTP.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from curation.collectors.websub import WebSubManager
from curation.service import Fil

#: the challenge is echoed back verbatim: never let a browser read it as anything but text
_TEXT_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class _TooLarge(Exception):
    pass


def _manager(request: Request) -> WebSubManager | None:
    fil: Fil = request.app.state.fil
    return fil.websub


def _not_found(message: str) -> Response:
    return PlainTextResponse(message, status_code=404, headers=_TEXT_HEADERS)


async def verify(request: Request) -> Response:
    """Verification of intent (WebSub §5.3): echo hub.challenge for a request of ours, 404 otherwise."""
    manager = _manager(request)
    if manager is None:
        return _not_found("WebSub is off on this server (CURATION_PUBLIC_URL is not set)")
    source_id = request.path_params["source_id"]
    query = request.query_params
    mode, topic = query.get("hub.mode", ""), query.get("hub.topic", "")
    if not topic:
        return _not_found("hub.topic is missing")
    if mode == "denied":
        if await manager.denied(source_id, topic, query.get("hub.reason")):
            return PlainTextResponse("", headers=_TEXT_HEADERS)
        return _not_found(f"no subscription of {source_id} to that topic")
    challenge = query.get("hub.challenge", "")
    if not challenge:
        return _not_found("hub.challenge is missing")
    lease = query.get("hub.lease_seconds", "")
    lease_seconds = int(lease) if lease.isascii() and lease.isdigit() else None
    if await manager.verify_intent(source_id, mode, topic, lease_seconds):
        return PlainTextResponse(challenge, headers=_TEXT_HEADERS)
    return _not_found(f"{source_id} did not ask to {mode or '?'} that topic")


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


async def deliver(request: Request) -> Response:
    """A content distribution (WebSub §7): verified, parsed and stored by the manager.

    2xx even when the signature is bad or missing (the content is dropped and counted), so a forger
    learns nothing. A body over CURATION_MAX_BODY is answered 413 before its signature is even looked at:
    reading it would cost the memory the cap protects, and a 413 says nothing about the secret.
    """
    manager = _manager(request)
    if manager is None:
        return _not_found("WebSub is off on this server (CURATION_PUBLIC_URL is not set)")
    fil: Fil = request.app.state.fil
    limit = fil.settings.max_body
    try:
        body = await _body(request, limit)
    except _TooLarge:
        return PlainTextResponse(f"body larger than {limit} bytes", status_code=413, headers=_TEXT_HEADERS)
    except ClientDisconnect:
        return Response(status_code=400)
    status = await manager.receive(
        request.path_params["source_id"],
        body,
        request.headers.get("content-type"),
        request.headers.get("x-hub-signature"),
    )
    return Response(status_code=status)

"""Admins manage editors (list, create or reset, disable) and events (create, change, close): admin role only."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from curation.auth import create_editor, require_editor
from curation.errors import ConfigErrors, EventExists
from curation.models import Event, rfc3339
from curation.runtime_events import settings_of
from curation.service import Fil
from curation.store.accounts import accounts_of
from curation.web.editor_api import Refused, json_body, json_error

ROLES = ("admin", "editor")


async def list_editors(request: Request) -> Response:
    await require_editor(request, admin=True, csrf=False)
    fil: Fil = request.app.state.fil
    editors = await accounts_of(fil.store).list_editors()
    return JSONResponse(
        {
            "editors": [
                {"name": e.name, "role": e.role, "disabled": e.disabled, "created_at": rfc3339(e.created_at)}
                for e in editors
            ]
        }
    )


async def put_editor(request: Request) -> Response:
    """`{"password", "role"}`: create the editor, or reset its password and role (its sessions end)."""
    await require_editor(request, admin=True)
    fil: Fil = request.app.state.fil
    try:
        body = await json_body(request)
    except Refused as refused:
        return refused.response
    if not isinstance(body, dict):
        return json_error(400, "body: expected a JSON object")
    password, role = body.get("password"), body.get("role", "editor")
    if not isinstance(password, str):
        return json_error(400, "password: expected a string")
    if role not in ROLES:
        return json_error(400, "role: expected admin or editor")
    name = str(request.path_params["name"])
    try:
        created = await create_editor(accounts_of(fil.store), name, password, role)
    except ValueError as e:
        return json_error(400, str(e))
    return JSONResponse({"name": name, "role": role, "created": created}, status_code=201 if created else 200)


async def disable_editor(request: Request) -> Response:
    """`{"disabled": true|false}`: a disabled editor can neither log in nor use a token; its sessions end."""
    admin = await require_editor(request, admin=True)
    fil: Fil = request.app.state.fil
    try:
        body = await json_body(request)
    except Refused as refused:
        return refused.response
    disabled = body.get("disabled") if isinstance(body, dict) else None
    if not isinstance(disabled, bool):
        return json_error(400, "disabled: expected true or false")
    name = str(request.path_params["name"])
    if name == admin.name and disabled:
        return json_error(400, f"{name}: an admin cannot disable themselves")
    accounts = accounts_of(fil.store)
    if not await accounts.set_editor_disabled(name, disabled):
        return json_error(404, f"no such editor: {name}")
    if disabled:
        await accounts.delete_sessions_of(name)
    return JSONResponse({"name": name, "disabled": disabled})


def event_json(fil: Fil, event: Event) -> dict[str, Any]:
    """An event as admins see it: its keys, where it comes from, and what the desk changed (by whom, when)."""
    kept = fil.desk_settings(event.slug)
    return {
        "slug": event.slug,
        **settings_of(event),
        "sources": list(event.sources),
        "origin": fil.event_origin(event.slug),
        "desk": {"settings": kept.settings, "by": kept.updated_by, "at": kept.updated_at} if kept else None,
    }


async def create_event(request: Request) -> Response:
    """`POST /api/events` with the keys of a sources.yaml event (slug, title, language, timezone, order,
    status, keywords): 201 with the event; 409 when the slug is taken; 400 naming the wrong key."""
    admin = await require_editor(request, admin=True)
    fil: Fil = request.app.state.fil
    try:
        body = await json_body(request)
    except Refused as refused:
        return refused.response
    try:
        event = await fil.create_event(body, editor=admin.name)
    except EventExists as e:
        return json_error(409, str(e))
    except ConfigErrors as e:
        return json_error(400, "; ".join(str(error) for error in e.errors))
    return JSONResponse({"event": event_json(fil, event)}, status_code=201)


async def update_event(request: Request) -> Response:
    """`PATCH /api/events/{slug}` with the keys to change (`{"status": "closed"}`); null hands a key of a
    sources.yaml event back to the file."""
    admin = await require_editor(request, admin=True)
    fil: Fil = request.app.state.fil
    slug = str(request.path_params["slug"])
    try:
        body = await json_body(request)
        event = await fil.update_event(slug, body, editor=admin.name)
    except Refused as refused:
        return refused.response
    except ConfigErrors as e:
        return json_error(400, "; ".join(str(error) for error in e.errors))
    if event is None:
        return json_error(404, f"no such event: {slug}")
    return JSONResponse({"event": event_json(fil, event)})

"""Admins manage editors: list them, create or reset one, disable or re-enable one (admin role only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from curation.auth import create_editor, require_editor
from curation.models import rfc3339
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

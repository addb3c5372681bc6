"""The editor desk's doors: login, logout, the desk's event list, and how auth errors are answered.

Login CSRF: the login form carries no token (there is no session yet to tie one to). A cross-site
page could still post someone's browser into the attacker's account, so the POST must come from this
site: an `Origin` header (every current browser sends one on a POST) must be this server's origin or
CURATION_PUBLIC_URL's, and `Sec-Fetch-Site`, when sent, must not say cross-site. A request with
neither header comes from no browser (curl, scripts), where login CSRF is no threat.
"""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from curation.auth import (
    MIN_PASSWORD,
    AuthError,
    LoginRefused,
    LoginThrottled,
    authenticate,
    check_csrf,
    clear_session_cookie,
    require_editor,
    safe_next,
    set_session_cookie,
)
from curation.service import Fil
from curation.store.accounts import accounts_of

LOGIN_PATH = "/editor/login"
#: the login form is a name, a password and a path: anything bigger is not one
MAX_LOGIN_BODY = 8 * 1024

#: desk pages hold a CSRF token and private state: never cached, never framed (clickjacking)
DESK_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}


def _desk_page(request: Request, template: str, context: dict[str, object], status: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context, status_code=status, headers=DESK_HEADERS)


def _is_desk_path(path: str) -> bool:
    return path == "/editor" or path.startswith("/editor/")


def login_url(next_path: str) -> str:
    return f"{LOGIN_PATH}?{urllib.parse.urlencode({'next': next_path})}"


async def auth_error(request: Request, exc: Exception) -> Response:
    """AuthError from require_editor: a desk page sends the browser to the login, the API answers JSON."""
    assert isinstance(exc, AuthError)
    headers = dict(exc.headers or {})
    if _is_desk_path(request.url.path):
        if exc.status_code == 401 and request.method in {"GET", "HEAD"}:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(login_url(target), status_code=303, headers={"Cache-Control": "no-store"})
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers={**headers, **DESK_HEADERS})
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)


def _same_origin(request: Request) -> bool:
    fil: Fil = request.app.state.fil
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {f"{request.url.scheme}://{request.url.netloc}"}
    if fil.settings.public_url:
        public = urllib.parse.urlsplit(fil.settings.public_url)
        allowed.add(f"{public.scheme}://{public.netloc}")
    return origin in allowed


async def _login_form(request: Request) -> dict[str, str] | None:
    """The urlencoded login form, or None when it is larger than any login form."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY:
            return None
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


async def login_page(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    editor = await authenticate(request)
    if editor is not None and editor.via == "session":
        return RedirectResponse(next_path, status_code=303)
    return _desk_page(request, "editor/login.html", {"next": next_path, "name": "", "error": None})


async def login(request: Request) -> Response:
    if not _same_origin(request):
        return PlainTextResponse("login refused: the form was posted from another site", 403, headers=DESK_HEADERS)
    form = await _login_form(request)
    if form is None:
        return PlainTextResponse(f"login form larger than {MAX_LOGIN_BODY} bytes", 413)
    name, password = form.get("name", "").strip(), form.get("password", "")
    next_path = safe_next(form.get("next"))
    context: dict[str, object] = {"next": next_path, "name": name}
    fil: Fil = request.app.state.fil
    try:
        session = await fil.auth.login(name, password, address=request.client.host if request.client else None)
    except LoginThrottled as e:
        response = _desk_page(request, "editor/login.html", {**context, "error": str(e)}, status=429)
        response.headers["Retry-After"] = str(int(e.retry_after) + 1)
        return response
    except LoginRefused as e:
        response = _desk_page(request, "editor/login.html", {**context, "error": str(e)}, status=401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="fil"'
        return response
    response = RedirectResponse(next_path, status_code=303, headers={"Cache-Control": "no-store"})
    set_session_cookie(response, request, session)
    return response


async def logout(request: Request) -> Response:
    """Ends the session on the server (the cookie alone is then worth nothing) and clears the cookie."""
    editor = await authenticate(request)
    if editor is not None:
        await check_csrf(request, editor)
        fil: Fil = request.app.state.fil
        await fil.auth.logout(editor)
    response = RedirectResponse(LOGIN_PATH, status_code=303, headers={"Cache-Control": "no-store"})
    clear_session_cookie(response, request)
    return response


async def index(request: Request) -> Response:
    """The desk's front page: every event (drafts included), each a link to its desk; for admins, the forms
    that create events, change their status and manage editors (static/admin.js)."""
    editor = await require_editor(request, csrf=False)
    fil: Fil = request.app.state.fil
    events = list(fil.config.events)
    editors = await accounts_of(fil.store).list_editors() if editor.role == "admin" else []
    context = {
        "editor": editor,
        "events": events,
        "origins": {event.slug: fil.event_origin(event.slug) for event in events},
        "editors": editors,
        "min_password": MIN_PASSWORD,
    }
    return _desk_page(request, "editor/index.html", context)


async def event_desk(request: Request) -> Response:
    """One event's desk: the queue and the timeline side by side, live (static/desk.js)."""
    editor = await require_editor(request, csrf=False)
    fil: Fil = request.app.state.fil
    event = fil.config.event(str(request.path_params["slug"]))
    if event is None:
        return PlainTextResponse(f"no such event: {request.path_params['slug']}", status_code=404)
    return _desk_page(request, "editor/event.html", {"editor": editor, "event": event})

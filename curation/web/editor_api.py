"""The editor API: the moderation queue, actions on items, the audit trail (bearer token or desk session)."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from curation import paste, posts
from curation.auth import Editor, authenticate, require_editor
from curation.codec import item_to_editor_json
from curation.collectors import json_input
from curation.errors import ConfigErrors, ItemNotFound, StoreError, VersionConflict
from curation.header import Header, HeaderError, parse_header
from curation.models import Item, ItemKind, ItemState, rfc3339, utcnow
from curation.posts import Post, PostError, validate
from curation.service import Fil
from curation.timeline import ACTIONS
from curation.web.images import proxied
from curation.web.live import CLOSE_UNKNOWN_EVENT, QueueSink, TransportSink
from curation.web.wsproto import SCOPE_KEY, FilWebSocketProtocol

log = logging.getLogger("curation.web")

CLOSE_UNAUTHENTICATED = 4401
#: the source label of editors' own posts (the author is the editor)
NEWSROOM_LABEL = "Live desk"

MAX_ACTION_BODY = 16 * 1024


def json_error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


#: seconds a client is asked to wait before sending again while the store is away
STORE_RETRY_AFTER = 5


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """StoreError out of any request (disk full, the file locked, Redis away): 503 naming the store's
    failure, never a bare 500. The failed write was not saved, so the same request can simply be sent again.
    Websockets keep the default handling (the connection closes)."""
    if request.scope["type"] != "http" or not isinstance(exc, StoreError):
        raise exc
    log.warning("%s %s: the store is unavailable: %s", request.method, request.url.path, exc)
    message = f"the store is unavailable, so this was not saved; try again shortly ({exc})"
    headers = {"Retry-After": str(STORE_RETRY_AFTER), "Cache-Control": "no-store"}
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=503, headers=headers)
    return PlainTextResponse(message, status_code=503, headers=headers)


def _event(request: Request) -> str | None:
    fil: Fil = request.app.state.fil
    slug = str(request.path_params["slug"])
    return slug if fil.config.event(slug) is not None else None


class Refused(Exception):
    """A request turned down before the handler's own work; carries the answer."""

    def __init__(self, response: Response) -> None:
        self.response = response


Handler = Callable[[Request, Editor, str], Awaitable[Response]]


def editor_route(*, csrf: bool = True) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """An editor-only route on one event: the editor is checked (CSRF for desk sessions unless `csrf=False`,
    for reads), the event must exist, and a Refused answer short-cuts the handler."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def route(request: Request) -> Response:
            editor = await require_editor(request, csrf=csrf)
            slug = _event(request)
            if slug is None:
                return json_error(404, f"no such event: {request.path_params['slug']}")
            try:
                return await handler(request, editor, slug)
            except Refused as refused:
                return refused.response

        return route

    return wrap


async def json_body(request: Request, *, limit: int = MAX_ACTION_BODY) -> object:
    """The request's JSON body, or Refused: 413 over `limit`, 400 when it is not JSON."""
    raw = await request.body()
    if len(raw) > limit:
        raise Refused(json_error(413, f"body larger than {limit} bytes"))
    try:
        return json_input.loads(raw or b"{}")
    except ValueError as e:
        raise Refused(json_error(400, f"body: not JSON ({e})")) from None


@editor_route(csrf=False)
async def queue(request: Request, editor: Editor, slug: str) -> Response:
    fil: Fil = request.app.state.fil
    return JSONResponse({"items": [item_to_editor_json(i) for i in await fil.store.queue(slug)]})


@editor_route(csrf=False)
async def audit(request: Request, editor: Editor, slug: str) -> Response:
    fil: Fil = request.app.state.fil
    return JSONResponse({"entries": [entry.to_json() for entry in await fil.store.audit(slug, limit=1000)]})


def _field(body: dict[str, object], key: str, kind: type) -> object:
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
        raise ValueError(f"{key}: expected {'a number' if kind is int else 'a string'}")
    return value


@editor_route()
async def action(request: Request, editor: Editor, slug: str) -> Response:
    body = await json_body(request)
    try:
        if not isinstance(body, dict):
            raise ValueError("body: expected a JSON object")
        name = _field(body, "action", str)
        if name not in ACTIONS:
            raise ValueError(f"action: expected one of {', '.join(ACTIONS)}")
        label, text, version = _field(body, "label", str), _field(body, "text", str), _field(body, "version", int)
    except ValueError as e:
        return json_error(400, str(e))
    fil: Fil = request.app.state.fil
    try:
        item, change = await fil.store.act(
            slug,
            str(request.path_params["item_id"]),
            str(name),
            editor=editor.name,
            label=label if isinstance(label, str) else None,
            text=text if isinstance(text, str) else None,
            version=version if isinstance(version, int) else None,
        )
    except ItemNotFound as e:
        return json_error(404, str(e))
    except VersionConflict as e:
        current = e.current
        assert isinstance(current, Item)
        return json_error(409, str(e), item=proxied(request, item_to_editor_json(current)))
    except ValueError as e:
        return json_error(400, str(e))
    return JSONResponse({"item": proxied(request, item_to_editor_json(item)), "seq": change.seq if change else None})


DESK_STATES = tuple(state for state in ItemState if state is not ItemState.QUEUED)
DESK_ITEMS = 500


@editor_route(csrf=False)
async def desk_state(request: Request, editor: Editor, slug: str) -> Response:
    """What a desk loads after its websocket says hello: the newest items in every state, and their seq."""
    fil: Fil = request.app.state.fil
    # the queue apart: a spam burst of queued posts must not push the timeline off the desk
    seq, queued = await fil.store.recent(slug, states=(ItemState.QUEUED,), limit=DESK_ITEMS)
    _, others = await fil.store.recent(slug, states=DESK_STATES, limit=DESK_ITEMS)
    items = queued + others
    header = await fil.store.get_header(slug)
    return JSONResponse(
        {
            "seq": seq,
            "items": [proxied(request, item_to_editor_json(i)) for i in items],
            "header": (header or Header()).to_json(),
            "sources": await _sources(fil, slug),
        }
    )


@editor_route()
async def source_action(request: Request, editor: Editor, slug: str) -> Response:
    """Approve or reject everything one source has in the queue (a spam burst on a hashtag)."""
    body = await json_body(request)
    name = body.get("action") if isinstance(body, dict) else None
    if name not in ("approve", "reject"):
        return json_error(400, "action: expected approve or reject")
    fil: Fil = request.app.state.fil
    source_id = str(request.path_params["source_id"])
    changed = 0
    for item in await fil.store.queue(slug, limit=1000):
        if item.source_id != source_id:
            continue
        try:
            _, change = await fil.store.act(slug, item.id, str(name), editor=editor.name, version=item.version)
        except (ItemNotFound, VersionConflict):
            continue  # another editor got there first: theirs stands
        changed += change is not None
    return JSONResponse({"changed": changed})


def _same_origin(websocket: WebSocket) -> bool:
    """Browsers send cookies on cross-site websockets: only this site's pages may open a desk socket."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser (a script with a bearer token)
    host = websocket.headers.get("host", "")
    fil: Fil = websocket.app.state.fil
    allowed = {f"http://{host}", f"https://{host}", fil.settings.base_url}
    return origin.rstrip("/") in allowed


async def desk_live(websocket: WebSocket) -> None:
    fil: Fil = websocket.app.state.fil
    await websocket.accept()
    editor = await authenticate(websocket)
    if editor is None or not _same_origin(websocket):
        await websocket.close(CLOSE_UNAUTHENTICATED, "log in at /editor/login")
        return
    slug = str(websocket.path_params["slug"])
    if fil.config.event(slug) is None:
        await websocket.close(CLOSE_UNKNOWN_EVENT, f"no such event: {slug}"[:120])
        return
    connection = websocket.scope.get("extensions", {}).get(SCOPE_KEY)
    limit = fil.settings.reader_buffer * 4  # a desk loads more than a reader
    sink: TransportSink | QueueSink = (
        TransportSink(connection, limit)
        if isinstance(connection, FilWebSocketProtocol)
        else QueueSink(websocket, limit)
    )
    desk = websocket.app.state.images.sink(sink)  # CURATION_IMAGE_PROXY: frames carry signed image paths
    try:
        if await fil.hub.join_editor(slug, desk):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
    except WebSocketDisconnect:
        pass
    finally:
        fil.hub.leave_editor(slug, desk)
        if isinstance(sink, QueueSink):
            sink.close()


def _post_from(body: object, *, require_text: bool = True) -> tuple[Post, int | None]:
    if not isinstance(body, dict):
        raise PostError("body: expected a JSON object")
    fields: dict[str, str | None] = {}
    for key in ("text", "image_url", "image_alt", "link", "key_moment", "publish_at"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise PostError(f"{key}: expected a string")
        fields[key] = value
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise PostError("version: expected a number")
    when = None
    if fields["publish_at"]:
        try:
            when = datetime.fromisoformat(fields["publish_at"].replace("Z", "+00:00"))
        except ValueError:
            raise PostError("publish_at: not an RFC 3339 date") from None
        if when.tzinfo is None:
            raise PostError("publish_at: give a time zone (Z or +02:00)")
        try:
            when = when.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 pushed out of range by its offset
            raise PostError("publish_at: out of range") from None
    post = Post(
        text=fields["text"] or "",
        image_url=fields["image_url"],
        image_alt=fields["image_alt"],
        link=fields["link"],
        key_moment=fields["key_moment"],
        publish_at=when,
    )
    return validate(post), version


@editor_route()
async def create_post(request: Request, editor: Editor, slug: str) -> Response:
    fil: Fil = request.app.state.fil
    try:
        post, _ = _post_from(await json_body(request))
    except PostError as e:
        return json_error(400, str(e))
    item = posts.new_item(
        post, event=slug, editor=editor.name, key=secrets.token_urlsafe(9), label=NEWSROOM_LABEL, now=utcnow()
    )
    await fil.store.add_post(item, editor=editor.name)
    return JSONResponse({"item": proxied(request, item_to_editor_json(item))}, status_code=201)


@editor_route()
async def correct_post(request: Request, editor: Editor, slug: str) -> Response:
    fil: Fil = request.app.state.fil
    try:
        post, version = _post_from(await json_body(request))
    except PostError as e:
        return json_error(400, str(e))
    current = await fil.store.get_item(slug, str(request.path_params["item_id"]))
    if current is not None and current.kind is ItemKind.POST and current.source_id == posts.DESK_SOURCE:
        return json_error(400, f"{current.id}: a pasted post keeps its author's words (hide or delete it instead)")
    try:
        item, change = await fil.store.edit_post(
            slug, str(request.path_params["item_id"]), post, editor=editor.name, version=version
        )
    except ItemNotFound as e:
        return json_error(404, str(e))
    except VersionConflict as e:
        assert isinstance(e.current, Item)
        return json_error(409, str(e), item=proxied(request, item_to_editor_json(e.current)))
    return JSONResponse({"item": proxied(request, item_to_editor_json(item)), "seq": change.seq})


# -- the header block and source mutes (issue 4) -----------------------------------------------

MAX_HEADER_BODY = 64 * 1024
#: the longest mute an editor can set: past a day it is a config change, not a moment's hold
MAX_MUTE_MINUTES = 24 * 60


@editor_route(csrf=False)
async def get_header(request: Request, editor: Editor, slug: str) -> Response:
    fil: Fil = request.app.state.fil
    return JSONResponse({"header": ((await fil.store.get_header(slug)) or Header()).to_json()})


@editor_route()
async def put_header(request: Request, editor: Editor, slug: str) -> Response:
    try:
        header, version = parse_header(await json_body(request, limit=MAX_HEADER_BODY))
    except HeaderError as e:
        return json_error(400, str(e))
    fil: Fil = request.app.state.fil
    if version is None:
        current = await fil.store.get_header(slug)
        version = current.version if current else 0  # no version given: last write wins
    try:
        saved = await fil.store.set_header(slug, replace(header, version=version), editor=editor.name)
    except VersionConflict as e:
        assert isinstance(e.current, Header)
        return json_error(409, str(e), header=e.current.to_json())
    body = saved.to_json()
    await fil.header_changed(slug, body)
    return JSONResponse({"header": body})


async def _sources(fil: Fil, slug: str) -> list[dict[str, object]]:
    event = fil.config.event(slug)
    muted = await fil.store.mutes(slug)
    listing: list[dict[str, object]] = []
    statuses = {s.id: s for s in fil.statuses()}
    for source_id in event.sources if event else ():
        source = fil.config.sources.get(source_id)
        until = muted.get(source_id)
        status = statuses.get(source_id)
        listing.append(
            {
                "id": source_id,
                "label": source.label if source else source_id,
                "kind": str(source.kind) if source else None,
                "muted_until": rfc3339(until) if until else None,
                # where it comes from, and its health in plain words
                "origin": fil.origin(source_id),
                "state": str(status.state) if status else "pending",
                "last_error": status.last_error if status else None,
                "failing_since": rfc3339(status.last_error_at) if status and status.error_count else None,
                "last_success_at": rfc3339(status.last_success_at) if status else None,
                "items_seen": status.items_seen if status else 0,
            }
        )
    return listing


@editor_route()
async def add_source(request: Request, editor: Editor, slug: str) -> Response:
    """Add a source of any kind to this running event: the keys of a sources.yaml source, as JSON."""
    fil: Fil = request.app.state.fil
    body = await json_body(request)
    if not isinstance(body, dict):
        return json_error(400, "body: expected an object with the keys of a sources.yaml source")
    try:
        source = await fil.add_source(slug, body, editor=editor.name)
    except ConfigErrors as e:
        return json_error(400, "; ".join(str(error) for error in e.errors))
    listing = {s["id"]: s for s in await _sources(fil, slug)}
    return JSONResponse({"source": listing.get(source.id, {"id": source.id})}, status_code=201)


@editor_route()
async def remove_source(request: Request, editor: Editor, slug: str) -> Response:
    """Remove a source the desk added (its items stay); sources.yaml's own are edited in the file."""
    fil: Fil = request.app.state.fil
    source_id = str(request.path_params["source_id"])
    if fil.origin(source_id) != "desk":
        return json_error(400, f"{source_id}: declared in sources.yaml: remove it there (or mute it here)")
    if not await fil.remove_source(slug, source_id, editor=editor.name):
        return json_error(404, f"no source {source_id!r} added to {slug} from the desk")
    return JSONResponse({"removed": source_id})


@editor_route()
async def mute(request: Request, editor: Editor, slug: str) -> Response:
    """Hold a source's new items in the queue for `minutes` (0 unmutes); what it already sent stays."""
    fil: Fil = request.app.state.fil
    source_id = str(request.path_params["source_id"])
    event = fil.config.event(slug)
    if event is None or source_id not in event.sources:
        return json_error(404, f"no source {source_id!r} in event {slug}")
    body = await json_body(request)
    minutes = body.get("minutes") if isinstance(body, dict) else None
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not 0 <= minutes <= MAX_MUTE_MINUTES:
        return json_error(400, f"minutes: expected a number from 0 (unmute) to {MAX_MUTE_MINUTES}")
    now = utcnow()
    until = now + timedelta(minutes=minutes) if minutes > 0 else None
    await fil.store.mute_source(slug, source_id, until, editor=editor.name, now=now)
    return JSONResponse({"source_id": source_id, "muted_until": rfc3339(until) if until else None})


@editor_route()
async def paste_post(request: Request, editor: Editor, slug: str) -> Response:
    """A post pasted by URL becomes an item credited to its author; pasting the same URL again finds the same item."""
    body = await json_body(request)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str):
        return json_error(400, "url: expected a string")
    fil: Fil = request.app.state.fil
    try:
        entry = await paste.resolve(url, fetcher=fil.fetcher, settings=fil.settings)
    except paste.PasteError as e:
        return json_error(e.status, str(e))
    existing = await fil.store.get_item(slug, posts.pasted_id(entry.key))
    if existing is not None:
        return JSONResponse({"item": item_to_editor_json(existing)})
    item = posts.pasted_item(entry, event=slug, now=utcnow())
    await fil.store.add_post(item, editor=editor.name)
    return JSONResponse({"item": item_to_editor_json(item)}, status_code=201)

"""Server-rendered pages: the event list and an event's live page (readable without JavaScript)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from curation.codec import dumps
from curation.service import Fil
from curation.web.i18n import strings

PAGE_SIZE = 50


def local_time(value: datetime, timezone: str, fmt: str = "%H:%M") -> str:
    return value.astimezone(ZoneInfo(timezone)).strftime(fmt)


def setup(templates: Jinja2Templates) -> None:
    env: Environment = templates.env
    env.filters["local_time"] = local_time


async def index(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "index.html", {"events": fil.public_events(), "t": strings("en")})


async def event_page(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    slug = request.path_params["slug"]
    event = fil.reader_event(slug)
    if event is None:
        raise HTTPException(404, f"no such event: {slug}")
    page = await fil.store.page(slug, limit=PAGE_SIZE, order=event.order)
    header = await fil.store.get_header(slug)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "event.html",
        {
            "event": event,
            "page": page,
            "header": header.to_json() if header and not header.empty else None,
            "t": strings(event.language),
            "strings_json": dumps(strings(event.language)),
        },
    )

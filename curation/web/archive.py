"""An event's timeline as a download that outlives Fil: GET /events/{slug}/archive.html (one self-contained
page: inline CSS, no script, nothing fetched but the images) and /events/{slug}/archive.json.

Both hold every published item in display order, with the event and its header block. Offered for any
event readers may see: after it closed, or as a snapshot while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.templating import Jinja2Templates

from curation.codec import dumps, item_to_json
from curation.header import Header
from curation.models import Event, Item, rfc3339
from curation.service import Fil
from curation.store import MAX_PAGE
from curation.web.i18n import strings

#: the archive's own words (role labels come from the reader page's strings)
STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "archive": "Archive",
        "archived_from": "Archived timeline of",
        "items": "{n} posts",
        "one_item": "1 post",
        "last_update": "last update",
        "times_in": "Times in {tz}.",
        "empty": "No post was published.",
        "key_facts": "Key facts",
        "pinned": "Pinned",
        "updated": "updated",
        "content_warning": "Content warning",
        "reposted_by": "Shared by",
        "note": "Editor's note",
        "media": "Media",
        "original": "Original",
        "made_by": "Saved by Fil.",
    },
    "fr": {
        "archive": "Archive",
        "archived_from": "Archive du fil de",
        "items": "{n} messages",
        "one_item": "1 message",
        "last_update": "dernière mise à jour",
        "times_in": "Heures de {tz}.",
        "empty": "Aucun message publié.",
        "key_facts": "L’essentiel",
        "pinned": "Épinglé",
        "updated": "mis à jour",
        "content_warning": "Avertissement",
        "reposted_by": "Partagé par",
        "note": "Note de la rédaction",
        "media": "Média",
        "original": "Original",
        "made_by": "Enregistré par Fil.",
    },
}


def archive_strings(language: str) -> dict[str, str]:
    words = dict(strings(language))  # role labels
    words.update(STRINGS.get(language, STRINGS["en"]))
    return words


async def published_items(fil: Fil, event: Event) -> tuple[int, list[Item]]:
    """Every published item in display order, and the seq of the first page read."""
    page = await fil.store.page(event.slug, limit=MAX_PAGE, order=event.order)
    seq, items = page.seq, list(page.items)
    while page.next is not None:
        page = await fil.store.page(event.slug, limit=MAX_PAGE, before=page.next, order=event.order)
        items.extend(page.items)
    return seq, items


def event_json(event: Event, base: str) -> dict[str, Any]:
    return {
        "slug": event.slug,
        "title": event.title,
        "language": event.language,
        "timezone": event.timezone,
        "order": str(event.order),
        "status": str(event.status),
        "url": f"{base}/events/{event.slug}",
    }


def archive_json(event: Event, header: Header | None, seq: int, items: list[Item], base: str) -> dict[str, Any]:
    return {
        "event": event_json(event, base),
        "header": header.to_json() if header and not header.empty else None,
        "seq": seq,
        "items": [item_to_json(i) for i in items],
    }


def _clock(timezone: str) -> Callable[[datetime], str]:
    zone = ZoneInfo(timezone)

    def when(value: datetime) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return when


async def _load(request: Request) -> tuple[Fil, Event, Header | None, int, list[Item]] | Response:
    fil: Fil = request.app.state.fil
    slug = request.path_params["slug"]
    event = fil.reader_event(slug)
    if event is None:
        return PlainTextResponse(f"no such event: {slug}"[:200], status_code=404)
    seq, items = await published_items(fil, event)
    return fil, event, await fil.store.get_header(slug), seq, items


async def archive_json_file(request: Request) -> Response:
    loaded = await _load(request)
    if isinstance(loaded, Response):
        return loaded
    fil, event, header, seq, items = loaded
    record = archive_json(event, header, seq, items, fil.settings.base_url)
    # a long event makes a big document: encode it off the event loop
    body = await asyncio.to_thread(lambda: dumps(record).encode("utf-8", "replace"))
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{event.slug}-archive.json"'},
    )


async def archive_html_file(request: Request) -> Response:
    loaded = await _load(request)
    if isinstance(loaded, Response):
        return loaded
    fil, event, header, seq, items = loaded
    templates: Jinja2Templates = request.app.state.templates
    template = templates.env.get_template("archive.html")
    latest = max((i.updated_at or i.published_at for i in items), default=None)
    context = {
        "event": event,
        "page_url": f"{fil.settings.base_url}/events/{event.slug}",
        # the file is read elsewhere: proxied images (CURATION_IMAGE_PROXY) keep Fil's absolute URL
        "image_base": fil.settings.base_url,
        "header": header if header and not header.empty else None,
        "items": items,
        "seq": seq,
        "latest": latest,
        "t": archive_strings(event.language),
        "when": _clock(event.timezone),
        "rfc3339": rfc3339,
    }
    body = await asyncio.to_thread(template.render, context)
    return Response(
        body.encode("utf-8", "replace"),
        media_type="text/html",
        headers={"Content-Disposition": f'attachment; filename="{event.slug}-archive.html"'},
    )

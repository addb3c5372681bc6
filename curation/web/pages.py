"""Server-rendered pages: the event list and an event's reader page (readable without JavaScript).

The reader page takes `?roles=a,b` (a role filter), `?before=CURSOR` (an older page, the "load older"
link) and `?item=ID` (the page around one published item: where a permalink to an old item lands).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from curation.codec import dumps
from curation.models import Event, EventStatus, Item, Order, Role, rfc3339
from curation.sanitize import html_to_text
from curation.service import Fil
from curation.store import MAX_PAGE
from curation.web.i18n import strings
from curation.web.images import ImageProxy

PAGE_SIZE = 50
#: a role-filtered page reads at most this many store pages before it offers "load older" instead
SCAN_PAGES = 20
#: a permalink to an old item opens with this many newer items above it, not at the very top edge
CONTEXT = 3
#: how many store pages (of MAX_PAGE) a permalink looks through for its item
AROUND_PAGES = 100
#: the latest items described in the JSON-LD (liveBlogUpdate)
LD_UPDATES = 20
HEADLINE = 110
LD_BODY = 300
ROLES = tuple(Role)
_YOUTUBE = re.compile(
    r"^https?://(?:(?:www\.|m\.)?youtube(?:-nocookie)?\.com/(?:watch\?(?:[^#]*&)?v=|embed/|shorts/|live/)"
    r"|youtu\.be/)([A-Za-z0-9_-]{11})(?:[?&#/]|$)"
)
_CLOCK = {"fr": "%d/%m %H:%M", "en": "%d %b %H:%M"}
_FULL = {"fr": "%d/%m/%Y %H:%M %Z", "en": "%d %b %Y, %H:%M %Z"}


def local_time(value: datetime, timezone: str, fmt: str = "%H:%M") -> str:
    return value.astimezone(ZoneInfo(timezone)).strftime(fmt)


def short_time(value: datetime, timezone: str, lang: str = "en") -> str:
    """The clock time for today's items, the day and time for older ones (live.js then shows "3 min ago")."""
    zone = ZoneInfo(timezone)
    local = value.astimezone(zone)
    if local.date() == datetime.now(zone).date():
        return local.strftime("%H:%M")
    return local.strftime(_CLOCK.get(lang, _CLOCK["en"]))


def full_time(value: datetime, timezone: str, lang: str = "en") -> str:
    """The absolute date and time, shown on hover and focus and read by screen readers."""
    return value.astimezone(ZoneInfo(timezone)).strftime(_FULL.get(lang, _FULL["en"]))


def youtube_id(url: str | None) -> str | None:
    """The video id of a YouTube watch, short, embed or youtu.be URL (played through youtube-nocookie.com)."""
    match = _YOUTUBE.match(url or "")
    return match.group(1) if match else None


def script_json(value: Any) -> str:
    """JSON safe inside a <script> data block: no `</script>`, `<!--` or `]]>` can close or bend it."""
    return dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def setup(templates: Jinja2Templates, images: ImageProxy | None = None) -> None:
    env: Environment = templates.env
    # `{{ url | img }}`, `{{ html | img_html | safe }}`: signed /img/ URLs when CURATION_IMAGE_PROXY is on
    env.filters["img"] = images.url if images is not None else _same
    env.filters["img_html"] = images.html if images is not None else _same
    env.globals["image_proxy"] = images is not None and images.enabled
    env.filters["local_time"] = local_time
    env.filters["short_time"] = short_time
    env.filters["full_time"] = full_time
    env.filters["rfc3339"] = rfc3339
    env.globals["youtube_id"] = youtube_id


def _same(value: str | None, base: str = "") -> str | None:
    return value


def parse_roles(raw: str | None) -> tuple[Role, ...]:
    """`journalist,athlete` -> roles in the page's order; ValueError naming an unknown role."""
    wanted: set[Role] = set()
    for part in (raw or "").split(","):
        name = part.strip().lower()
        if not name:
            continue
        try:
            wanted.add(Role(name))
        except ValueError:
            raise ValueError(
                f"roles: unknown role {part.strip()[:40]!r} (one of {', '.join(str(r) for r in ROLES)})"
            ) from None
    return tuple(r for r in ROLES if r in wanted)


@dataclass(slots=True)
class View:
    """What the timeline shows: items in display order, the seq they reflect, the cursor for older ones."""

    items: list[Item]
    seq: int
    next: str | None
    #: the view reaches the live edge (where new items arrive); a page of older items does not
    edge: bool = True
    #: ?item= named no published item
    missing: bool = False


@dataclass(slots=True)
class Summary:
    """The latest items of an event and when its coverage started, read once per change of the event."""

    seq: int
    recent: list[Item]
    first_at: datetime | None
    moments: list[Item] = field(default_factory=list)


async def _filtered(fil: Fil, event: Event, roles: tuple[Role, ...], before: str | None) -> View:
    items: list[Item] = []
    seq: int | None = None
    cursor = before
    # a rare role may need several store pages to fill one; the store filters nothing by role
    for _ in range(SCAN_PAGES if roles else 1):
        page = await fil.store.page(event.slug, limit=PAGE_SIZE, before=cursor, order=event.order)
        if seq is None:
            seq = page.seq  # the first read's: anything later reaches the reader through `since`
        items.extend(i for i in page.items if not roles or i.role in roles)
        cursor = page.next
        if cursor is None or len(items) >= PAGE_SIZE:
            break
    edge = cursor is None if event.order is Order.OLDEST else before is None
    return View(items=items, seq=seq or 0, next=cursor, edge=edge)


async def _around(fil: Fil, event: Event, item_id: str) -> View | None:
    """The page where a published item sits, opening a few items above it; None when it is not published."""
    item = await fil.store.get_item(event.slug, item_id)
    if item is None or not item.visible:
        return None
    if item.pinned:
        return await _filtered(fil, event, (), None)
    store, slug, order = fil.store, event.slug, event.order
    cursor: str | None = None
    for _ in range(AROUND_PAGES):
        page = await store.page(slug, limit=MAX_PAGE, before=cursor, order=order)
        ids = [i.id for i in page.items if not i.pinned]
        if item_id in ids:
            index = ids.index(item_id)
            if cursor is None and index < PAGE_SIZE:
                return await _filtered(fil, event, (), None)
            start = max(0, index - CONTEXT)
            begin = cursor
            if start:
                # the store's cursors are opaque: the one just above the window comes from a short read
                begin = (await store.page(slug, limit=start, before=cursor, order=order)).next
            window = await store.page(slug, limit=PAGE_SIZE, before=begin, order=order)
            items = [i for i in window.items if not i.pinned]
            edge = order is Order.OLDEST and window.next is None
            return View(items=items, seq=window.seq, next=window.next, edge=edge)
        cursor = page.next
        if cursor is None:
            break
    # published but beyond what a permalink looks through: the item alone
    return View(items=[item], seq=await store.head(slug), next=None, edge=False)


async def _summary(request: Request, fil: Fil, event: Event, seq: int) -> Summary:
    cache: dict[str, Summary] | None = getattr(request.app.state, "reader_summaries", None)
    if cache is None:
        cache = request.app.state.reader_summaries = {}
    hit = cache.get(event.slug)
    if hit is not None and hit.seq == seq:
        return hit
    newest = await fil.store.page(event.slug, limit=MAX_PAGE, order=Order.NEWEST)
    oldest = await fil.store.page(event.slug, limit=1, order=Order.OLDEST)
    summary = Summary(
        seq=newest.seq,
        recent=newest.items,
        first_at=min((i.sort_at for i in oldest.items), default=None),
        moments=sorted((i for i in newest.items if i.key_moment), key=lambda i: (i.sort_at, i.id)),
    )
    cache[event.slug] = summary
    return summary


def _roles_of(fil: Fil, event: Event) -> list[Role]:
    """The roles a reader can filter on: those of the event's sources, and the newsroom's own posts."""
    present = {Role.EDITORIAL}
    for source_id in event.sources:
        source = fil.config.sources.get(source_id)
        if source is not None:
            present.add(source.role)
    return [r for r in ROLES if r in present]


def _query(roles: tuple[Role, ...] | list[Role], **extra: str) -> str:
    params = {k: v for k, v in extra.items() if v}
    if roles:
        params["roles"] = ",".join(str(r) for r in roles)
    return "?" + urlencode(params, safe=",") if params else ""


def _chips(fil: Fil, event: Event, roles: tuple[Role, ...], t: dict[str, str], path: str) -> list[dict[str, Any]]:
    available = _roles_of(fil, event)
    if len(available) < 2:
        return []
    chips: list[dict[str, Any]] = [{"label": t["all"], "href": path, "current": not roles, "role": ""}]
    for role in available:
        toggled = [r for r in ROLES if (r in roles) != (r == role)]
        chips.append({"label": t[role], "href": path + _query(toggled), "current": role in roles, "role": str(role)})
    return chips


def _headline(item: Item) -> str:
    text = item.title or item.text or html_to_text(item.html or "") or item.source_label
    return text if len(text) <= HEADLINE else text[: HEADLINE - 1].rstrip() + "…"


def _coverage(event: Event, summary: Summary, now: datetime) -> tuple[datetime, datetime]:
    start = summary.first_at or now
    latest = max((i.sort_at for i in summary.recent), default=start)
    if event.status is EventStatus.CLOSED:
        return start, latest
    # a live event's coverage is expected to run through its local day (a stage, a match, an election night)
    zone = ZoneInfo(event.timezone)
    day = max(latest, now).astimezone(zone).date()
    return start, datetime.combine(day, time(23, 59, 59), zone)


def live_blog(event: Event, summary: Summary, canonical: str, description: str, now: datetime) -> dict[str, Any]:
    """schema.org LiveBlogPosting: coverage times and the latest items as liveBlogUpdate BlogPostings."""
    start, end = _coverage(event, summary, now)
    latest = sorted(summary.recent, key=lambda i: (i.sort_at, i.id), reverse=True)[:LD_UPDATES]
    updates = []
    for item in latest:
        update: dict[str, Any] = {
            "@type": "BlogPosting",
            "headline": _headline(item),
            "datePublished": rfc3339(item.published_at),
            "dateModified": rfc3339(item.updated_at or item.published_at),
            "url": f"{canonical}#item-{item.id}",
            "author": {"@type": "Person", "name": item.author.name or item.author.handle or item.source_label},
        }
        body = item.text or html_to_text(item.html or "")
        if body:
            update["articleBody"] = body if len(body) <= LD_BODY else body[: LD_BODY - 1].rstrip() + "…"
        updates.append(update)
    modified = max((i.updated_at or i.published_at for i in summary.recent), default=start)
    return {
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "@id": canonical,
        "url": canonical,
        "headline": event.title[:HEADLINE],
        "description": description,
        "inLanguage": event.language,
        "datePublished": rfc3339(start),
        "dateModified": rfc3339(modified),
        "coverageStartTime": rfc3339(start),
        "coverageEndTime": rfc3339(end.astimezone(UTC)),
        "liveBlogUpdate": updates,
    }


async def index(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "index.html", {"events": fil.public_events(), "t": strings("en")})


async def event_page(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    slug = request.path_params["slug"]
    event = fil.reader_event(slug)
    if event is None:
        raise HTTPException(404, f"no such event: {slug[:80]}")
    query = request.query_params
    try:
        roles = parse_roles(query.get("roles"))
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    item_id = (query.get("item") or "").strip()
    before = (query.get("before") or "").strip() or None
    view: View | None = None
    if item_id:
        # a permalink shows every role: the item it names may be of any
        roles = ()
        view = await _around(fil, event, item_id[:200])
        if view is None:
            view = await _filtered(fil, event, (), None)
            view.missing = True
    else:
        try:
            view = await _filtered(fil, event, roles, before)
        except ValueError as e:
            raise HTTPException(400, f"before: {e}") from None
    header = await fil.store.get_header(slug)
    summary = await _summary(request, fil, event, view.seq)
    t = strings(event.language)
    base = fil.settings.base_url
    path = f"/events/{event.slug}"
    canonical = f"{base}{path}"
    summary_text = html_to_text(header.summary_html) if header and not header.empty else ""
    description = (summary_text[:200] or t["description"].format(title=event.title)).strip()
    shown = {i.id for i in view.items}
    moments = [
        {"item": i, "href": f"#item-{i.id}" if i.id in shown else f"{path}?item={i.id}#item-{i.id}"}
        for i in summary.moments
        if not roles or i.role in roles
    ]
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "event.html",
        {
            "event": event,
            "lang": event.language,
            "page": view,
            "roles": ",".join(str(r) for r in roles),
            "chips": _chips(fil, event, roles, t, path),
            "moments": moments,
            "older_href": path + _query(roles, before=view.next) if view.next else None,
            "latest_href": path + _query(roles),
            "header": header.to_json() if header and not header.empty else None,
            "canonical": canonical,
            "base": base,
            "description": description,
            "og_locale": "fr_FR" if event.language == "fr" else "en_GB",
            "ld_json": script_json(live_blog(event, summary, canonical, description, datetime.now(UTC))),
            "t": t,
            "strings_json": script_json(t),
        },
        status_code=404 if view.missing else 200,
    )

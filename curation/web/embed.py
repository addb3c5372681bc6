"""Embedding on other sites: GET /embed.js (the one snippet), GET /embed/{slug} (the framed timeline), GET /oembed."""

from __future__ import annotations

import html
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.templating import Jinja2Templates

from curation.codec import dumps
from curation.models import Event, Item, Role
from curation.service import Fil
from curation.store import MAX_PAGE
from curation.web.i18n import strings

EMBED_JS = Path(__file__).resolve().parent.parent.parent / "static" / "embed.js"
#: items an embed shows when the snippet names no data-limit: a widget in an article, not the whole page
DEFAULT_LIMIT = 20
#: how many published items the server looks through to fill a role-filtered first render
ROLE_SCAN = 5 * MAX_PAGE
THEMES = ("auto", "light", "dark")
LANGUAGES = ("en", "fr")
ROLES = tuple(str(r) for r in Role)
#: the oEmbed frame when the consumer sets no maximum
OEMBED_WIDTH = 600
OEMBED_HEIGHT = 600
MAX_COLOUR = 64
#: the embed's own words (the reader page's are in i18n.py)
MORE = {"en": "Follow the full live page", "fr": "Suivre tout le direct"}

#: the CSS named colours (CSS Color 4), and currentcolor
NAMED_COLOURS = frozenset(
    """aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue blueviolet brown
    burlywood cadetblue chartreuse chocolate coral cornflowerblue cornsilk crimson cyan darkblue darkcyan
    darkgoldenrod darkgray darkgreen darkgrey darkkhaki darkmagenta darkolivegreen darkorange darkorchid darkred
    darksalmon darkseagreen darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink
    deepskyblue dimgray dimgrey dodgerblue firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite gold
    goldenrod gray green greenyellow grey honeydew hotpink indianred indigo ivory khaki lavender lavenderblush
    lawngreen lemonchiffon lightblue lightcoral lightcyan lightgoldenrodyellow lightgray lightgreen lightgrey
    lightpink lightsalmon lightseagreen lightskyblue lightslategray lightslategrey lightsteelblue lightyellow lime
    limegreen linen magenta maroon mediumaquamarine mediumblue mediumorchid mediumpurple mediumseagreen
    mediumslateblue mediumspringgreen mediumturquoise mediumvioletred midnightblue mintcream mistyrose moccasin
    navajowhite navy oldlace olive olivedrab orange orangered orchid palegoldenrod palegreen paleturquoise
    palevioletred papayawhip peachpuff peru pink plum powderblue purple rebeccapurple red rosybrown royalblue
    saddlebrown salmon sandybrown seagreen seashell sienna silver skyblue slateblue slategray slategrey snow
    springgreen steelblue tan teal thistle tomato turquoise violet wheat white whitesmoke yellow yellowgreen
    currentcolor""".split()
)
_HEX = re.compile(r"#(?:[0-9a-f]{3}|[0-9a-f]{4}|[0-9a-f]{6}|[0-9a-f]{8})")
# rgb()/hsl() with three or four plain numbers: the character set alone rules out breaking out of the rule
_NUMBER = r"\s*[+-]?(?:\d{1,3}(?:\.\d{1,4})?|\.\d{1,4})(?:%|deg)?\s*"
_FUNCTION = re.compile(rf"(?:rgba?|hsla?)\({_NUMBER}(?:[,\s/]{_NUMBER}){{2,3}}\)")
_SLUG_PATH = re.compile(r"/events/([a-z0-9-]+)/?")

#: frameable from any site (the point of an embed); scripts only from Fil itself (never inline), no plugins
FRAME_HEADERS = {
    "Content-Security-Policy": "frame-ancestors *; script-src 'self'; object-src 'none'",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Content-Type-Options": "nosniff",
}


class OptionError(ValueError):
    """An embed option the server refuses; the message names the option."""


@dataclass(frozen=True, slots=True)
class Options:
    theme: str = "auto"
    accent: str | None = None
    roles: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    lang: str | None = None
    autosize: bool = False


def parse_accent(raw: str | None) -> str | None:
    """A CSS colour in a form that cannot leave its declaration: hex, rgb()/hsl() of numbers, or a named colour."""
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if len(value) <= MAX_COLOUR and (_HEX.fullmatch(value) or _FUNCTION.fullmatch(value) or value in NAMED_COLOURS):
        return value
    raise OptionError(f"accent: not a CSS colour (#rrggbb, rgb(), hsl() or a colour name): {raw[:40]!r}")


def parse_roles(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    roles: list[str] = []
    for part in raw.split(","):
        role = part.strip().lower()
        if not role:
            continue
        if role not in ROLES:
            raise OptionError(f"roles: unknown role {part.strip()[:40]!r} (one of {', '.join(ROLES)})")
        if role not in roles:
            roles.append(role)
    return tuple(roles)


def parse_options(request: Request) -> Options:
    query = request.query_params
    theme = (query.get("theme") or "auto").strip().lower()
    if theme not in THEMES:
        raise OptionError(f"theme: expected light, dark or auto, not {theme[:40]!r}")
    raw_limit = (query.get("limit") or "").strip()
    limit = DEFAULT_LIMIT
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise OptionError(f"limit: not a number: {raw_limit[:40]!r}") from None
        if not 1 <= limit <= MAX_PAGE:
            raise OptionError(f"limit: must be between 1 and {MAX_PAGE}")
    lang = (query.get("lang") or "").strip().lower()
    return Options(
        theme=theme,
        accent=parse_accent(query.get("accent")),
        roles=parse_roles(query.get("roles")),
        limit=limit,
        # the design allows en and fr only; anything else falls back to the event's language
        lang=lang if lang in LANGUAGES else None,
        autosize=query.get("autosize") == "1",
    )


async def first_items(fil: Fil, event: Event, options: Options) -> tuple[list[Item], int]:
    """The first render: up to `limit` published items of the wanted roles, in display order, and their seq."""
    page = await fil.store.page(event.slug, limit=options.limit if not options.roles else MAX_PAGE, order=event.order)
    seq = page.seq  # the first page's: anything that changed after it reaches the reader through `since`
    if not options.roles:
        return page.items, seq
    chosen: list[Item] = []
    scanned = 0
    while True:
        chosen.extend(i for i in page.items if str(i.role) in options.roles)
        scanned += len(page.items)
        if len(chosen) >= options.limit or page.next is None or scanned >= ROLE_SCAN:
            return chosen[: options.limit], seq
        page = await fil.store.page(event.slug, limit=MAX_PAGE, before=page.next, order=event.order)


def _refuse(status: int, message: str) -> Response:
    # framed too: the partner setting up a snippet sees what is wrong inside the frame
    return PlainTextResponse(message, status_code=status, headers={**FRAME_HEADERS, "Cache-Control": "no-store"})


async def embed_js(request: Request) -> Response:
    return FileResponse(
        EMBED_JS,
        media_type="text/javascript; charset=utf-8",
        # Cache-Control, ETag and 304s come from curation.web.caching, as for every public GET
        headers={"Cross-Origin-Resource-Policy": "cross-origin", "X-Content-Type-Options": "nosniff"},
    )


async def embed_page(request: Request) -> Response:
    fil: Fil = request.app.state.fil
    slug = request.path_params["slug"]
    event = fil.reader_event(slug)
    if event is None:
        return _refuse(404, f"no such event: {slug[:80]}")
    try:
        options = parse_options(request)
    except OptionError as e:
        return _refuse(400, str(e))
    items, seq = await first_items(fil, event, options)
    lang = options.lang or event.language
    t = strings(lang)
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(
        request,
        "embed.html",
        {
            "event": event,
            "items": items,
            "seq": seq,
            "options": options,
            "lang": lang,
            "t": t,
            "strings_json": dumps(t),
            # a path, not a URL: same-origin whatever scheme and host a proxy in front shows (base-uri 'self')
            "page_url": request.app.url_path_for("event", slug=event.slug),
            "more": MORE.get(lang, MORE["en"]),
        },
    )
    response.headers.update(FRAME_HEADERS)
    return response


def _origin(scheme: str, netloc: str) -> tuple[str, int] | None:
    """(host, port) with the scheme's default port filled in; None for what is not an http(s) origin."""
    if scheme not in ("http", "https"):
        return None
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def event_of_url(fil: Fil, request: Request, url: str) -> tuple[Event, str, tuple[str, ...]] | None:
    """The event a URL names when it is one of this server's event pages: (event, base URL, its ?roles=)."""
    try:
        target = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return None
    wanted = _origin(target.scheme.lower(), target.netloc)
    if wanted is None:
        return None
    public = urllib.parse.urlsplit(fil.settings.base_url)
    prefix = public.path.rstrip("/")
    if wanted == _origin(public.scheme, public.netloc) and target.path.startswith(f"{prefix}/"):
        path = target.path[len(prefix) :]
    # the host this request reached: behind a proxy that terminates TLS, either scheme names this server
    elif target.netloc.lower() == request.url.netloc.lower() or wanted == _origin(
        request.url.scheme, request.url.netloc
    ):
        path = target.path
    else:
        return None
    # snippets point where readers go: CURATION_PUBLIC_URL when set (never a Host header a client chose),
    # else the host this request reached (the default base names the listening address, maybe loopback)
    base = fil.settings.base_url if fil.settings.public_url else f"{request.url.scheme}://{request.url.netloc}"
    match = _SLUG_PATH.fullmatch(path)
    event = fil.reader_event(match.group(1)) if match else None
    if event is None:
        return None
    try:
        roles = parse_roles(urllib.parse.parse_qs(target.query).get("roles", [None])[0])
    except OptionError:
        roles = ()
    return event, base, roles


def _dimension(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise OptionError(f"{name}: not a whole number of pixels: {raw[:40]!r}") from None
    if value < 1:
        raise OptionError(f"{name}: must be at least 1")
    return value


async def oembed(request: Request) -> Response:
    """oEmbed 1.0 (https://oembed.com): a rich response whose html is the plain iframe snippet."""
    fil: Fil = request.app.state.fil
    url = request.query_params.get("url")
    if not url:
        return JSONResponse({"error": "url: required (an event page of this server)"}, status_code=400)
    fmt = (request.query_params.get("format") or "json").lower()
    if fmt != "json":
        return JSONResponse({"error": f"format: only json is implemented, not {fmt[:20]!r}"}, status_code=501)
    try:
        max_width = _dimension(request, "maxwidth")
        max_height = _dimension(request, "maxheight")
    except OptionError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    found = event_of_url(fil, request, url)
    if found is None:
        return JSONResponse({"error": "url: not an event page of this server"}, status_code=404)
    event, base, roles = found
    width = min(OEMBED_WIDTH, max_width or OEMBED_WIDTH)
    height = min(OEMBED_HEIGHT, max_height or OEMBED_HEIGHT)
    src = f"{base}/embed/{event.slug}"
    if roles:
        src += "?" + urllib.parse.urlencode({"roles": ",".join(roles)})
    snippet = (
        f'<iframe src="{html.escape(src)}" title="{html.escape(event.title)}" width="{width}" height="{height}"'
        ' style="border:0;max-width:100%" loading="lazy"></iframe>'
    )
    return JSONResponse(
        {
            "type": "rich",
            "version": "1.0",
            "title": event.title,
            "provider_name": "Fil",
            "provider_url": f"{base}/",
            "cache_age": 3600,
            "html": snippet,
            "width": width,
            "height": height,
        },
    )

"""Document formats of the built-in demo upstream: a newsroom's RSS 2.0, Mastodon and Bluesky account RSS, JSON Feed.

Pure functions from recorded posts to the bytes each real upstream sends (plus SVG placeholders and small HTML
pages), so the demo exercises the same parsing path as production. The Mastodon and Bluesky APIs are in
curation/demo_social.py. No I/O here.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from curation.models import Role

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
MRSS = "http://search.yahoo.com/mrss/"
WEBFEEDS = "http://webfeeds.org/rss/1.0"
ATOM = "http://www.w3.org/2005/Atom"
DUBLIN_CORE = "http://purl.org/dc/elements/1.1/"
SVG = "http://www.w3.org/2000/svg"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
MASTODON_VERSION = "4.6.4"
MASTODON_GENERATOR = f"Mastodon v{MASTODON_VERSION}"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: the team publishes in race-local time (CEST), so JSON Feed dates carry an offset other than Z
RACE_TIME = timezone(timedelta(hours=2))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
#: a link, or a hashtag that starts a word and holds a letter (as Mastodon and the Bluesky app detect them)
_TOKEN = re.compile(r"(?P<url>https?://[^\s<>\"]*[^\s<>\".,;:!?)'])|(?<![\w/&=)#])#(?P<tag>\w*[^\W\d_]\w*)")
_URL_PREFIX = re.compile(r"https?://(?:www\.)?")
# Go's encoding/xml EscapeText, byte for byte (saxutils.escape does &, < and > first)
_GO_ENTITIES = {'"': "&#34;", "'": "&#39;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}


@dataclass(frozen=True, slots=True)
class Persona:
    """One demo source: who publishes, and in which upstream's format."""

    key: str
    format: str
    role: Role
    label: str
    name: str
    bio: str
    color: str
    #: Mastodon username or Bluesky handle
    handle: str = ""
    #: document path for the formats whose URL is not derived from the handle
    path: str = ""

    @property
    def did(self) -> str:
        """A stable, fictional did:plc derived from the handle (24 base32 characters, like real ones)."""
        digest = int.from_bytes(hashlib.sha256(self.handle.encode()).digest()[:15], "big")
        return "did:plc:" + "".join(_TID_ALPHABET[(digest >> (5 * i)) & 31] for i in range(24))

    @property
    def doc_path(self) -> str:
        if self.format == "mastodon":
            return f"/@{self.handle}.rss"
        if self.format == "bluesky":
            return f"/profile/{self.did}/rss"
        return self.path

    @property
    def avatar(self) -> str:
        return f"avatar-{self.key}"


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the recorded script: a new entry, or (edit_of set) a rewrite of an earlier one."""

    index: int
    id: str
    source: str
    text: str
    title: str | None = None
    edit_of: str | None = None
    #: minutes before the start, for the entries released at once
    ago: float | None = None
    image: str | None = None
    alt: str | None = None
    category: str | None = None
    creator: str | None = None
    tags: tuple[str, ...] = ()
    #: set on a step that deletes an earlier social post (Mastodon status, Bluesky post)
    delete_of: str | None = None
    #: id of an earlier step of the same cycle this post links to: its `{link}` becomes that permalink, with a card
    link: str | None = None
    #: Mastodon content warning (spoiler_text)
    cw: str | None = None

    @property
    def is_new(self) -> bool:
        """A new entry, not an edit or a delete of an earlier one."""
        return self.edit_of is None and self.delete_of is None


@dataclass(frozen=True, slots=True)
class LinkPreview:
    """What a link card shows (Mastodon `card`, Bluesky `external` embed), built from the linked post."""

    url: str
    title: str
    description: str
    #: image name on the upstream, or None
    image: str | None
    provider: str


@dataclass(frozen=True, slots=True)
class Post:
    """One released entry as it reads now (an edit already applied)."""

    step: Step
    #: position in the endless replay (cycle * len(steps) + step.index); makes every id unique
    seq: int
    cycle: int
    #: run-unique serial used in article ids and links
    number: str
    published: datetime
    #: wall time of its last change: its release, or its edit
    changed: datetime
    title: str | None
    #: the text as published, `{link}` already replaced by the linked permalink
    text: str
    edited: bool = False
    #: released in the first batch of the first cycle, dated before the start (no stream ever carried it live)
    historical: bool = False
    preview: LinkPreview | None = None

    @property
    def slug(self) -> str:
        return self.step.id if self.cycle == 0 else f"{self.step.id}-{self.cycle + 1}"


@dataclass(frozen=True, slots=True)
class Site:
    """Where the upstream listens, and the placeholder images it serves (name -> SVG bytes)."""

    base: str
    images: Mapping[str, bytes]

    def image_url(self, name: str) -> str:
        return f"{self.base}/img/{name}.svg"

    @property
    def host(self) -> str:
        return urlsplit(self.base).netloc


@dataclass(frozen=True, slots=True)
class Format:
    content_type: str
    render: Callable[[Site, Persona, Sequence[Post]], bytes]
    link: Callable[[Site, Persona, Post], str]


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def snowflake(post: Post) -> int:
    """A Mastodon-style status id: milliseconds since the epoch in the high bits, a sequence below."""
    return ((micros(post.published) // 1000) << 16) | (post.seq & 0xFFFF)


def tid_at(moment_us: int, clock_id: int) -> str:
    """An atproto TID: 13 base32-sortable characters of microseconds and a 10-bit clock id."""
    value = (moment_us << 10) | (clock_id & 0x3FF)
    return "".join(_TID_ALPHABET[(value >> (5 * (12 - i))) & 31] for i in range(13))


def tid(post: Post) -> str:
    """The post's record key: a TID of its creation time."""
    return tid_at(micros(post.published), post.seq)


def go_date(moment: datetime) -> str:
    """Go's `02 Jan 2006 15:04 -0700` (bskyweb's FullYearRFC822Z): no weekday, no seconds; English months always."""
    utc = moment.astimezone(UTC)
    return f"{utc.day:02d} {_MONTHS[utc.month - 1]} {utc.year} {utc.hour:02d}:{utc.minute:02d} +0000"


def at_uri(persona: Persona, post: Post) -> str:
    return f"at://{persona.did}/app.bsky.feed.post/{tid(post)}"


def _link_rss(site: Site, persona: Persona, post: Post) -> str:
    return f"{site.base}/news/{post.number}/{post.slug}"


def _link_mastodon(site: Site, persona: Persona, post: Post) -> str:
    return f"{site.base}/@{persona.handle}/{snowflake(post)}"


def _link_bluesky(site: Site, persona: Persona, post: Post) -> str:
    return f"https://bsky.app/profile/{persona.handle}/post/{tid(post)}"


def _link_jsonfeed(site: Site, persona: Persona, post: Post) -> str:
    return f"{site.base}/team/news/{post.number}/{post.slug}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _xml(root: ET.Element, indent: str) -> bytes:
    ET.indent(root, space=indent)
    return XML_DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8") + b"\n"


def _paragraphs(text: str, inline: Callable[[str], str] = lambda s: html.escape(s, quote=False)) -> str:
    return "".join(f"<p>{inline(p).replace(chr(10), '<br />')}</p>" for p in text.split("\n\n"))


def tokens(text: str) -> list[tuple[str, str]]:
    """Split text into ("text", s), ("url", url) and ("tag", name) runs, in order."""
    out: list[tuple[str, str]] = []
    last = 0
    for match in _TOKEN.finditer(text):
        if match.start() > last:
            out.append(("text", text[last : match.start()]))
        out.append(("url", match["url"]) if match["url"] else ("tag", match["tag"]))
        last = match.end()
    if last < len(text):
        out.append(("text", text[last:]))
    return out


def rails_escape(text: str) -> str:
    """ERB::Util.html_escape, as Mastodon's TextFormatter applies it to local statuses."""
    return html.escape(text, quote=False).replace('"', "&quot;").replace("'", "&#39;")


def _mastodon_link(url: str) -> str:
    """TextFormatter#link_to_url: scheme hidden, 30 visible characters, the rest hidden behind an ellipsis."""
    prefix = _URL_PREFIX.match(url)
    head = prefix.group(0) if prefix else ""
    rest = url[len(head) :]
    shown, hidden = rest[:30], rest[30:]
    return (
        f'<a href="{rails_escape(url)}" target="_blank" rel="nofollow noopener" translate="no">'
        f'<span class="invisible">{rails_escape(head)}</span>'
        f'<span class="{"ellipsis" if hidden else ""}">{rails_escape(shown)}</span>'
        f'<span class="invisible">{rails_escape(hidden)}</span></a>'
    )


def mastodon_html(site: Site, text: str) -> str:
    """Status HTML as Mastodon formats a local status: paragraphs, shortened links, `mention hashtag` links."""

    def inline(paragraph: str) -> str:
        out: list[str] = []
        for kind, value in tokens(paragraph):
            if kind == "url":
                out.append(_mastodon_link(value))
            elif kind == "tag":
                href = rails_escape(f"{site.base}/tags/{value}")
                out.append(
                    f'<a href="{href}" class="mention hashtag" rel="tag">#<span>{rails_escape(value)}</span></a>'
                )
            else:
                out.append(rails_escape(value))
        return "".join(out)

    return _paragraphs(text, inline)


def hashtags(text: str) -> list[str]:
    return [value for kind, value in tokens(text) if kind == "tag"]


def render_rss(site: Site, persona: Persona, posts: Sequence[Post]) -> bytes:
    """A sports newsroom's RSS 2.0: titled articles, HTML description with an image, dc:creator, enclosure."""
    rss = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM, "xmlns:dc": DUBLIN_CORE})
    channel = _sub(rss, "channel")
    _sub(channel, "title", persona.name)
    _sub(channel, "link", f"{site.base}/")
    _sub(channel, "description", persona.bio)
    _sub(channel, "language", "en")
    _sub(channel, "copyright", f"© {persona.label} (fictional demo newsroom)")
    _sub(channel, "atom:link", href=site.base + persona.doc_path, rel="self", type="application/rss+xml")
    if posts:
        _sub(channel, "lastBuildDate", format_datetime(max(p.changed for p in posts), usegmt=True))
    image = _sub(channel, "image")
    _sub(image, "url", site.image_url(persona.avatar))
    _sub(image, "title", persona.name)
    _sub(image, "link", f"{site.base}/")
    for post in posts:
        item = _sub(channel, "item")
        link = _link_rss(site, persona, post)
        _sub(item, "title", post.title)
        _sub(item, "link", link)
        body = _paragraphs(post.text)
        if post.step.image:
            src, alt = html.escape(site.image_url(post.step.image)), html.escape(post.step.alt or "")
            body += f'<img src="{src}" alt="{alt}" width="640" height="360" />'
        _sub(item, "description", body)
        _sub(item, "pubDate", format_datetime(post.published, usegmt=True))
        _sub(item, "guid", f"{persona.key}-{post.number}", isPermaLink="false")
        if post.step.creator:
            _sub(item, "dc:creator", post.step.creator)
        if post.step.category:
            _sub(item, "category", post.step.category)
        if post.step.image:
            size = str(len(site.images.get(post.step.image, b"")))
            _sub(item, "enclosure", url=site.image_url(post.step.image), length=size, type="image/svg+xml")
    return _xml(rss, "  ")


def render_mastodon(site: Site, persona: Persona, posts: Sequence[Post]) -> bytes:
    """A Mastodon account feed (`/@user.rss`, app/views/accounts/show.rss.ruby): items have no title."""
    rss = ET.Element("rss", {"xmlns:media": MRSS, "xmlns:webfeeds": WEBFEEDS, "version": "2.0"})
    channel = _sub(rss, "channel")
    profile = f"{site.base}/@{persona.handle}"
    avatar = site.image_url(persona.avatar)
    _sub(channel, "title", persona.name)
    _sub(channel, "description", f"Public posts from @{persona.handle}@{site.host}")
    _sub(channel, "link", profile)
    image = _sub(channel, "image")
    _sub(image, "url", avatar)
    _sub(image, "title", persona.name)
    _sub(image, "link", profile)
    if posts:
        _sub(channel, "lastBuildDate", format_datetime(posts[0].published))
    _sub(channel, "webfeeds:icon", avatar)
    _sub(channel, "generator", MASTODON_GENERATOR)
    for post in posts:
        item = _sub(channel, "item")
        url = _link_mastodon(site, persona, post)
        _sub(item, "guid", url, isPermaLink="true")
        _sub(item, "link", url)
        _sub(item, "pubDate", format_datetime(post.published))
        description = mastodon_html(site, post.text)
        if post.step.cw:  # FormattingHelper#rss_status_content_format puts the warning first
            description = f"<p><strong>Content warning:</strong> {rails_escape(post.step.cw)}</p><hr />{description}"
        _sub(item, "description", description)
        if post.step.image:
            src = site.image_url(post.step.image)
            size = str(len(site.images.get(post.step.image, b"")))
            media = _sub(item, "media:content", url=src, type="image/svg+xml", fileSize=size, medium="image")
            _sub(media, "media:rating", "adult" if post.step.cw else "nonadult", scheme="urn:simple")
            if post.step.alt:
                _sub(media, "media:description", post.step.alt, type="plain")
            _sub(media, "media:thumbnail", url=src)
        for tag in hashtags(post.text):
            _sub(item, "category", tag)
    return _xml(rss, "   ")


def _go(text: str) -> str:
    return escape(text, _GO_ENTITIES)


def render_bluesky(site: Site, persona: Persona, posts: Sequence[Post]) -> bytes:
    """A Bluesky profile feed as bskyweb's rss.go marshals it with encoding/xml: one line, no item title."""
    parts = [
        '<rss version="2.0"><channel>',
        f"<description>{_go(persona.bio)}</description>",
        f"<link>https://bsky.app/profile/{_go(persona.handle)}</link>",
        f"<title>{_go(f'@{persona.handle} - {persona.name}')}</title>",
    ]
    for post in posts:
        parts += [
            "<item>",
            f"<link>{_go(_link_bluesky(site, persona, post))}</link>",
            f"<description>{_go(post.text)}</description>",
            f"<pubDate>{go_date(post.published)}</pubDate>",
            f'<guid isPermaLink="false">{_go(at_uri(persona, post))}</guid>',
            "</item>",
        ]
    parts.append("</channel></rss>")
    return XML_DECLARATION + "".join(parts).encode("utf-8")


def render_jsonfeed(site: Site, persona: Persona, posts: Sequence[Post]) -> bytes:
    """A team's JSON Feed 1.1: short live updates without a title, press releases with one."""
    home = f"{site.base}/team/"
    avatar = site.image_url(persona.avatar)
    items: list[dict[str, object]] = []
    for post in posts:
        url = _link_jsonfeed(site, persona, post)
        item: dict[str, object] = {"id": url, "url": url}
        if post.title:
            item["title"] = post.title
        item["content_html"] = _paragraphs(post.text)
        if post.step.image:
            item["image"] = site.image_url(post.step.image)
        item["date_published"] = post.published.astimezone(RACE_TIME).isoformat(timespec="seconds")
        if post.edited:
            item["date_modified"] = post.changed.astimezone(RACE_TIME).isoformat(timespec="seconds")
        if post.step.tags:
            item["tags"] = list(post.step.tags)
        items.append(item)
    feed = {
        "version": JSON_FEED_VERSION,
        "title": persona.name,
        "home_page_url": home,
        "feed_url": site.base + persona.doc_path,
        "description": persona.bio,
        "icon": avatar,
        "favicon": avatar,
        "language": "en",
        "authors": [{"name": persona.label, "url": home, "avatar": avatar}],
        "items": items,
    }
    return json.dumps(feed, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


FORMATS: dict[str, Format] = {
    "rss": Format("application/rss+xml; charset=utf-8", render_rss, _link_rss),
    "mastodon": Format("application/rss+xml; charset=utf-8", render_mastodon, _link_mastodon),
    # echo's c.XML (bskyweb) answers MIMEApplicationXMLCharsetUTF8
    "bluesky": Format("application/xml; charset=UTF-8", render_bluesky, _link_bluesky),
    "jsonfeed": Format("application/feed+json", render_jsonfeed, _link_jsonfeed),
}


def _svg(width: int, height: int, label: str) -> ET.Element:
    size = {"width": str(width), "height": str(height), "viewBox": f"0 0 {width} {height}"}
    svg = ET.Element("svg", {"xmlns": SVG, **size, "role": "img", "aria-label": label})
    _sub(svg, "title", label)
    return svg


def _ridge(rnd: random.Random, top: float, amplitude: float) -> str:
    points = [f"{x},{top + rnd.uniform(-amplitude, amplitude):.0f}" for x in range(0, 681, 40)]
    return " ".join(["0,360", *points, "640,360"])


def svg_photo(name: str, caption: str, hue: int) -> bytes:
    """A 640x360 placeholder "photo": sky, three mountain ridges, a hairpin road and a caption band."""
    rnd = random.Random(name)  # same name, same picture: the ETag and enclosure length stay stable
    svg = _svg(640, 360, caption)
    gradient = _sub(_sub(svg, "defs"), "linearGradient", id="sky", x1="0", y1="0", x2="0", y2="1")
    _sub(gradient, "stop", offset="0", **{"stop-color": f"hsl({hue},60%,72%)"})
    _sub(gradient, "stop", offset="1", **{"stop-color": f"hsl({(hue + 40) % 360},70%,92%)"})
    _sub(svg, "rect", width="640", height="360", fill="url(#sky)")
    _sub(svg, "circle", cx=str(rnd.randint(80, 560)), cy="70", r="28", fill="hsl(48,100%,88%)")
    for layer, (top, lightness) in enumerate(((130, 62), (190, 45), (250, 30))):
        shade = f"hsl({(hue + 150) % 360},{20 + layer * 8}%,{lightness}%)"
        _sub(svg, "polygon", points=_ridge(rnd, top, 45 - layer * 10), fill=shade)
    bends = " ".join(f"L{80 + (i % 2) * 480},{330 - i * 14}" for i in range(1, 6))
    _sub(svg, "path", d=f"M320,360 L80,330 {bends}", fill="none", stroke="#f4efe6", **{"stroke-width": "5"})
    for i, colour in enumerate(("#e53935", "#fdd835", "#1e88e5")):
        _sub(svg, "circle", cx=str(200 + i * 22), cy=str(318 - i * 2), r="6", fill=colour)
    _sub(svg, "rect", y="306", width="640", height="54", fill="rgba(0,0,0,0.55)")
    font = {"font-family": "system-ui, sans-serif", "fill": "#fff"}
    _sub(svg, "text", caption, x="18", y="340", **font, **{"font-size": "20"})
    _sub(svg, "text", "DEMO", x="18", y="34", **font, **{"font-size": "16", "font-weight": "bold"})
    return ET.tostring(svg, encoding="unicode").encode("utf-8")


def svg_avatar(persona: Persona) -> bytes:
    """A 128x128 round avatar with the persona's initials."""
    initials = "".join(word[0] for word in persona.label.replace("–", " ").replace("&", " ").split()[:2])
    svg = _svg(128, 128, persona.label)
    _sub(svg, "circle", cx="64", cy="64", r="64", fill=persona.color)
    attrs = {"text-anchor": "middle", "font-size": "50", "font-family": "system-ui, sans-serif", "fill": "#fff"}
    _sub(svg, "text", initials.upper(), x="64", y="82", **attrs)
    return ET.tostring(svg, encoding="unicode").encode("utf-8")


def render_page(title: str, body: str) -> bytes:
    """A minimal HTML page (permalinks and the index); `body` is HTML this module built, `title` plain text."""
    head = f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
    style = "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}"
    style += "img{max-width:100%;height:auto}</style></head>"
    return f"{head}{style}<body>{body}</body></html>\n".encode()


def post_page(site: Site, persona: Persona, post: Post) -> bytes:
    """The permalink page of one post, so links in the demo open without internet."""
    byline = html.escape(f"{post.step.creator or persona.label} · {format_datetime(post.published, usegmt=True)}")
    parts = [f'<p><img src="{html.escape(site.image_url(persona.avatar))}" alt="" width="48" height="48"> ']
    parts.append(f"<strong>{html.escape(persona.label)}</strong></p>")
    if post.title:
        parts.append(f"<h1>{html.escape(post.title)}</h1>")
    parts.append(f"<p><small>{byline}</small></p>")
    parts.append(mastodon_html(site, post.text) if persona.format == "mastodon" else _paragraphs(post.text))
    if post.step.image:
        src, alt = html.escape(site.image_url(post.step.image)), html.escape(post.step.alt or "")
        parts.append(f'<p><img src="{src}" alt="{alt}" width="640" height="360"></p>')
    parts.append('<p><a href="/">All demo feeds</a></p>')
    return render_page(post.title or f"{persona.label}: post", "".join(parts))

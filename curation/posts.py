"""Editors' own posts: a light Markdown subset to sanitized HTML, and the Entry a post becomes. Pure.

The subset: **bold**, *italic*, [text](https://link), lines starting with "- " as a list, blank
lines between paragraphs. Everything else is text: it is escaped first, then formatted, then
sanitized like every upstream's HTML.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import datetime

from curation.models import Author, Card, Entry, Item, ItemKind, ItemState, Media, Role
from curation.normalize import content_hash
from curation.sanitize import html_to_text, plain_text, safe_url, sanitize_html
from curation.timeline import item_of

MAX_TEXT = 5000
MAX_ALT = 1000
#: labels a sports desk reaches for; free labels are accepted too
KEY_MOMENTS = ("attack", "crash", "breakaway", "finish", "result")

_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)(.+?)(?<=\S)\*(?![*\w])")
_LINK = re.compile(r"\[([^\]\n]{1,300})\]\(([^)\s]{1,2000})\)")


class PostError(ValueError):
    """A post field is wrong; the message starts with the field's name."""


@dataclass(frozen=True, slots=True)
class Post:
    text: str
    image_url: str | None = None
    image_alt: str | None = None
    link: str | None = None
    key_moment: str | None = None
    publish_at: datetime | None = None


def _inline(escaped: str) -> str:
    def link(match: re.Match[str]) -> str:
        url = safe_url(html.unescape(match.group(2)))
        return f'<a href="{html.escape(url)}">{match.group(1)}</a>' if url else match.group(0)

    escaped = _LINK.sub(link, escaped)
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC.sub(r"<em>\1</em>", escaped)


def render(text: str) -> str:
    """The light Markdown subset to HTML (then sanitized)."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip())
    out: list[str] = []
    for block in blocks:
        lines = [line.rstrip() for line in block.split("\n") if line.strip()]
        if lines and all(line.lstrip().startswith(("- ", "* ")) for line in lines):
            items = "".join(
                f"<li>{_inline(html.escape(line.lstrip()[2:].strip(), quote=False))}</li>" for line in lines
            )
            out.append(f"<ul>{items}</ul>")
        elif lines:
            out.append("<p>" + "<br>".join(_inline(html.escape(line, quote=False)) for line in lines) + "</p>")
    return sanitize_html("".join(out))


def validate(post: Post) -> Post:
    """The post, cleaned; PostError naming the first bad field."""
    text = post.text.strip()
    if not text:
        raise PostError("text: empty")
    if len(text) > MAX_TEXT:
        raise PostError(f"text: longer than {MAX_TEXT} characters")
    image = None
    if post.image_url:
        image = safe_url(post.image_url.strip())
        if image is None:
            raise PostError("image_url: not an http(s) URL")
    alt = plain_text(post.image_alt or "").strip() or None
    if alt and len(alt) > MAX_ALT:
        raise PostError(f"image_alt: longer than {MAX_ALT} characters")
    link = None
    if post.link:
        link = safe_url(post.link.strip())
        if link is None:
            raise PostError("link: not an http(s) URL")
    moment = " ".join((post.key_moment or "").split()) or None
    if moment and len(moment) > 60:
        raise PostError("key_moment: at most 60 characters")
    return Post(text, image, alt, link, moment, post.publish_at)


def entry(post: Post, *, key: str, editor: str) -> Entry:
    """The Entry an editor's post becomes (an `update` credited to the editor)."""
    body = render(post.text)
    plain = html_to_text(body)
    media = (Media(type="image", url=post.image_url, alt=post.image_alt),) if post.image_url else ()
    card = Card(kind="link", url=post.link, title=post.link) if post.link else None
    digest = content_hash(None, plain, [m.url for m in media] + ([post.link] if post.link else []))
    return Entry(
        key=key,
        kind=ItemKind.UPDATE,
        url=None,
        title=None,
        text=plain,
        html=body,
        content_hash=hashlib.sha256(f"{digest}\0{post.key_moment or ''}".encode()).hexdigest(),
        author=Author(name=editor),
        media=media,
        published_at=None,
        card=card,
    )


DESK_SOURCE = "desk"


def new_item(post: Post, *, event: str, editor: str, key: str, label: str, now: datetime) -> Item:
    """A post as an item: published now, or scheduled (placed at its publication time)."""
    when = post.publish_at if post.publish_at and post.publish_at > now else now
    item = item_of(
        entry(post, key=key, editor=editor),
        item_id=f"desk-{key}",
        event=event,
        source_id=DESK_SOURCE,
        source_kind=DESK_SOURCE,
        source_label=label,
        role=Role.EDITORIAL,
        state=ItemState.SCHEDULED if when > now else ItemState.PUBLISHED,
        published_at=when,
        first_seen_at=when,
    )
    return item.replace(key_moment=post.key_moment, markdown=post.text)


def corrected(item: Item, post: Post, *, editor: str, now: datetime) -> Item:
    """A correction keeps the post's place and shows it as updated."""
    made = entry(post, key=item.key, editor=item.author.name or editor)
    return item.replace(
        text=made.text,
        html=made.html,
        content_hash=made.content_hash,
        media=made.media,
        card=made.card,
        key_moment=post.key_moment,
        markdown=post.text,
        updated_at=now if item.state is not ItemState.SCHEDULED else None,
        version=item.version + 1,
    )


#: the source label of posts pasted by URL (the author stays the post's own)
PASTED_LABEL = "Pasted"


def pasted_id(key: str) -> str:
    """The item id of a pasted post: the same URL always gives the same item."""
    return "desk-paste-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def pasted_item(entry: Entry, *, event: str, now: datetime) -> Item:
    """A post an editor pasted by URL (paste.resolve): published now, credited to its own author (the audit
    trail names the editor who pasted it)."""
    return item_of(
        entry,
        item_id=pasted_id(entry.key),
        event=event,
        source_id=DESK_SOURCE,
        source_kind=DESK_SOURCE,
        source_label=PASTED_LABEL,
        role=Role.OTHER,  # someone else's words: not styled as the newsroom's own
        state=ItemState.PUBLISHED,
        published_at=entry.published_at or now,
        first_seen_at=now,
        sort_at=now,  # placed when pasted: an old post pasted now is news now
    )

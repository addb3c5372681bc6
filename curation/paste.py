"""A post URL an editor pastes (Mastodon, Bluesky, YouTube, X) read into an Entry, from data, never an embed script.

`parse` recognises the URL (pure); `resolve` asks the platform's public API or oEmbed endpoint through the
Fetcher (the private-address rule holds) and turns the answer into an Entry; anything wrong is a PasteError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import nh3

from curation.collectors import atproto, json_input
from curation.collectors.fetch import Fetcher
from curation.collectors.mastodon_status import read_status, status_entry
from curation.config import Settings
from curation.errors import BlockedAddressError, FetchError
from curation.models import Author, Entry, ItemKind, Media
from curation.normalize import content_hash
from curation.sanitize import DROP_WITH_CONTENT, html_to_text, plain_text, safe_url, sanitize_html

SUPPORTED = "supported: Mastodon, Bluesky, YouTube, X"
MAX_URL = 2048
MAX_TITLE = 300

Platform = Literal["mastodon", "bluesky", "youtube", "x"]

_MASTODON_AT = re.compile(r"^/@([A-Za-z0-9_.-]{1,64}(?:@[A-Za-z0-9.-]{1,253})?)/([0-9A-Za-z]{1,64})/?$")
_MASTODON_USERS = re.compile(r"^/users/([A-Za-z0-9_.-]{1,64})/statuses/([0-9A-Za-z]{1,64})/?$")
_BSKY = re.compile(r"^/profile/([A-Za-z0-9._:%-]{1,253})/post/([A-Za-z0-9._:~-]{1,512})/?$")
_X = re.compile(r"^/([A-Za-z0-9_]{1,15})/status(?:es)?/([0-9]{1,20})(?:/.*)?$")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_YOUTUBE_PATH = re.compile(r"^/(?:shorts|live|embed)/([A-Za-z0-9_-]{11})/?$")
BSKY_HOSTS = frozenset({"bsky.app", "www.bsky.app"})
X_HOSTS = frozenset({"x.com", "www.x.com", "mobile.x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com"})
YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com"})
YOUTU_BE = "youtu.be"
#: hosts of the platforms above: never read as a Mastodon instance
_KNOWN = BSKY_HOSTS | X_HOSTS | YOUTUBE_HOSTS | {YOUTU_BE}
_PARAGRAPH = re.compile(r"<p\b[^>]*>(.*?)</p>", re.IGNORECASE | re.DOTALL)
_LAST_LINK_TEXT = re.compile(r"<a\b[^>]*>([^<]{1,40})</a>\s*</blockquote>", re.IGNORECASE)
_DASH_AUTHOR = re.compile(r"(?:&mdash;|\u2014)\s*([^<]{1,200}?)\s*<a\b", re.IGNORECASE)


class PasteError(ValueError):
    """A pasted URL that cannot become an item; `status` is 400 (not a post URL) or 502 (the upstream failed)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """A recognised post URL: its platform, the canonical URL (the item's key) and the ids in it."""

    platform: Platform
    key: str
    #: mastodon: (instance base, status id); bluesky: (actor, rkey); youtube: (video id,); x: (user, status id)
    parts: tuple[str, ...]


def _unsupported(url: str) -> PasteError:
    return PasteError(f"{url}: this URL is not a post Fil can read: {SUPPORTED}")


def parse(url: str) -> Target:
    """Which post this URL names. Raises PasteError (400) for anything else."""
    text = url.strip()
    if not text or len(text) > MAX_URL:
        raise PasteError(f"url: expected a post URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise _unsupported(text) from None
    if parts.scheme.lower() not in ("http", "https") or not host or parts.username is not None:
        raise _unsupported(text)
    path = parts.path
    if host in BSKY_HOSTS and (m := _BSKY.match(path)):
        actor = m.group(1) if m.group(1).startswith("did:") else m.group(1).lower()
        return Target("bluesky", f"https://bsky.app/profile/{actor}/post/{m.group(2)}", (actor, m.group(2)))
    if host in X_HOSTS and (m := _X.match(path)):
        return Target("x", f"https://x.com/{m.group(1)}/status/{m.group(2)}", (m.group(1), m.group(2)))
    video = _youtube_id(host, path, parts.query)
    if video is not None:
        return Target("youtube", f"https://www.youtube.com/watch?v={video}", (video,))
    if host not in _KNOWN and (m := _MASTODON_AT.match(path) or _MASTODON_USERS.match(path)):
        bracketed = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets in a URL
        netloc = bracketed if port is None else f"{bracketed}:{port}"
        base = f"{parts.scheme.lower()}://{netloc}"
        # /users/u/statuses/1 and /@u/1 are the same status on the same instance: one key
        return Target("mastodon", f"{base}/@{m.group(1)}/{m.group(2)}", (base, m.group(2)))
    raise _unsupported(text)


def _youtube_id(host: str, path: str, query: str) -> str | None:
    candidate = None
    if host == YOUTU_BE:
        candidate = path.strip("/")
    elif host in YOUTUBE_HOSTS:
        if path.rstrip("/") == "/watch":
            candidate = (parse_qs(query).get("v") or [""])[0]
        elif m := _YOUTUBE_PATH.match(path):
            candidate = m.group(1)
    return candidate if candidate and _YOUTUBE_ID.match(candidate) else None


async def resolve(url: str, *, fetcher: Fetcher, settings: Settings) -> Entry:
    """The post a pasted URL names, as an Entry keyed by its canonical URL.

    Raises:
        PasteError: 400 when the URL is not a supported post URL, 502 when the platform could not be read
            (not found, refused, timed out, a private address, an answer that is not a post).
    """
    target = parse(url)
    if target.platform == "mastodon":
        return await _mastodon(target, fetcher)
    if target.platform == "bluesky":
        return await _bluesky(target, fetcher, settings.bluesky_appview.rstrip("/"))
    if target.platform == "youtube":
        return await _youtube(target, fetcher, settings.youtube_oembed)
    return await _x(target, fetcher, settings.x_oembed)


async def _get_json(fetcher: Fetcher, api_url: str, target: Target) -> Any:
    """The JSON an upstream answers, or PasteError (502) naming the pasted post and what went wrong."""
    try:
        result = await fetcher.get(api_url, accept="application/json", unconditional=True)
    except BlockedAddressError as e:
        raise PasteError(
            f"{target.key}: cannot be read: {e.message} (private addresses are refused)", status=502
        ) from None
    except FetchError as e:
        reason = "the post was not found" if e.status in (400, 404, 410) else e.message
        raise PasteError(f"{target.key}: cannot be read: {reason} ({api_url})", status=502) from None
    try:
        return json_input.loads(result.body)
    except ValueError:
        raise PasteError(f"{target.key}: the answer of {api_url} is not JSON", status=502) from None


def _not_a_post(target: Target, why: str) -> PasteError:
    return PasteError(f"{target.key}: cannot be read: {why}", status=502)


async def _mastodon(target: Target, fetcher: Fetcher) -> Entry:
    base, status_id = target.parts
    data = await _get_json(fetcher, f"{base}/api/v1/statuses/{quote(status_id)}", target)
    ref = read_status(data)
    if ref is None:
        raise _not_a_post(target, "the instance did not answer with a status")
    if not ref.visible:
        raise _not_a_post(target, "the post is not public")
    try:
        made = status_entry(ref.data, urlsplit(base).hostname or "")
    except (ValueError, TypeError, KeyError) as e:
        raise _not_a_post(target, f"unreadable status ({e})") from None
    return _rekeyed(made, target, url=made.url)


async def _bluesky(target: Target, fetcher: Fetcher, appview: str) -> Entry:
    actor, rkey = target.parts
    did = actor
    if not actor.startswith("did:"):
        resolve_url = f"{appview}/xrpc/com.atproto.identity.resolveHandle?{urlencode({'handle': actor})}"
        answer = await _get_json(fetcher, resolve_url, target)
        found = answer.get("did") if isinstance(answer, dict) else None
        if not isinstance(found, str) or not found.startswith("did:"):
            raise _not_a_post(target, f"the handle {actor} did not resolve to a DID")
        did = found
    query = urlencode({"uri": atproto.post_uri(did, rkey), "depth": "0", "parentHeight": "0"})
    answer = await _get_json(fetcher, f"{appview}/xrpc/app.bsky.feed.getPostThread?{query}", target)
    thread = answer.get("thread") if isinstance(answer, dict) else None
    view = thread.get("post") if isinstance(thread, dict) else None
    if view is None:
        kind = thread.get("$type") if isinstance(thread, dict) else None
        why = "the post is blocked" if kind == "app.bsky.feed.defs#blockedPost" else "the post was not found"
        raise _not_a_post(target, why)
    profile = atproto.profile_from_view(view.get("author") if isinstance(view, dict) else None)
    if profile is not None and profile.hidden:
        raise _not_a_post(target, "its author asks not to be shown to logged-out readers")
    try:
        made = atproto.entry_from_post_view(view)
    except atproto.MalformedPost as e:
        raise _not_a_post(target, f"unreadable post ({e})") from None
    return _rekeyed(made, target, url=made.url)


def _oembed(endpoint: str, params: dict[str, str]) -> str:
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"


def _field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _oembed_author(data: dict[str, Any]) -> Author:
    return Author(name=plain_text(_field(data, "author_name"))[:200] or None, url=safe_url(_field(data, "author_url")))


async def _youtube(target: Target, fetcher: Fetcher, endpoint: str) -> Entry:
    (video,) = target.parts
    data = await _get_json(fetcher, _oembed(endpoint, {"url": target.key, "format": "json"}), target)
    if not isinstance(data, dict):
        raise _not_a_post(target, "the oEmbed answer is not an object")
    title = plain_text(_field(data, "title"))[:MAX_TITLE] or None
    # the oEmbed `html` is an iframe from youtube.com: never used; the privacy-enhanced player is linked instead
    media = (
        Media(
            type="video",
            url=f"https://www.youtube-nocookie.com/embed/{video}",
            alt=title,
            thumbnail=safe_url(_field(data, "thumbnail_url")),
        ),
    )
    return Entry(
        key=target.key,
        kind=ItemKind.POST,
        url=target.key,
        title=title,
        text=title,
        html=None,
        content_hash=content_hash(title, None, [m.url for m in media]),
        author=_oembed_author(data),
        media=media,
        published_at=None,
    )


def x_text(blockquote: str) -> tuple[str, str | None]:
    """The post's sanitized HTML (text and links only) and the author line, from X's oEmbed `<blockquote>`."""
    match = _PARAGRAPH.search(blockquote)
    body = match.group(1) if match else blockquote
    # only text and links survive; scripts, iframes and the like go with their content
    narrowed = nh3.clean(
        body, tags={"a", "br"}, clean_content_tags=set(DROP_WITH_CONTENT), attributes={"a": {"href"}}, link_rel=None
    )
    clean = sanitize_html(narrowed)
    line = _DASH_AUTHOR.search(blockquote)
    return clean, plain_text(line.group(1)) if line else None


def _x_date(blockquote: str) -> datetime | None:
    match = _LAST_LINK_TEXT.search(blockquote)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1).strip(), "%B %d, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


async def _x(target: Target, fetcher: Fetcher, endpoint: str) -> Entry:
    params = {"url": target.key, "omit_script": "1", "dnt": "true"}
    data = await _get_json(fetcher, _oembed(endpoint, params), target)
    if not isinstance(data, dict) or not _field(data, "html"):
        raise _not_a_post(target, "the oEmbed answer has no post")
    blockquote = _field(data, "html")
    clean, byline = x_text(blockquote)
    text = html_to_text(clean)
    if not text:
        raise _not_a_post(target, "the post has no text")
    author = _oembed_author(data)
    if author.name is None and byline:
        author = Author(name=byline, url=author.url)
    handle = f"@{target.parts[0]}"
    return Entry(
        key=target.key,
        kind=ItemKind.POST,
        url=safe_url(_field(data, "url")) or target.key,
        title=None,
        text=text,
        html=clean,
        content_hash=content_hash(None, clean),
        author=Author(name=author.name, handle=handle, url=author.url),
        media=(),
        published_at=_x_date(blockquote),
    )


def _rekeyed(made: Entry, target: Target, *, url: str | None) -> Entry:
    """The platform's entry keyed by the pasted URL (pasting it again finds the same item)."""
    return replace(made, key=target.key, url=url or target.key)

"""Wire shapes of the demo's social upstreams: Mastodon REST entities, Bluesky AppView views and Jetstream events.

Pure functions from recorded posts to the JSON the real servers send (shapes follow the real payloads kept in
tests/fixtures/mastodon and tests/fixtures/bluesky). No I/O here; the routes are in curation/demo.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from curation.demo_formats import (
    MASTODON_VERSION,
    LinkPreview,
    Persona,
    Post,
    Site,
    hashtags,
    mastodon_html,
    snowflake,
    tid,
    tid_at,
    tokens,
)

JSON = dict[str, Any]
POST_COLLECTION = "app.bsky.feed.post"
#: the placeholder pictures are 640x360
IMAGE_SIZE = (640, 360)
#: the blurhash README's example: a valid hash, so clients that decode it get a plausible colour wash
BLURHASH = "LEHV6nWB2yk8pyo0adR*.7kCMdnj"
#: accounts on the demo instance and on Bluesky "exist" since before the race
ACCOUNTS_SINCE = datetime(2024, 2, 6, tzinfo=UTC)
_CID_PREFIX = {"dag-cbor": bytes([0x01, 0x71, 0x12, 0x20]), "raw": bytes([0x01, 0x55, 0x12, 0x20])}


def dump(payload: object) -> bytes:
    """Compact UTF-8 JSON, as Rails and the Go services send it (no ASCII escaping, no spaces)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def iso_ms(moment: datetime) -> str:
    """`2026-08-01T13:52:34.108Z`: the millisecond UTC form of Mastodon and atproto dates."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_us(moment: datetime) -> str:
    """`2026-08-01T13:50:00.924992Z`: X-RateLimit-Reset's microsecond form."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _counter(post: Post, salt: int, top: int) -> int:
    """A small, stable engagement count, so posts do not all read 0."""
    return (post.seq * 7919 + salt * 104729) % top


# -- Mastodon -------------------------------------------------------------------------------------


def account_id(persona: Persona) -> str:
    """A stable 18-digit account id (ids are opaque strings on the wire)."""
    digest = int.from_bytes(hashlib.sha256(persona.handle.encode()).digest()[:8], "big")
    return str(110_000_000_000_000_000 + digest % 10**16)


def status_id(post: Post) -> str:
    return str(snowflake(post))


def status_url(site: Site, persona: Persona, post: Post) -> str:
    return f"{site.base}/@{persona.handle}/{status_id(post)}"


def status_uri(site: Site, persona: Persona, post: Post) -> str:
    return f"{site.base}/users/{persona.handle}/statuses/{status_id(post)}"


def mastodon_account(site: Site, persona: Persona, posts: Sequence[Post]) -> JSON:
    """REST::AccountSerializer for a local account, as `GET /api/v1/accounts/lookup` answers it."""
    avatar = site.image_url(persona.avatar)
    return {
        "id": account_id(persona),
        "username": persona.handle,
        "acct": persona.handle,
        "display_name": persona.name,
        "locked": False,
        "bot": False,
        "discoverable": True,
        "indexable": True,
        "group": False,
        "created_at": iso_ms(ACCOUNTS_SINCE),
        "note": f"<p>{_escape(persona.bio)}</p>",
        "url": f"{site.base}/@{persona.handle}",
        "uri": f"{site.base}/users/{persona.handle}",
        "avatar": avatar,
        "avatar_static": avatar,
        "avatar_description": "",
        "header": f"{site.base}/headers/original/missing.png",
        "header_static": f"{site.base}/headers/original/missing.png",
        "header_description": "",
        "followers_count": 1200 + sum(map(ord, persona.handle)),
        "following_count": 180,
        "statuses_count": len(posts),
        "last_status_at": posts[0].published.astimezone(UTC).date().isoformat() if posts else None,
        "hide_collections": False,
        "show_media": True,
        "show_media_replies": True,
        "show_featured": True,
        "noindex": False,
        "feature_approval": {"automatic": [], "manual": [], "current_user": "denied"},
        "emojis": [],
        "roles": [],
        "fields": [],
    }


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def mastodon_status(site: Site, persona: Persona, post: Post, account: Mapping[str, Any]) -> JSON:
    """REST::StatusSerializer for a public local status (key order as a Mastodon 4.6 server sends it)."""
    step = post.step
    return {
        "id": status_id(post),
        "created_at": iso_ms(post.published),
        "in_reply_to_id": None,
        "in_reply_to_account_id": None,
        "sensitive": step.cw is not None,
        "spoiler_text": step.cw or "",
        "visibility": "public",
        "language": "en",
        "uri": status_uri(site, persona, post),
        "url": status_url(site, persona, post),
        "replies_count": _counter(post, 1, 6),
        "reblogs_count": _counter(post, 2, 40),
        "favourites_count": _counter(post, 3, 120),
        "quotes_count": 0,
        "edited_at": iso_ms(post.changed) if post.edited else None,
        "favourited": False,
        "reblogged": False,
        "muted": False,
        "bookmarked": False,
        "pinned": False,
        "content": mastodon_html(site, post.text),
        "filtered": [],
        "reblog": None,
        "application": {"name": "Web", "website": None},
        "account": dict(account),
        "media_attachments": [_attachment(site, post)] if step.image else [],
        "mentions": [],
        "tags": [{"name": tag, "url": f"{site.base}/tags/{tag}"} for tag in dict.fromkeys(hashtags(post.text))],
        "emojis": [],
        "tagged_collections": [],
        "quote": None,
        "card": _card(site, post.preview) if post.preview else None,
        "poll": None,
        "quote_approval": {"automatic": ["public"], "manual": [], "current_user": "automatic"},
    }


def _attachment(site: Site, post: Post) -> JSON:
    assert post.step.image is not None
    width, height = IMAGE_SIZE
    size = {"width": width, "height": height, "size": f"{width}x{height}", "aspect": width / height}
    url = site.image_url(post.step.image)
    # uploaded a little before the status was posted, so its id sorts just below the status id
    media_id = snowflake(post) - (15_000 << 16)
    return {
        "id": str(media_id),
        "type": "image",
        "url": url,
        "preview_url": url,
        "remote_url": None,
        "preview_remote_url": None,
        "text_url": None,
        "meta": {"original": dict(size), "small": dict(size), "focus": {"x": 0.0, "y": 0.0}},
        "description": post.step.alt or None,
        "blurhash": BLURHASH,
    }


def _card(site: Site, preview: LinkPreview) -> JSON:
    """REST::PreviewCardSerializer of a `link` card (its `html` stays empty: only video/rich cards embed)."""
    width, height = IMAGE_SIZE if preview.image else (0, 0)
    return {
        "url": preview.url,
        "title": preview.title,
        "description": preview.description,
        "language": "en",
        "type": "link",
        "author_name": "",
        "author_url": "",
        "provider_name": preview.provider,
        "provider_url": "",
        "html": "",
        "width": width,
        "height": height,
        "image": site.image_url(preview.image) if preview.image else None,
        "image_description": "",
        "embed_url": "",
        "blurhash": BLURHASH if preview.image else None,
        "published_at": None,
        "missing_attribution": False,
        "authors": [],
    }


def mastodon_instance(site: Site, title: str, contact: Mapping[str, Any] | None) -> JSON:
    """A minimal `GET /api/v2/instance` (the fields collectors read: streaming URL, timeline access)."""
    host = site.host
    public = {"local": "public", "remote": "public"}
    return {
        "domain": host,
        "title": title,
        "version": MASTODON_VERSION,
        "source_url": "https://github.com/mastodon/mastodon",
        "description": "Fil's built-in replay of a Mastodon instance (demo; all accounts are fictional).",
        "usage": {"users": {"active_month": 2}},
        "thumbnail": {"url": f"{site.base}/img/preview.svg"},
        "languages": ["en"],
        "configuration": {
            "urls": {"streaming": f"ws://{host}", "status": None},
            "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
            "statuses": {"max_characters": 500, "max_media_attachments": 4, "characters_reserved_per_url": 23},
            "translation": {"enabled": False},
            "timelines_access": {"live_feeds": public, "hashtag_feeds": public, "trending_link_feeds": public},
        },
        "registrations": {"enabled": False, "approval_required": False, "message": None, "url": None},
        "contact": {"email": "", "account": dict(contact) if contact else None},
        "rules": [],
    }


# -- Bluesky --------------------------------------------------------------------------------------


def cid(data: bytes, codec: str = "dag-cbor") -> str:
    """A CIDv1 (sha2-256) in base32, as atproto writes record ("bafyrei...") and blob ("bafkrei...") ids."""
    raw = _CID_PREFIX[codec] + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def short_url(url: str) -> str:
    """The Bluesky app's toShortUrl: host + 13 characters of the path, then "..." (the facet keeps the full URL)."""
    parts = urlsplit(url)
    path = ("" if parts.path == "/" else parts.path) + (f"?{parts.query}" if parts.query else "")
    path += f"#{parts.fragment}" if parts.fragment else ""
    return parts.netloc + (path[:13] + "..." if len(path) > 15 else path)


def rich_text(text: str) -> tuple[str, list[JSON]]:
    """The post text as the app writes it (links shortened) and its facets, with UTF-8 byte offsets."""
    shown: list[str] = []
    facets: list[JSON] = []
    offset = 0
    for kind, value in tokens(text):
        part = short_url(value) if kind == "url" else f"#{value}" if kind == "tag" else value
        end = offset + len(part.encode("utf-8"))
        if kind == "url":
            facets.append(_facet(offset, end, {"$type": "app.bsky.richtext.facet#link", "uri": value}))
        elif kind == "tag":
            facets.append(_facet(offset, end, {"$type": "app.bsky.richtext.facet#tag", "tag": value}))
        shown.append(part)
        offset = end
    return "".join(shown), facets


def _facet(start: int, end: int, feature: JSON) -> JSON:
    return {"features": [feature], "index": {"byteEnd": end, "byteStart": start}}


def at_uri(persona: Persona, post: Post) -> str:
    return f"at://{persona.did}/{POST_COLLECTION}/{tid(post)}"


def bluesky_image(post: Post) -> str | None:
    """The post's picture, only where no stream carried it live.

    Jetstream records hold blobs that collectors turn into cdn.bsky.app URLs, which do not load offline; the
    AppView form can point at this upstream. So only first-batch posts (dated before the start) keep a picture.
    """
    return post.step.image if post.historical else None


def bsky_record(site: Site, post: Post) -> JSON:
    """The raw app.bsky.feed.post record, keys sorted as the Go services marshal it."""
    text, facets = rich_text(post.text)
    record: JSON = {"$type": POST_COLLECTION, "createdAt": iso_ms(post.published)}
    image = bluesky_image(post)
    if image is not None:
        width, height = IMAGE_SIZE
        blob = {
            "$type": "blob",
            "ref": {"$link": cid(site.images.get(image, image.encode()), "raw")},
            "mimeType": "image/jpeg",
            "size": len(site.images.get(image, b"")),
        }
        entry = {"alt": post.step.alt or "", "aspectRatio": {"height": height, "width": width}, "image": blob}
        record["embed"] = {"$type": "app.bsky.embed.images", "images": [entry]}
    elif post.preview is not None:
        external = {"description": post.preview.description, "title": post.preview.title, "uri": post.preview.url}
        record["embed"] = {"$type": "app.bsky.embed.external", "external": external}
    if facets:
        record["facets"] = facets
    record["langs"] = ["en"]
    record["text"] = text
    return record


def record_cid(record: Mapping[str, Any]) -> str:
    return cid(dump(record))


def _embed_view(site: Site, post: Post) -> JSON | None:
    image = bluesky_image(post)
    if image is not None:
        width, height = IMAGE_SIZE
        url = site.image_url(image)
        view = {
            "thumb": url,
            "fullsize": url,
            "alt": post.step.alt or "",
            "aspectRatio": {"height": height, "width": width},
        }
        return {"$type": "app.bsky.embed.images#view", "images": [view]}
    if post.preview is not None:
        external = {"uri": post.preview.url, "title": post.preview.title, "description": post.preview.description}
        return {"$type": "app.bsky.embed.external#view", "external": external}
    return None


def profile_basic(site: Site, persona: Persona) -> JSON:
    """app.bsky.actor.defs#profileViewBasic, as postView.author carries it."""
    return {
        "did": persona.did,
        "handle": persona.handle,
        "displayName": persona.name,
        "avatar": site.image_url(persona.avatar),
        "associated": {"chat": {"allowIncoming": "all"}},
        "viewer": {"muted": False, "blockedBy": False},
        "labels": [],
        "createdAt": iso_ms(ACCOUNTS_SINCE),
    }


def profile_detailed(site: Site, persona: Persona, posts_count: int) -> JSON:
    """app.bsky.actor.defs#profileViewDetailed, as getProfile(s) answers."""
    basic = profile_basic(site, persona)
    return {
        "did": persona.did,
        "handle": persona.handle,
        "displayName": persona.name,
        "avatar": basic["avatar"],
        "associated": {"lists": 0, "feedgens": 0, "starterPacks": 0, "labeler": False, **basic["associated"]},
        "viewer": basic["viewer"],
        "labels": [],
        "createdAt": basic["createdAt"],
        "description": persona.bio,
        "indexedAt": basic["createdAt"],
        "followersCount": 2400 + sum(map(ord, persona.handle)),
        "followsCount": 310,
        "postsCount": posts_count,
    }


def post_view(site: Site, persona: Persona, post: Post) -> JSON:
    """app.bsky.feed.defs#postView (the shape getAuthorFeed, getPosts and getPostThread share)."""
    record = bsky_record(site, post)
    view: JSON = {
        "uri": at_uri(persona, post),
        "cid": record_cid(record),
        "author": profile_basic(site, persona),
        "record": record,
    }
    embed = _embed_view(site, post)
    if embed is not None:
        view["embed"] = embed
    view.update(
        {
            "replyCount": _counter(post, 4, 8),
            "repostCount": _counter(post, 5, 60),
            "likeCount": _counter(post, 6, 400),
            "quoteCount": _counter(post, 7, 3),
            "indexedAt": iso_ms(post.published),
            "viewer": {"threadMuted": False},
            "labels": [],
        }
    )
    return view


def jetstream_create(site: Site, persona: Persona, post: Post, time_us: int) -> JSON:
    """A Jetstream v1 `create` commit event for the post (field order as the v1 wire has it)."""
    record = bsky_record(site, post)
    commit = {
        "rev": tid_at(time_us, post.seq),
        "operation": "create",
        "collection": POST_COLLECTION,
        "rkey": tid(post),
        "record": record,
        "cid": record_cid(record),
    }
    return {"did": persona.did, "time_us": time_us, "kind": "commit", "commit": commit}


def jetstream_delete(persona: Persona, post: Post, time_us: int, clock_id: int) -> JSON:
    """A Jetstream v1 `delete` commit event: no record, no cid."""
    commit = {"rev": tid_at(time_us, clock_id), "operation": "delete", "collection": POST_COLLECTION, "rkey": tid(post)}
    return {"did": persona.did, "time_us": time_us, "kind": "commit", "commit": commit}

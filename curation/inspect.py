"""`inspect`: parse upstream documents exactly as a collector would, one kind at a time. Pure: bytes in."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

from curation.collectors.atproto import MalformedPost, read_feed, read_jetstream_lines
from curation.collectors.feed_parser import parse_document
from curation.collectors.mastodon_status import convert, read_statuses
from curation.collectors.push import PushRejected, parse_batch
from curation.errors import ParseError
from curation.models import Entry

KINDS = ("feed", "mastodon", "bluesky", "jetstream", "push")


def _feed(body: bytes, content_type: str | None, url: str) -> list[Entry]:
    return parse_document(body, content_type=content_type, url=url, source_id=url).entries


def _mastodon(body: bytes, content_type: str | None, url: str) -> list[Entry]:
    try:
        value = json.loads(body)
    except ValueError as e:
        raise ParseError(f"not JSON: {e}") from None
    statuses = value if isinstance(value, list) else [value]  # a timeline page or one status
    refs, _ = read_statuses(statuses)
    entries, _ = convert([ref.data for ref in refs], urlsplit(url).hostname or "")
    return entries


def _bluesky(body: bytes, content_type: str | None, url: str) -> list[Entry]:
    try:
        value = json.loads(body)
    except ValueError as e:
        raise ParseError(f"not JSON: {e}") from None
    if isinstance(value, dict) and isinstance(value.get("thread"), dict):
        # getPostThread: the thread's own post, as getPosts would give it
        body = json.dumps({"posts": [value["thread"].get("post")]}).encode()
    try:
        return read_feed(body, replies=True).entries
    except MalformedPost as e:
        raise ParseError(str(e)) from None


def _jetstream(body: bytes, content_type: str | None, url: str) -> list[Entry]:
    return read_jetstream_lines(body).entries


def _push(body: bytes, content_type: str | None, url: str) -> list[Entry]:
    try:
        return parse_batch(body)
    except PushRejected as e:
        raise ParseError(e.message) from None


PARSERS: dict[str, Callable[[bytes, str | None, str], list[Entry]]] = {
    "feed": _feed,
    "mastodon": _mastodon,
    "bluesky": _bluesky,
    "jetstream": _jetstream,
    "push": _push,
}


def entries_of(kind: str, body: bytes, *, content_type: str | None, url: str) -> list[Entry]:
    """The Entries of one document. Raises ParseError (or ValueError) naming what is wrong."""
    return PARSERS[kind](body, content_type, url)

"""Malformed and huge input (issue 7 §2): every parser entry point fed junk and mutated real fixtures.

The property everywhere: a valid result, or the module's documented error naming what is wrong; never another
exception. Inputs are arbitrary bytes and text, and structure-aware mutations of tests/fixtures (values swapped
for other types, keys dropped, huge strings, deep nesting, lone surrogates, flipped and truncated bytes).
Hypothesis runs derandomized with no example database, so CI sees the same examples every time;
FIL_PROPERTY_EXAMPLES=N runs N random examples per property instead, to hunt for new bugs.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from websockets.asyncio.client import connect

from curation import paste, posts
from curation.codec import entry_to_json
from curation.collectors import CollectorContext, atproto, json_input, mastodon, mastodon_status
from curation.collectors.bluesky import _json_object, _xrpc_error, jwt_expiry
from curation.collectors.feed_parser import ParsedFeed, parse_document
from curation.collectors.fetch import FetchResult
from curation.collectors.jetstream import JetstreamConnection, RecentKeys, Subscription
from curation.collectors.mastodon import MastodonCollector, Target
from curation.collectors.push import PushRejected, parse_batch, sign, verify
from curation.errors import ConfigErrors, ParseError, SourceError
from curation.header import Header, HeaderError, parse_header
from curation.models import Config, Entry, SourceKind, SourceStatus, utcnow
from curation.posts import PostError
from curation.sources import parse_config
from curation.web.editor_api import Refused, _field, _post_from, json_body
from curation.web.live import parse_since
from tests.conftest import RunningFil, make_source, start_fil
from tests.test_live_e2e import next_message
from tests.upstreams import FakeUpstream, upstream  # noqa: F401 - fixture

FIXTURES = Path(__file__).parent / "fixtures"
T = TypeVar("T")

#: FIL_PROPERTY_EXAMPLES=5000 explores far more, at random (a bug hunt, not a CI run)
_HUNT = int(os.environ.get("FIL_PROPERTY_EXAMPLES", "0"))
#: every property: deterministic (derandomize, no database) and fast enough for `make test`
PROPERTY = settings(
    max_examples=_HUNT or 60,
    deadline=10_000 if _HUNT else None,  # a hunt also reports any example slower than 10 s
    derandomize=not _HUNT,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FEW = settings(PROPERTY, max_examples=_HUNT or 25)


def _json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# -- strategies --------------------------------------------------------------------------------------------

NASTY = [
    "",
    " \t\r\n",
    "\x00",
    "\ud800",
    "a\udfffb",
    "\ufeff",
    "\u202e",
    "🎉🎉",
    "&#xD800;",
    "&#x110000;",
    "&lol;",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "https://example.org/a?b=c#d",
    "http://10.0.0.1/",
    "http://[::1/",
    "at://did:plc:abc/app.bsky.feed.post/3k",
    "did:plc:abc",
    "2027-07-12T12:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "9" * 5000,
    "x" * 200_000,
]
#: a placeholder swapped for real nesting after json.dumps (which cannot write 100k levels itself)
_DEEP = re.compile(r'"\\u0000deep(\d+)\\u0000"')


def _deep(levels: int) -> str:
    return f"\x00deep{levels}\x00"


def _keys_of(*values: Any) -> list[str]:
    """Every key in some fixtures, so that random objects hit the fields parsers read."""
    found: set[str] = set()
    stack = list(values)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.update(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(found)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(NASTY),
)


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    names = st.sampled_from(keys) | st.text(max_size=8) if keys else st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
        max_leaves=8,
    )


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value inside `value`."""
    slots: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        node = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, inner in pairs:
            slots.append((node, key))
            stack.append(inner)
    return slots


@st.composite
def mutated(draw: st.DrawFn, original: Any, *, deep: bool = False, small: bool = False) -> Any:
    """A copy of a JSON value with a few random changes; `deep` allows placeholders for 100k-level nesting,
    `small` keeps it small (for the pure-Python YAML parser)."""
    value = copy.deepcopy(original)
    keys = _keys_of(original)
    operations = ["swap", "swap", "drop", "nasty", "nest", "copy"] + (["deep"] if deep else [])
    operations += [] if small else ["huge"]
    nasty = [n for n in NASTY if len(n) < 10_000] if small else NASTY
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        slots = _slots(value)
        if not slots:
            return draw(json_values(keys))
        container, key = draw(st.sampled_from(slots))
        operation = draw(st.sampled_from(operations))
        if operation == "swap":
            container[key] = draw(json_values(keys))
        elif operation == "drop":
            del container[key]
        elif operation == "nasty":
            container[key] = draw(st.sampled_from(nasty))
        elif operation == "huge":
            # a few MB at most: the point is many entries, not a document that takes the test minutes to write
            size = len(json.dumps(container[key]))
            times = draw(st.sampled_from([2, 50, 3000]))
            container[key] = [copy.deepcopy(container[key])] * min(times, max(2, 2_000_000 // (size + 1)))
        elif operation == "nest":
            inner = container[key]
            for _ in range(draw(st.integers(min_value=1, max_value=20 if small else 200))):
                inner = [inner] if draw(st.booleans()) else {"k": inner}
            container[key] = inner
        elif operation == "copy":
            other, other_key = draw(st.sampled_from(slots))
            if len(json.dumps(other[other_key])) < 100_000:
                container[key] = copy.deepcopy(other[other_key])
        else:
            container[key] = _deep(draw(st.sampled_from([900, 1000, 5000, 100_000])))
    return value


def dumps(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON bytes; lone surrogates as escapes (ascii_only) or as CESU-8 bytes, deep placeholders expanded."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    text = _DEEP.sub(lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)
    return text.encode("utf-8", "surrogatepass")


def as_text(body: bytes) -> str:
    """A websocket text frame of these bytes (lone surrogates kept; random bytes that are no UTF-8 replaced)."""
    try:
        return body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return body.decode("utf-8", "replace")


def decoded(value: Any) -> Any:
    """A value as it reaches a parser: through the JSON decoder every entry point uses (curation/collectors/
    json_input.py), which turns lone surrogates into U+FFFD."""
    return json_input.loads(dumps(value, ascii_only=False))


@st.composite
def json_bytes(draw: st.DrawFn, original: Any) -> bytes:
    """Mutated fixture JSON as bytes, or now and then arbitrary bytes."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(st.binary(max_size=200))
    return dumps(draw(mutated(original, deep=True)), ascii_only=draw(st.booleans()))


SNIPPETS = [
    b"&#xD800;",
    b"&#55296;",
    b"&#x110000;",
    b"&#" + b"9" * 5000 + b";",
    b"\x00",
    b"\xed\xa0\x80",
    b"\xff\xfe",
    b"<",
    b"</item>",
    b"<item>",
    b"<![CDATA[",
    b"]]>",
    b"&lol;",
    b'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    b"<" + b"a>" * 3000,
    b'<link href="javascript:alert(1)"/>',
    b'<media:content url="//x" medium="image"/>',
    b"x" * 100_000,
]


@st.composite
def mutated_bytes(draw: st.DrawFn, original: bytes) -> bytes:
    """A document with bytes flipped, cut, repeated or spliced with hostile snippets."""
    body = bytearray(original)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=max(0, len(body) - 1)))
        operation = draw(st.sampled_from(["flip", "truncate", "insert", "snippet", "repeat", "delete", "prolog"]))
        if operation == "prolog":  # a declared encoding of any bytes, NUL and non-ASCII included
            body[0:0] = b'<?xml version="1.0" encoding="' + draw(st.binary(max_size=8)) + b'"?>'
        elif operation == "flip" and body:
            body[at] = draw(st.integers(min_value=0, max_value=255))
        elif operation == "truncate":
            del body[at:]
        elif operation == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif operation == "snippet":
            body[at:at] = draw(st.sampled_from(SNIPPETS))
        elif operation == "repeat":
            end = draw(st.integers(min_value=at, max_value=min(len(body), at + 400)))
            body[at:at] = body[at:end] * draw(st.integers(min_value=1, max_value=30))
        else:
            end = draw(st.integers(min_value=at, max_value=min(len(body), at + 200)))
            del body[at:end]
    return bytes(body)


def utf8_safe(value: Any) -> None:
    """What a parser hands on must encode as UTF-8: a lone surrogate would crash the store or a page later."""
    json.dumps(value, ensure_ascii=False).encode("utf-8")


def entries_ok(entries: list[Entry]) -> None:
    for entry in entries:
        assert isinstance(entry, Entry) and entry.key
        utf8_safe(entry_to_json(entry))


# -- feeds (RSS, Atom, RDF, JSON Feed) ---------------------------------------------------------------------

XML_FIXTURES = [
    (FIXTURES / "feeds" / name).read_bytes()
    for name in (
        "mastodon_rss_alt_text.xml",
        "youtube_channel_tagesschau.xml",
        "relative_xml_base.atom",
        "bluesky_profile.rss",
        "encoding_koi8-r.rss",
        "hostile_html.rss",
        "duplicate_guids.rss",
    )
]
JSON_FEEDS = [_json(f"feeds/{name}") for name in ("jsonfeed_1.1_full_lemon24.json", "jsonfeed_1.0_author.json")]
CONTENT_TYPES = st.sampled_from(
    [None, "application/rss+xml", "application/atom+xml; charset=koi8-r", "application/feed+json", "text/html", "x/y"]
)


def _parse_feed(body: bytes, content_type: str | None) -> ParsedFeed | None:
    try:
        parsed = parse_document(body, content_type=content_type, url="https://feed.example/feed.xml", source_id="f")
    except ParseError as e:
        assert str(e).startswith("f: not a feed: https://feed.example/feed.xml")
        return None
    entries_ok(parsed.entries)
    utf8_safe([parsed.title, parsed.hubs, parsed.self_url])
    assert len({e.key for e in parsed.entries}) == len(parsed.entries)
    return parsed


@PROPERTY
@given(body=st.binary(max_size=3000), content_type=CONTENT_TYPES)
def test_feed_parser_takes_arbitrary_bytes(body: bytes, content_type: str | None) -> None:
    _parse_feed(body, content_type)


@PROPERTY
@given(body=st.sampled_from(XML_FIXTURES).flatmap(mutated_bytes), content_type=CONTENT_TYPES)
def test_feed_parser_takes_damaged_xml_feeds(body: bytes, content_type: str | None) -> None:
    _parse_feed(body, content_type)


@PROPERTY
@given(body=st.sampled_from(JSON_FEEDS).flatmap(json_bytes), content_type=CONTENT_TYPES)
def test_feed_parser_takes_mutated_json_feeds(body: bytes, content_type: str | None) -> None:
    _parse_feed(body, content_type)


def test_character_references_to_no_character_read_as_replacement_characters() -> None:
    """Found by the properties above: feedparser's fallback parser raised on these, out of parse()."""
    body = (
        b'<rss version="2.0"><channel><title>a&#xD800;b</title><item><guid>g</guid>'
        b"<title>t&#55296;&#x110000;&#" + b"9" * 5000 + b";</title><description>x&#xDC00;</description>"
        b"</item></channel></rss"  # unclosed: the strict parser gives up and the fallback one reads it
    )
    parsed = parse_document(body, content_type=None, url="https://feed.example/")
    assert parsed.title == "a\ufffdb"
    assert [(e.title, e.text) for e in parsed.entries] == [("t\ufffd\ufffd\ufffd", "x\ufffd")]


@pytest.mark.parametrize("declared", [b"\x80UTF-8", b"\x00TF-8", b"\xff"])
def test_a_declared_encoding_that_is_no_text_is_a_parse_error(declared: bytes) -> None:
    """Found by the property above: feedparser's encoding sniffing raised UnicodeDecodeError or ValueError."""
    body = XML_FIXTURES[0].replace(b'encoding="UTF-8"', b'encoding="' + declared + b'"')
    with pytest.raises(ParseError, match="unreadable character encoding"):
        parse_document(body, content_type=None, url="https://feed.example/")


def test_lone_surrogates_in_a_json_feed_become_replacement_characters() -> None:
    """Found by the properties above: "\\ud800" is valid JSON, and crashed the sanitizer."""
    item = {"id": "1", "title": "a\ud800", "content_html": "<p>b\udc00</p>", "authors": [{"name": "\udfff"}]}
    for ascii_only in (True, False):
        body = dumps({"version": "https://jsonfeed.org/version/1.1", "items": [item]}, ascii_only=ascii_only)
        (entry,) = parse_document(body, content_type=None, url="https://feed.example/").entries
        assert (entry.title, entry.text, entry.author.name) == ("a\ufffd", "b\ufffd", "\ufffd")


# -- XML entities: never expanded past a bound, never fetched, never read from disk --------------------------


def _xxe_documents(base: str) -> dict[str, str]:
    item = "<item><guid>x</guid><title>A &xxe;</title><description>B &xxe;</description></item>"
    channel = f'<rss version="2.0"><channel><title>T &xxe;</title>{item}</channel></rss>'
    return {
        "general entity, http": f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{base}/xxe">]>\n{channel}',
        "general entity, file, own line": f'<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n{channel}',
        "general entity, fallback parser": f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{base}/xxe">]>\n{channel[:-6]}',
        "external DTD": f'<!DOCTYPE rss SYSTEM "{base}/evil.dtd">\n{channel}',
        "parameter entity": f'<!DOCTYPE rss [<!ENTITY % remote SYSTEM "{base}/evil.dtd"> %remote;]>\n{channel}',
        "public id": f'<!DOCTYPE rss PUBLIC "-//X//Y" "{base}/evil.dtd">\n{channel}',
        "xinclude": channel.replace(
            "<title>T &xxe;</title>",
            '<title xmlns:xi="http://www.w3.org/2001/XInclude">T<xi:include href="file:///etc/passwd" parse="text"/>'
            f'<xi:include href="{base}/xxe" parse="text"/></title>',
        ),
    }


async def test_external_entities_and_dtds_are_never_fetched_or_read(upstream: FakeUpstream) -> None:  # noqa: F811
    """XXE in every form (http and file entities, an external DTD, parameter entities, XInclude, the fallback
    parser's path): nothing is fetched, no file content appears. defusedxml is not needed: the strict parser is
    expat with external entities off, and feedparser's fallback parser keeps only literal entity values."""
    upstream.add("/xxe", "SECRET-FROM-THE-NETWORK", content_type="text/plain")
    upstream.add("/evil.dtd", '<!ENTITY xxe SYSTEM "file:///etc/passwd">', content_type="application/xml-dtd")
    for name, document in _xxe_documents(upstream.base_url).items():
        body = b'<?xml version="1.0"?>\n' + document.encode()
        # in a thread: a parser fetching synchronously would otherwise block the fake server's loop
        parsed = await asyncio.wait_for(asyncio.to_thread(_parse_feed, body, "application/rss+xml"), 30)
        dumped = json.dumps([entry_to_json(e) for e in parsed.entries] if parsed else []) + str(parsed and parsed.title)
        assert "SECRET" not in dumped and "root:" not in dumped, name
    assert upstream.requests == []


def test_entity_expansion_is_bounded_in_the_fallback_parser_too() -> None:
    """tests/test_feed_parser.py covers a well-formed "billion laughs"; broken XML goes to feedparser's loose
    parser, which must not expand it either."""
    body = (FIXTURES / "feeds" / "entity_expansion.rss").read_bytes().replace(b"</rss>", b"</rs")
    parsed = _parse_feed(body, None)
    assert parsed is not None
    assert all(len(e.title or "") + len(e.text or "") < 1000 for e in parsed.entries)
    assert len(parsed.title or "") < 1000


# -- Mastodon ----------------------------------------------------------------------------------------------

STATUSES = [
    _json(f"mastodon/{name}.json")
    for name in ("status_local_card", "status_remote_cw_gifv_emoji_edited", "status_bridged_bsky_quote")
]
TIMELINE = _json("mastodon/timeline_tag_hoot.json")[:3]


@PROPERTY
@given(status=st.sampled_from(STATUSES).flatmap(mutated).map(decoded))
def test_a_mutated_mastodon_status_is_read_or_skipped_never_a_crash(status: Any) -> None:
    ref = mastodon_status.read_status(status)
    assert ref is None or ref.data is status
    entries, failed = mastodon_status.convert([status] if isinstance(status, dict) else [], "social.example")
    entries_ok(entries)
    try:
        entries_ok([mastodon_status.status_entry(status, "social.example")] if isinstance(status, dict) else [])
    except ValueError:
        assert failed == 1


@PROPERTY
@given(body=json_bytes(TIMELINE))
def test_a_mutated_mastodon_timeline_is_a_page_or_a_parse_error(body: bytes) -> None:
    response = FetchResult(200, "https://social.example/api/v1/timelines/tag/x", None, {}, body, None, None, None)
    try:
        refs, malformed = mastodon_status.read_statuses(mastodon._json(response))
    except ParseError as e:
        assert "https://social.example/api/v1/timelines/tag/x: not JSON" in str(e)
        return
    except ValueError as e:
        assert "expected a JSON array of statuses" in str(e)
        return
    entries, _ = mastodon_status.convert([r.data for r in refs], "social.example")
    entries_ok(entries)


def _stream_frames() -> st.SearchStrategy[str]:
    payload = st.sampled_from(STATUSES).flatmap(lambda s: mutated(s, deep=True)).map(lambda s: dumps(s).decode())
    event = st.sampled_from(["update", "status.update", "delete", "notification", 42, None])
    frame = st.fixed_dictionaries({"stream": st.just(["hashtag", "x"]), "event": event, "payload": payload})
    return st.one_of(
        frame.map(lambda f: as_text(dumps(f))),
        frame.flatmap(mutated).map(lambda f: as_text(dumps(f, ascii_only=False))),
        st.text(max_size=200),
        st.just("[" * 100_000 + "]" * 100_000),
    )


@FEW
@given(frames=st.lists(_stream_frames(), min_size=1, max_size=4))
def test_mastodon_stream_frames_are_taken_or_ignored(frames: list[str]) -> None:
    source = make_source(
        "m", kind=SourceKind.MASTODON, url=None, options={"instance": "https://social.example", "hashtag": "x"}
    )
    target = Target.of(source)
    status = SourceStatus(id="m", kind="mastodon")
    delivered: list[Any] = []

    async def deliver(result: Any) -> None:
        delivered.append(result)

    async def run() -> None:
        collector = MastodonCollector(CollectorContext(fetcher=None))  # type: ignore[arg-type]  # never fetches here
        for frame in frames:
            try:
                await collector._on_frame(target, status, None, {}, frame, deliver)
            except SourceError as e:
                assert "streaming on social.example:" in str(e)

    asyncio.run(run())
    for result in delivered:
        entries_ok(result.entries)


# -- Bluesky (AppView JSON) and Jetstream ------------------------------------------------------------------

THREAD = _json("bluesky/getPostThread_recordWithMedia.json")
POST_VIEW = THREAD["thread"]["post"]
AUTHOR_FEED = {"feed": [{"post": POST_VIEW}, {"post": POST_VIEW, "reason": {"$type": "x#reasonRepost"}}], "cursor": "c"}
JETSTREAM = [
    json.loads(line)
    for name in ("jetstream_v1_posts.jsonl", "jetstream_v1_golden.jsonl")
    for line in (FIXTURES / "bluesky" / name).read_text(encoding="utf-8").splitlines()
    if line.strip()
][:8]


@PROPERTY
@given(body=json_bytes(AUTHOR_FEED))
def test_a_mutated_author_feed_is_a_page_or_malformed(body: bytes) -> None:
    try:
        page = atproto.read_feed(body, seen=frozenset({"at://did:plc:seen/app.bsky.feed.post/1"}))
    except atproto.MalformedPost:
        return
    entries_ok(page.entries)


def test_a_post_uri_that_is_a_list_or_an_object_is_malformed_not_a_crash() -> None:
    """Found by the property above (FIL_PROPERTY_EXAMPLES): `uri in seen` raised TypeError (unhashable)."""
    for uri in ([], {}, [POST_VIEW["uri"]]):
        feed = {"feed": [{"post": dict(POST_VIEW, uri=uri)}, {"post": POST_VIEW}]}
        page = atproto.read_feed(json.dumps(feed).encode(), seen=frozenset({"at://did:plc:x/app.bsky.feed.post/1"}))
        assert (len(page.entries), page.skipped) == (1, {"malformed": 1})


@PROPERTY
@given(view=mutated(POST_VIEW).map(decoded))
def test_a_mutated_post_view_is_an_entry_or_malformed(view: Any) -> None:
    try:
        entries_ok([atproto.entry_from_post_view(view)])
    except atproto.MalformedPost:
        pass


@PROPERTY
@given(body=json_bytes({"did": "did:plc:abc", "accessJwt": "a.b.c", "error": "ExpiredToken", "message": "m"}))
def test_other_bluesky_answers_are_read_or_refused(body: bytes) -> None:
    try:
        utf8_safe(_json_object(body, "https://appview.example/xrpc/x"))
    except ParseError as e:
        assert "https://appview.example/xrpc/x" in str(e)
    utf8_safe(_xrpc_error(body))
    jwt_expiry("x." + base64.urlsafe_b64encode(body).decode().rstrip("=") + ".y")


def _jetstream_frames() -> st.SearchStrategy[str]:
    mutated_frame = st.sampled_from(JETSTREAM).flatmap(json_bytes).map(as_text)
    return st.one_of(mutated_frame, st.text(max_size=300))


@PROPERTY
@given(frame=_jetstream_frames())
def test_jetstream_frames_parse_or_are_malformed(frame: str) -> None:
    try:
        event = atproto.parse_frame(frame)
    except atproto.MalformedPost:
        return
    batch = atproto.read_events([event], {}, replies=True)
    entries_ok(batch.entries)


@FEW
@given(frames=st.lists(_jetstream_frames(), min_size=1, max_size=6))
def test_the_jetstream_connection_skips_garbage_and_goes_on(frames: list[str]) -> None:
    """The socket reader itself: a frame it cannot read is counted, never an exception that drops every stream."""
    connection = JetstreamConnection("wss://jetstream.example/subscribe", None, recent=RecentKeys(), on_closed=id)  # type: ignore[arg-type]
    for did in {e["did"] for e in JETSTREAM}:
        connection.subscriptions[did] = [Subscription(connection, did, None)]
    good = JETSTREAM[0]
    for frame in [*frames, json.dumps(good)]:
        connection._frame(frame)
    assert connection.subscriptions[good["did"]][0].backlog >= 1


# -- push bodies ------------------------------------------------------------------------------------------

PUSH_ITEM = {
    "id": "wire-1",
    "url": "https://wire.example/1",
    "title": "Wire 1",
    "text": "Flash 1",
    "html": "<p>Flash <b>1</b></p>",
    "kind": "update",
    "published_at": "2027-07-12T12:00:00Z",
    "author": {"name": "Agency", "handle": "@agency", "url": "https://wire.example/", "avatar": None},
    "media": [{"type": "image", "url": "https://img.wire.example/1.jpg", "alt": "the breakaway"}],
}


@PROPERTY
@given(body=json_bytes({"items": [PUSH_ITEM, dict(PUSH_ITEM, id="wire-2")]}))
def test_a_push_body_is_a_batch_or_a_400_naming_the_field(body: bytes) -> None:
    try:
        entries_ok(parse_batch(body))
    except PushRejected as e:
        assert e.status == 400 and re.match(r"^(body|items(\[\d+\](\.\w+(\[\d+\])?(\.\w+)?)?)?):", e.message), e.message


@PROPERTY
@given(
    timestamp=st.none() | st.text(max_size=30), signature=st.none() | st.text(max_size=80), body=st.binary(max_size=50)
)
def test_push_signature_headers_are_checked_never_a_crash(
    timestamp: str | None, signature: str | None, body: bytes
) -> None:
    with pytest.raises(PushRejected) as refused:
        verify([b"secret"], timestamp, signature, body, now=time.time())
    assert refused.value.status == 401


def test_a_date_pushed_out_of_range_by_its_offset_is_a_400() -> None:
    """Found by the property above: it was an AssertionError (a 500)."""
    for date in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(PushRejected, match=r"items\[0\]\.published_at: out of range"):
            parse_batch(json.dumps({"items": [dict(PUSH_ITEM, published_at=date)]}).encode())


# -- sources.yaml ------------------------------------------------------------------------------------------

SOURCES_YAML = """\
sources:
  - &wire {id: wire, kind: push, role: editorial, secret_env: WIRE_SECRET}
events:
  - slug: stage-1
    title: "Stage 1"
    language: en
    timezone: Europe/Paris
    keywords: {block: [spoiler], allow: []}
    sources:
      - id: desk
        kind: feed
        url: https://news.example/feed.xml
        role: editorial
        interval: 2m
        backfill: 30
      - {id: rider, kind: bluesky, actor: rider.bsky.social, role: athlete}
      - {id: toots, kind: mastodon, instance: https://social.example, hashtag: tdf, role: other, boosts: false}
      - use: wire
"""
YAML_SNIPPETS = [
    "\t", ":", "- ", "&a ", "*a", "<<: *wire", "!!python/object:os.system", "[", "{", "'", '"', "\x00", "\ud800",
    "1" + "0" * 5000, "[" * 300, "? ", "|", "%YAML 1.1\n", "---\n", "...\n", "interval: 1" + "0" * 400,
]  # fmt: skip


@st.composite
def yaml_texts(draw: st.DrawFn) -> str:
    kind = draw(st.integers(min_value=0, max_value=3))
    if kind == 0:
        return draw(st.text(max_size=300))
    if kind == 1:  # the structure changed, written back as YAML
        import yaml

        return str(yaml.safe_dump(draw(mutated(yaml.safe_load(SOURCES_YAML), small=True))))
    text = SOURCES_YAML
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(YAML_SNIPPETS)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=40)) :]
    return text


@PROPERTY
@given(text=yaml_texts())
def test_sources_yaml_is_a_config_or_every_error_located(text: str) -> None:
    try:
        config = parse_config(text, min_interval=30)
    except ConfigErrors as e:
        assert e.errors and all(err.path == "sources.yaml" and err.line and err.message for err in e.errors)
        return
    assert isinstance(config, Config)
    assert all(30 <= s.interval <= 7 * 86400 for s in config.sources.values())


def test_sources_yaml_nested_too_deeply_or_with_huge_numbers_is_an_error() -> None:
    """Found by the property above: RecursionError and ValueError escaped, and `interval: 1` followed by
    thousands of zeros was taken as an infinite interval, which then crashed the source's runner."""
    cases = {
        "events: " + "[" * 5000 + "]" * 5000: "invalid YAML: nested too deeply",
        SOURCES_YAML.replace("backfill: 30", "backfill: 1" + "0" * 5000): "backfill is out of range: use 0 to 500",
        SOURCES_YAML.replace("interval: 2m", "interval: 1" + "0" * 400): "is above the ceiling of 604800s",
        SOURCES_YAML.replace("interval: 2m", "interval: 999999d"): "is above the ceiling of 604800s",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigErrors, match=message):
            parse_config(text)


# -- the reader websocket's `since`, the header block, editors' JSON bodies, pasted URLs -------------------


@PROPERTY
@given(raw=st.none() | st.text(max_size=30) | st.integers().map(str) | st.sampled_from(["9" * 5000, "-0", "1e3", "٣"]))
def test_a_since_value_is_a_count_none_or_a_reset(raw: str | None) -> None:
    since = parse_since(raw)
    assert since is None or (isinstance(since, int) and since >= -1)


HEADER = {
    "version": 3,
    "summary": "**Breakaway** of four, [live](https://news.example/live)",
    "facts": [{"label": "Distance", "value": "182 km"}, {"label": "Gap", "value": 42}],
    "standings": [{"rank": "1", "name": "A. Rider", "detail": "+0:00"}],
}


@PROPERTY
@given(body=mutated(HEADER).map(decoded))
def test_a_header_body_is_a_header_or_names_its_bad_field(body: Any) -> None:
    try:
        header, version = parse_header(body)
    except HeaderError as e:
        assert re.match(r"^(body|version|summary|facts|standings)(\[\d+\](\.\w+)?)?: ", str(e)), str(e)
        return
    assert isinstance(header, Header) and (version is None or isinstance(version, int))
    utf8_safe(header.to_json())


POST = {"text": "A **bold** move", "image_url": "https://img.example/a.jpg", "image_alt": "a", "link": None,
        "key_moment": "Attack", "publish_at": "2027-07-12T12:00:00+02:00", "version": 2}  # fmt: skip
ACTION = {"action": "publish", "label": "x", "text": "y", "version": 1}


@PROPERTY
@given(body=mutated(POST).map(decoded))
def test_a_desk_post_body_is_a_post_or_names_its_bad_field(body: Any) -> None:
    try:
        post, _ = _post_from(body)
    except PostError as e:
        assert re.match(r"^(body|text|image_url|image_alt|link|key_moment|publish_at|version): ", str(e)), str(e)
        return
    item = posts.new_item(post, event="e", editor="ed", key="k", label="Desk", now=utcnow())
    utf8_safe([item.html, item.text, item.title])


@PROPERTY
@given(body=mutated(ACTION).map(decoded))
def test_an_action_body_field_is_its_type_or_a_value_error(body: Any) -> None:
    for key, kind in (("action", str), ("label", str), ("text", str), ("version", int)):
        try:
            _field(body if isinstance(body, dict) else {}, key, kind)
        except ValueError as e:
            assert str(e).startswith(f"{key}: expected")


def _request(body: bytes) -> Request:
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    return Request({"type": "http", "method": "POST", "headers": [], "path": "/", "query_string": b""}, receive)


@PROPERTY
@given(body=st.binary(max_size=300) | json_bytes(POST))
def test_a_desk_json_body_is_a_value_or_a_400_or_413(body: bytes) -> None:
    async def read() -> object:
        return await json_body(_request(body))

    try:
        value = asyncio.run(read())
    except Refused as refused:
        assert refused.response.status_code in (400, 413)
        return
    utf8_safe(value)


def test_a_desk_json_body_nested_100k_deep_is_a_400_and_a_huge_one_a_413() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for body, status, message in ((deep[:16_000], 400, b"not JSON"), (deep, 413, b"larger than")):
        with pytest.raises(Refused) as refused:
            asyncio.run(json_body(_request(body)))
        assert refused.value.response.status_code == status and message in bytes(refused.value.response.body)


def test_a_publication_time_out_of_range_is_a_post_error() -> None:
    """Found by the property above: OverflowError (a 500)."""
    for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(PostError, match="publish_at: out of range"):
            _post_from(dict(POST, publish_at=when))


URL_PARTS = st.tuples(
    st.sampled_from(["https", "http", "HTTPS", "ftp", "javascript", ""]),
    st.sampled_from(
        [
            "bsky.app",
            "x.com",
            "www.youtube.com",
            "youtu.be",
            "social.example",
            "[::1",
            "a:b@host",
            "10.0.0.1",
            "xn--n3h.example",
            "host:99999",
            "host:-1",
            "\x00",
            "ex ample.org",
        ]
    ),  # fmt: skip
    st.lists(
        st.sampled_from(
            [
                "@user",
                "profile",
                "post",
                "status",
                "statuses",
                "watch",
                "shorts",
                "users",
                "3k",
                "12345",
                "did:plc:abc",
                "%00",
                "..",
                "dQw4w9WgXcQ",
                "",
            ]
        ),
        max_size=5,
    ),  # fmt: skip
    st.sampled_from(["", "?v=dQw4w9WgXcQ", "?v=", "?v=a&v=b", "#x", "?%zz"]),
)


@PROPERTY
@given(url=URL_PARTS.map(lambda p: f"{p[0]}://{p[1]}/{'/'.join(p[2])}{p[3]}") | st.text(max_size=100))
def test_a_pasted_url_is_a_post_target_or_a_400(url: str) -> None:
    try:
        target = paste.parse(url)
    except paste.PasteError as e:
        assert e.status == 400 and str(e)
        return
    assert target.platform in ("mastodon", "bluesky", "youtube", "x")
    assert target.key.startswith(("https://", "http://")) and all(target.parts)


# -- deep nesting, everywhere JSON comes in ----------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_json_nested_100k_deep_is_a_clear_error_at_every_entry() -> None:
    assert "nested too deeply" in str(pytest.raises(ValueError, json_input.loads, DEEP).value)
    with pytest.raises(PushRejected, match=r"^body: not JSON \(JSON nested too deeply\)"):
        parse_batch(b'{"items": ' + DEEP + b"}")
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_document(b'{"items": ' + DEEP + b"}", content_type="application/feed+json", url="https://f.example/")
    response = FetchResult(200, "https://social.example/api/v1/statuses/1", None, {}, DEEP, None, None, None)
    with pytest.raises(ParseError, match="not JSON"):
        mastodon._json(response)
    with pytest.raises(atproto.MalformedPost, match="nested too deeply"):
        atproto.read_feed(b'{"feed": ' + DEEP + b"}")
    with pytest.raises(atproto.MalformedPost, match="nested too deeply"):
        atproto.parse_frame(DEEP.decode())
    with pytest.raises(ParseError, match="nested too deeply"):
        _json_object(DEEP, "https://appview.example/xrpc/x")
    assert _xrpc_error(DEEP) == ("", "")


def _deepest(build: Callable[[int], str], read: Callable[[str], object]) -> int:
    """The deepest nesting of this shape that `read` still decodes (it refuses deeper as "nested too deeply");
    a RecursionError anywhere in `read` fails the test."""
    low, high = 1, 3000
    while low < high:
        middle = (low + high + 1) // 2
        try:
            read(build(middle))
            low = middle
        except (ValueError, ParseError) as e:
            assert "nested too deeply" in str(e), e
            high = middle - 1
    return low


def _embed_chain(levels: int, *, view: bool) -> str:
    suffix = "#view" if view else ""
    text = json.dumps({"$type": f"app.bsky.embed.images{suffix}", "images": []})
    for _ in range(levels):
        text = f'{{"$type": "app.bsky.embed.recordWithMedia{suffix}", "record": {{}}, "media": {text}}}'
    return text


def _commit(levels: int) -> str:
    return (
        '{"did": "did:plc:abc", "time_us": 1, "kind": "commit", "commit": {"operation": "create",'
        ' "collection": "app.bsky.feed.post", "rkey": "3k", "record": {"text": "x", "embed": '
        + _embed_chain(levels, view=False)
        + "}}}"
    )


def _author_feed(levels: int) -> str:
    return (
        '{"feed": [{"post": {"uri": "at://did:plc:abc/app.bsky.feed.post/3k", "author": {"did": "did:plc:abc"},'
        ' "record": {"text": "x"}, "embed": ' + _embed_chain(levels, view=True) + "}}]}"
    )


def _read_commit(frame: str) -> object:
    batch = atproto.read_events([atproto.parse_frame(frame)], {})
    assert len(batch.entries) == 1
    return batch


def _read_author_feed(body: str) -> object:
    page = atproto.read_feed(body.encode())
    assert len(page.entries) == 1
    return page


def test_the_deepest_decodable_embed_chain_never_overflows_the_post_readers() -> None:
    """Embeds are read recursively (recordWithMedia holds media): as deep as the JSON decodes is still read."""
    assert _deepest(_commit, _read_commit) > 500
    assert _deepest(_author_feed, _read_author_feed) > 500


# -- over HTTP: push bodies nested or oversized, and reader frames nobody reads ----------------------------

SLUG = "stage-1"
SECRET = "s3cret-one"


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("WIRE_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: WIRE_SECRET\n        role: editorial\n"
    )
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    yield running
    await running.stop()


async def _push(fil: RunningFil, body: bytes | Any, *, chunked: bool = False) -> tuple[int, dict[str, Any]]:
    ts = int(time.time())
    raw = body if isinstance(body, bytes) else b"".join([c async for c in body])
    headers = {"Content-Type": "application/json", "X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRET, ts, raw)}

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 64 * 1024):
            yield raw[start : start + 64 * 1024]

    async with aiohttp.ClientSession() as session:
        data = pieces() if chunked else raw
        async with session.post(f"{fil.base}/api/ingest/wire", data=data, headers=headers) as response:
            return response.status, await response.json()


async def test_a_push_body_nested_100k_deep_is_a_400_and_an_oversized_one_a_413_even_chunked(fil: RunningFil) -> None:
    status, answer = await _push(fil, b'{"items": ' + DEEP + b"}")
    assert status == 400 and answer["error"] == "body: not JSON (JSON nested too deeply)"
    huge = json.dumps({"items": [dict(PUSH_ITEM, text="x" * (1024 * 1024))]}).encode()
    for chunked in (False, True):  # without Content-Length the cap is found while reading
        status, answer = await _push(fil, huge, chunked=chunked)
        assert status == 413 and "larger than 1048576 bytes" in answer["error"]
    assert (await _push(fil, json.dumps({"items": [PUSH_ITEM]}).encode()))[0] == 202


async def test_reader_frames_of_any_kind_are_dropped_and_readers_still_get_changes(fil: RunningFil) -> None:
    """The reader websocket parses nothing a reader sends: junk text and binary frames are dropped
    (curation/web/wsproto.py); a frame over 4 KiB closes that reader (1009); every other reader, and the
    noisy one, keep getting live changes."""
    rng = random.Random(7)
    junk: list[str | bytes] = [
        "",
        "{",
        '{"type": "subscribe", "since": "x"}',
        "[" * 4000,
        "\ufffd" * 1000,
        bytes(rng.getrandbits(8) for _ in range(4096)),
        b"\x00" * 4000,
        *("".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 200))) for _ in range(50)),
    ]
    live = f"{fil.ws_base}/api/events/{SLUG}/live"
    async with connect(live + "?since=garbage") as noisy, connect(live) as quiet, connect(live) as big:
        for reader in (noisy, quiet, big):
            await next_message(reader, "hello")
        for frame in junk:
            await noisy.send(frame)
        await big.send("x" * 65536)
        await asyncio.wait_for(big.wait_closed(), 10)
        assert big.close_code == 1009
        assert (await _push(fil, json.dumps({"items": [PUSH_ITEM]}).encode()))[0] == 202
        for reader in (noisy, quiet):
            assert (await next_message(reader, "upsert"))["item"]["title"] == "Wire 1"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/healthz") as response:
            assert response.status == 200

"""atproto.py over real records, postViews and Jetstream frames: facets, embeds, labels, dates, hostile input."""

from __future__ import annotations

import copy
import json
import pickle
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from curation.collectors.atproto import (
    FeedPage,
    JetstreamEvent,
    MalformedPost,
    entry_from_event,
    entry_from_post_view,
    parse_frame,
    profile_from_view,
    read_events,
    read_feed,
    read_jetstream_lines,
    record_embed,
    render_text,
    view_embed,
)
from curation.models import Author, Card, Media

FIXTURES = Path(__file__).parent / "fixtures" / "bluesky"
A = 'target="_blank" rel="noopener noreferrer nofollow"'


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def post_lines() -> list[bytes]:
    return (FIXTURES / "jetstream_v1_posts.jsonl").read_bytes().splitlines()


def post_events() -> list[JetstreamEvent]:
    return [parse_frame(line) for line in post_lines()]


def event_of(did_prefix: str) -> JetstreamEvent:
    return next(e for e in post_events() if e.did.startswith(did_prefix))


def template() -> dict[str, Any]:
    return load("getPostThread_recordWithMedia.json")["thread"]["post"]  # type: ignore[no-any-return]


def facet(text: str, part: str, feature: dict[str, Any], *, occurrence: int = 0) -> dict[str, Any]:
    """A facet over `part` of `text`, with UTF-8 byte offsets as clients compute them."""
    data = text.encode()
    start = -1
    for _ in range(occurrence + 1):
        start = data.index(part.encode(), start + 1)
    return {"index": {"byteStart": start, "byteEnd": start + len(part.encode())}, "features": [feature]}


def elements(html: str) -> list[tuple[str, list[str]]]:
    """The elements a browser would build from `html`, with their attribute names."""
    found: list[tuple[str, list[str]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, [name for name, _ in attrs]))

    Collector().feed(html)
    return found


def link(uri: str) -> dict[str, Any]:
    return {"$type": "app.bsky.richtext.facet#link", "uri": uri}


# --- facets -----------------------------------------------------------------------------------------------


def test_real_records_link_the_facet_target_not_the_shortened_text() -> None:
    records = load("post_records_atprotocom.json")["postRecords"]
    first = records[0]["value"]
    assert render_text(first["text"], first["facets"]) == (
        "<p>Bridgy Fed is an open-source project — check out the code here: "
        f'<a href="https://github.com/snarfed/bridgy-fed" {A}>github.com/snarfed/brid...</a></p>'
        "<p>Stay updated with the project by following "
        f'<a href="https://bsky.app/profile/did:plc:fdme4gb7mu7zrie7peay7tst" {A}>@snarfed.org</a>!</p>'
    )
    # an emoji (4 bytes) before the facets must not shift them
    last = records[3]["value"]
    html = render_text(last["text"], last["facets"])
    assert f'<a href="https://github.com/mozzius/graysky" {A}>github.com/mozzius/gray...</a>' in html
    assert f'<a href="https://atproto.com/community/projects#clients" {A}>atproto.com/community/pr...</a>' in html
    assert f'<a href="https://bsky.app/profile/did:plc:sq6aa2wa32tiiqrbub64vcja" {A}>@graysky.app</a>' in html


def test_jetstream_posts_render_tags_and_links_exactly() -> None:
    tags = event_of("did:plc:tn3hni")
    assert tags.record is not None
    html = render_text(tags.record["text"], tags.record["facets"])
    assert html.startswith(
        f'<p><a href="https://bsky.app/hashtag/HowToTellAiToShutUp" {A}>#HowToTellAiToShutUp</a>!</p>'
    )
    assert f'<a href="https://bsky.app/hashtag/IndieRebellion" {A}>#IndieRebellion</a> 😂 As if' in html
    assert html.endswith("rebellion! <br>👇</p>")
    tumblr = event_of("did:plc:ynfp6w")
    assert tumblr.record is not None
    html = render_text(tumblr.record["text"], tumblr.record["facets"])
    target = "https://www.tumblr.com/tempo-tales/765681292369166336/behind-them-timmi-and-wankyu-follow-silently-but?source=share"
    assert f'<a href="{target.replace("&", "&amp;")}" {A}>www.tumblr.com/tempo-tales/...</a>' in html
    assert f'<a href="https://bsky.app/hashtag/talesatwonderworld" {A}>#talesatwonderworld</a><br>' in html


@pytest.mark.parametrize(
    ("did_prefix", "part", "text_start"),
    [
        ("did:plc:amnbij", "ネトフリ", "待って天幕のジャードゥーガル"),  # Japanese, then an emoji at the end
        ("did:plc:o2rolx", "시네용", "이쁘"),  # Korean
        ("did:plc:6aw7u7", "Тоф", "Вечерок с Аватаром"),  # Cyrillic between emoji
    ],
)
def test_cjk_cyrillic_and_emoji_keep_byte_offsets(did_prefix: str, part: str, text_start: str) -> None:
    record = event_of(did_prefix).record
    assert record is not None
    text = record["text"]
    html = render_text(text, [facet(text, part, link("https://example.org/x"))])
    assert f'<a href="https://example.org/x" {A}>{part}</a>' in html
    assert html.startswith(f"<p>{text_start}")
    # every character survives, in order
    assert (
        html.replace(f'<a href="https://example.org/x" {A}>', "")
        .replace("</a>", "")
        .replace("<br>", "\n")[3:-4]
        .replace("</p><p>", "\n\n")
        == text.strip()
    )
    # an emoji inside the text: a facet right after it still lands on its word
    if "😍" in text:
        after = render_text(text, [facet(text, "🔥", link("https://example.org/fire"))])
        assert f'<a href="https://example.org/fire" {A}>🔥</a>' in after


def test_malformed_facets_are_dropped_and_the_text_survives() -> None:
    text = "Allez 🚴 Pogačar! #TDF2027 @rider"
    data = text.encode()
    cyclist = data.index("🚴".encode())
    facets: list[Any] = [
        {"index": {"byteStart": 0, "byteEnd": 9999}, "features": [link("https://out.example/range")]},
        {"index": {"byteStart": -3, "byteEnd": 2}, "features": [link("https://out.example/negative")]},
        {"index": {"byteStart": 5, "byteEnd": 2}, "features": [link("https://out.example/backwards")]},
        {"index": {"byteStart": True, "byteEnd": 3}, "features": [link("https://out.example/bool")]},
        {"index": {"byteStart": "0", "byteEnd": "3"}, "features": [link("https://out.example/strings")]},
        # cuts the 4-byte cyclist emoji in two
        {"index": {"byteStart": cyclist + 1, "byteEnd": cyclist + 3}, "features": [link("https://out.example/mid")]},
        {"index": {"byteStart": 0, "byteEnd": 5}, "features": [link("javascript:alert(1)")]},
        {"index": {"byteStart": 0, "byteEnd": 5}, "features": "not a list"},
        {"index": {"byteStart": 0, "byteEnd": 5}, "features": [{"$type": "app.bsky.richtext.facet#unknown"}]},
        {
            "index": {"byteStart": 0, "byteEnd": 5},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "x"}],
        },
        "garbage",
        None,
        facet(text, "Pogačar", link("https://ok.example/first")),
        facet(text, "Pogačar!", link("https://out.example/overlapping")),  # overlaps the one before: dropped
        facet(text, "#TDF2027", {"$type": "app.bsky.richtext.facet#tag", "tag": "TDF2027"}),
    ]
    html = render_text(text, facets)
    assert html == (
        f'<p>Allez 🚴 <a href="https://ok.example/first" {A}>Pogačar</a>! '
        f'<a href="https://bsky.app/hashtag/TDF2027" {A}>#TDF2027</a> @rider</p>'
    )
    assert render_text(text, "garbage") == f"<p>{text}</p>"
    assert render_text(text, None) == f"<p>{text}</p>"


def test_hostile_text_and_names_stay_inert() -> None:
    text = '<script>alert(1)</script><img src=x onerror=alert(2)> "quoted" & <b>bold</b>'
    html = render_text(text, [facet(text, "quoted", link('https://ok.example/"><script>alert(3)</script>'))])
    assert elements(html) == [("p", []), ("a", ["href", "target", "rel"])]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    view = template()
    view["author"]["displayName"] = '<img src=x onerror="alert(1)">Evil <b>Rider</b>'
    view["author"]["avatar"] = "javascript:alert(1)"
    view["record"]["text"] = text
    entry = entry_from_post_view(view)
    assert entry.author.name == "Evil Rider"
    assert entry.author.avatar is None
    assert entry.html is not None and "<script" not in entry.html
    assert entry.text is not None and entry.text.startswith("alert(1)") is False


def test_mentions_and_tags_with_bad_values_are_not_linked() -> None:
    text = "hi @x and #bad tag"
    facets = [
        facet(text, "@x", {"$type": "app.bsky.richtext.facet#mention", "did": "javascript:alert(1)"}),
        facet(text, "#bad tag", {"$type": "app.bsky.richtext.facet#tag", "tag": "bad\ntag"}),
    ]
    assert render_text(text, facets) == f"<p>{text}</p>"


# --- postViews ----------------------------------------------------------------------------------------------


def test_the_fixture_post_view_becomes_an_entry_with_its_quote_and_image() -> None:
    entry = entry_from_post_view(template())
    assert entry.key == "at://did:plc:kvwvcn5iqfooopmyzvb4qzba/app.bsky.feed.post/3kaheyt6vpc22"
    assert entry.url == "https://bsky.app/profile/test.marshal.dev/post/3kaheyt6vpc22"
    assert entry.title is None and entry.text is None  # the post's text is ""
    assert entry.author == Author(
        name="Python SDK",
        handle="@test.marshal.dev",
        url="https://bsky.app/profile/test.marshal.dev",
        avatar="https://cdn.bsky.app/img/avatar/plain/did:plc:kvwvcn5iqfooopmyzvb4qzba/"
        "bafkreicwqcugdgubtawr6xv6jjifoju67eigwx2xgz4zs73nkzzn36oucy@jpeg",
    )
    cid = "bafkreic3cp5ky525vsukjvrzxsc2h3jka2gud74l2hgeatw2rhj2qycnmq"
    assert entry.media == (
        Media(
            "image",
            f"https://cdn.bsky.app/img/feed_fullsize/plain/did:plc:kvwvcn5iqfooopmyzvb4qzba/{cid}@jpeg",
            thumbnail=f"https://cdn.bsky.app/img/feed_thumbnail/plain/did:plc:kvwvcn5iqfooopmyzvb4qzba/{cid}@jpeg",
        ),
    )
    assert entry.card is not None and entry.card.kind == "quote"
    assert entry.card.url == "https://bsky.app/profile/test.marshal.dev/post/3kahesw26il2z"
    assert entry.card.description == "test"
    assert entry.card.author is not None and entry.card.author.handle == "@test.marshal.dev"
    assert entry.published_at == datetime(2023, 9, 28, 12, 49, 36, 735000, tzinfo=UTC)


def test_created_at_in_the_future_is_clamped_to_indexed_at() -> None:
    view = template()
    view["record"]["createdAt"] = "2099-01-01T00:00:00Z"
    assert entry_from_post_view(view).published_at == datetime(2023, 9, 28, 12, 49, 36, 735000, tzinfo=UTC)
    view["record"]["createdAt"] = "not a date"
    assert entry_from_post_view(view).published_at == datetime(2023, 9, 28, 12, 49, 36, 735000, tzinfo=UTC)
    view["record"]["createdAt"] = "2023-09-28T10:00:00Z"  # earlier is believed (a post made offline)
    assert entry_from_post_view(view).published_at == datetime(2023, 9, 28, 10, 0, tzinfo=UTC)
    # Jetstream: the ja post says 14:38:08.420 but the server saw it at 14:38:08.094
    ja = entry_from_event(event_of("did:plc:amnbij"), None)
    assert ja.published_at == datetime(2026, 7, 4, 14, 38, 8, 94841, tzinfo=UTC)


def test_self_labels_and_moderation_labels_become_a_content_warning() -> None:
    view = template()
    view["record"]["labels"] = {
        "$type": "com.atproto.label.defs#selfLabels",
        "values": [{"val": "graphic-media"}, {"val": "!no-unauthenticated"}, {"val": "nonsense"}],
    }
    view["labels"] = [
        {"src": "did:plc:ar7c4by46qjdydhdevvrndac", "val": "porn"},
        {"src": "did:plc:ar7c4by46qjdydhdevvrndac", "val": "sexual", "neg": True},
    ]
    assert entry_from_post_view(view).content_warning == "Graphic media, Adult content"
    assert entry_from_post_view(template()).content_warning is None


def test_malformed_post_views_raise_malformed_post() -> None:
    bad: object
    for bad in (None, [], {"uri": "https://not.at/uri"}, {"uri": "at://did:plc:x/app.bsky.feed.post/1"}):
        with pytest.raises(MalformedPost):
            entry_from_post_view(bad)
    view = template()
    view["author"]["did"] = "did:plc:someoneelse"  # the author is not the URI's repo
    with pytest.raises(MalformedPost):
        entry_from_post_view(view)
    view = template()
    view["record"]["text"] = 42
    with pytest.raises(MalformedPost):
        entry_from_post_view(view)


# --- embeds -------------------------------------------------------------------------------------------------

LINK = "https://bsky.app/profile/a.test/post/3k"
DID = "did:plc:abcdefghijklmnopqrstuvwx"
CID = "bafkreiabcdefghijklmnop"


def test_view_embeds_of_every_kind() -> None:
    images = {
        "$type": "app.bsky.embed.images#view",
        "images": [
            {"thumb": "https://cdn.example/t.jpg", "fullsize": "https://cdn.example/f.jpg", "alt": " A <b>bike</b> "},
            {"thumb": "https://cdn.example/t2.jpg", "fullsize": "javascript:alert(1)", "alt": ""},
            "junk",
        ],
    }
    assert view_embed(images, LINK) == (
        [Media("image", "https://cdn.example/f.jpg", alt="A bike", thumbnail="https://cdn.example/t.jpg")],
        None,
    )
    gallery = {
        "$type": "app.bsky.embed.gallery#view",
        "items": [{"thumbnail": "https://c.example/t", "fullsize": "https://c.example/f"}],
    }
    assert view_embed(gallery, LINK)[0] == [Media("image", "https://c.example/f", thumbnail="https://c.example/t")]
    video = {
        "$type": "app.bsky.embed.video#view",
        "cid": CID,
        "playlist": "https://video.bsky.app/watch/x/playlist.m3u8",
        "thumbnail": "https://video.bsky.app/watch/x/thumbnail.jpg",
        "alt": "sprint",
    }
    assert view_embed(video, LINK)[0] == [
        Media(
            "video",
            "https://video.bsky.app/watch/x/playlist.m3u8",
            alt="sprint",
            thumbnail="https://video.bsky.app/watch/x/thumbnail.jpg",
        )
    ]
    assert view_embed({"$type": "app.bsky.embed.video#view", "playlist": "ftp://x"}, LINK)[0] == [Media("video", LINK)]
    external = {
        "$type": "app.bsky.embed.external#view",
        "external": {
            "uri": "https://news.example/a",
            "title": "<i>T</i>",
            "description": "D",
            "thumb": "https://cdn.example/th",
        },
    }
    assert view_embed(external, LINK) == (
        [],
        Card("link", "https://news.example/a", title="T", description="D", image="https://cdn.example/th"),
    )
    hostile_external = {
        "$type": "app.bsky.embed.external#view",
        "external": {"uri": "javascript:alert(1)", "title": "x"},
    }
    assert view_embed(hostile_external, LINK) == ([], None)
    not_found = {
        "$type": "app.bsky.embed.record#view",
        "record": {
            "$type": "app.bsky.embed.record#viewNotFound",
            "uri": f"at://{DID}/app.bsky.feed.post/3kq",
            "notFound": True,
        },
    }
    assert view_embed(not_found, LINK) == ([], Card("quote", f"https://bsky.app/profile/{DID}/post/3kq"))
    blocked = {
        "$type": "app.bsky.embed.record#view",
        "record": {
            "$type": "app.bsky.embed.record#viewBlocked",
            "uri": f"at://{DID}/app.bsky.feed.post/3kb",
            "blocked": True,
            "author": {"did": DID, "viewer": {"blocking": "at://x"}},
        },
    }
    assert view_embed(blocked, LINK) == ([], Card("quote", f"https://bsky.app/profile/{DID}/post/3kb"))
    feed = {
        "$type": "app.bsky.embed.record#view",
        "record": {
            "$type": "app.bsky.feed.defs#generatorView",
            "uri": f"at://{DID}/app.bsky.feed.generator/peloton",
            "displayName": "Peloton",
            "description": "Race news",
        },
    }
    assert view_embed(feed, LINK)[1] == Card(
        "link", f"https://bsky.app/profile/{DID}/feed/peloton", title="Peloton", description="Race news"
    )
    unknown: object
    for unknown in ({"$type": "app.bsky.embed.hologram#view", "x": 1}, {"no": "type"}, "junk", None, []):
        assert view_embed(unknown, LINK) == ([], None)


def test_a_quoted_author_hidden_from_logged_out_viewers_shows_only_the_link() -> None:
    view = template()
    quoted = view["embed"]["record"]["record"]
    quoted["author"]["labels"] = [{"src": quoted["author"]["did"], "val": "!no-unauthenticated"}]
    card = entry_from_post_view(view).card
    assert card == Card("quote", "https://bsky.app/profile/did:plc:kvwvcn5iqfooopmyzvb4qzba/post/3kahesw26il2z")


def test_record_embeds_build_cdn_urls_from_blobs() -> None:
    blob = {"$type": "blob", "ref": {"$link": CID}, "mimeType": "image/png", "size": 10}
    images = {
        "$type": "app.bsky.embed.images",
        "images": [{"image": blob, "alt": "podium"}, {"image": {"ref": {"$link": "../../x"}}}],
    }
    assert record_embed(images, DID, LINK) == (
        [
            Media(
                "image",
                f"https://cdn.bsky.app/img/feed_fullsize/plain/{DID}/{CID}@jpeg",
                alt="podium",
                thumbnail=f"https://cdn.bsky.app/img/feed_thumbnail/plain/{DID}/{CID}@jpeg",
            )
        ],
        None,
    )
    legacy = {
        "$type": "app.bsky.embed.images",
        "images": [{"image": {"cid": CID, "mimeType": "image/jpeg"}, "alt": ""}],
    }
    assert record_embed(legacy, DID, LINK)[0][0].url.endswith(f"/{CID}@jpeg")
    video = {
        "$type": "app.bsky.embed.video",
        "video": {"$type": "blob", "ref": {"$link": CID}, "mimeType": "video/mp4"},
    }
    encoded = DID.replace(":", "%3A")
    assert record_embed(video, DID, LINK)[0] == [
        Media(
            "video",
            f"https://video.bsky.app/watch/{encoded}/{CID}/playlist.m3u8",
            thumbnail=f"https://video.bsky.app/watch/{encoded}/{CID}/thumbnail.jpg",
        )
    ]
    gallery = {"$type": "app.bsky.embed.gallery", "items": [{"image": blob, "alt": "a"}, {"image": blob, "alt": "b"}]}
    assert [m.alt for m in record_embed(gallery, DID, LINK)[0]] == ["a", "b"]
    quote = {"$type": "app.bsky.embed.record", "record": {"uri": f"at://{DID}/app.bsky.feed.post/3kq", "cid": CID}}
    assert record_embed(quote, DID, LINK) == ([], Card("quote", f"https://bsky.app/profile/{DID}/post/3kq"))
    with_media = {"$type": "app.bsky.embed.recordWithMedia", "record": quote, "media": images}
    media, card = record_embed(with_media, DID, LINK)
    assert len(media) == 1 and card == Card("quote", f"https://bsky.app/profile/{DID}/post/3kq")
    for unknown in ({"$type": "app.bsky.embed.hologram"}, {"$type": "app.bsky.embed.images", "images": "x"}, 7):
        assert record_embed(unknown, DID, LINK) == ([], None)


def test_a_quote_streamed_with_its_fetched_post_gets_author_and_text() -> None:
    fixture = template()
    quoted = copy.deepcopy(fixture)
    quoted["uri"] = f"at://{fixture['author']['did']}/app.bsky.feed.post/3kquoted"
    quoted["record"]["text"] = "the quoted words"
    line = json.dumps(
        {
            "did": DID,
            "time_us": 1_790_000_000_000_000,
            "kind": "commit",
            "commit": {
                "rev": "3r",
                "operation": "create",
                "collection": "app.bsky.feed.post",
                "rkey": "3kq2",
                "cid": CID,
                "record": {
                    "$type": "app.bsky.feed.post",
                    "text": "look",
                    "createdAt": "2026-09-21T12:00:00Z",
                    "embed": {"$type": "app.bsky.embed.record", "record": {"uri": quoted["uri"], "cid": CID}},
                },
            },
        }
    )
    batch = read_events([parse_frame(line)], {}, {quoted["uri"]: quoted})
    card = batch.entries[0].card
    assert card is not None and card.description == "the quoted words"
    assert card.author is not None and card.author.name == "Python SDK"
    assert card.image is not None and card.image.startswith("https://cdn.bsky.app/img/feed_thumbnail/")


def test_the_same_post_hashes_the_same_from_the_appview_and_from_jetstream() -> None:
    view = template()
    view["record"]["text"] = "Stage win! #TDF2027"
    view["record"]["facets"] = [
        facet("Stage win! #TDF2027", "#TDF2027", {"$type": "app.bsky.richtext.facet#tag", "tag": "TDF2027"})
    ]
    did, rkey = view["author"]["did"], view["uri"].rsplit("/", 1)[1]
    frame = json.dumps(
        {
            "did": did,
            "time_us": 1_695_905_376_735_000,
            "kind": "commit",
            "commit": {
                "rev": "3r",
                "operation": "create",
                "collection": "app.bsky.feed.post",
                "rkey": rkey,
                "record": view["record"],
                "cid": view["cid"],
            },
        }
    )
    profile = profile_from_view(view["author"])
    polled, streamed = entry_from_post_view(view), entry_from_event(parse_frame(frame), profile)
    assert polled.key == streamed.key and polled.url == streamed.url and polled.author == streamed.author
    assert polled.html == streamed.html and polled.media == streamed.media
    assert polled.content_hash == streamed.content_hash
    edited = copy.deepcopy(view)
    edited["record"]["text"] = "Stage win!! #TDF2027"
    assert entry_from_post_view(edited).content_hash != polled.content_hash


# --- feed pages -------------------------------------------------------------------------------------------


def feed_body(items: list[Any], cursor: str | None = "c1") -> bytes:
    body: dict[str, Any] = {"feed": items}
    if cursor:
        body["cursor"] = cursor
    return json.dumps(body).encode()


def clone(rkey: str, text: str, **record: Any) -> dict[str, Any]:
    view = template()
    view["uri"] = view["uri"].rsplit("/", 1)[0] + "/" + rkey
    view["record"]["text"] = text
    view["record"].update(record)
    return view


def test_a_page_skips_pins_reposts_and_replies_and_stops_at_the_first_seen_post() -> None:
    old, new1, new2, reply = (
        clone("3k1", "old"),
        clone("3k2", "new 1"),
        clone("3k3", "new 2"),
        clone("3k4", "re", reply={"root": {}, "parent": {}}),
    )
    someone = clone("3k9", "someone else's")
    items = [
        {"post": old, "reason": {"$type": "app.bsky.feed.defs#reasonPin"}},  # pinned and seen: must not stop the page
        {
            "post": someone,
            "reason": {"$type": "app.bsky.feed.defs#reasonRepost", "by": {"did": DID, "handle": "a.test"}},
        },
        {"post": new2},
        {"post": reply},
        {"post": "junk"},
        {"post": new1},
        {"post": old},
        {"post": clone("3k0", "older than seen")},
    ]
    page = read_feed(feed_body(items), seen=frozenset({old["uri"]}))
    assert [e.text for e in page.entries] == ["new 2", "new 1"]
    assert page.uris == [new2["uri"], new1["uri"]]
    assert page.reached_seen and page.cursor == "c1"
    assert page.skipped == {"pin": 1, "repost": 1, "reply": 1, "malformed": 1}
    first = read_feed(feed_body(items, cursor=None))
    assert [e.text for e in first.entries] == ["new 2", "new 1", "old", "older than seen"]
    assert not first.reached_seen and first.cursor is None


def test_a_page_skips_accounts_hidden_from_logged_out_viewers() -> None:
    hidden = clone("3k5", "private-ish")
    hidden["author"]["labels"] = [{"src": hidden["author"]["did"], "val": "!no-unauthenticated"}]
    page = read_feed(json.dumps({"posts": [hidden, clone("3k6", "public")]}).encode())
    assert [e.text for e in page.entries] == ["public"]
    assert page.skipped == {"hidden": 1}
    assert page.profiles[0].hidden


@pytest.mark.parametrize("body", [b"", b"<html>", b"[]", b'{"feed": 3}', b'{"posts": {}}', b"\xff\xfe"])
def test_an_unreadable_page_raises(body: bytes) -> None:
    with pytest.raises(MalformedPost):
        read_feed(body)


# --- Jetstream frames ---------------------------------------------------------------------------------------


def test_golden_frames_parse_and_only_post_commits_count() -> None:
    events = [parse_frame(line) for line in (FIXTURES / "jetstream_v1_golden.jsonl").read_bytes().splitlines()]
    assert [e.kind for e in events].count("commit") == 8
    assert [(e.kind, e.collection, e.operation) for e in events if e.kind != "commit"] == [
        ("identity", None, None),
        ("account", None, None),
    ]
    posts = [e for e in events if e.is_post]
    assert len(posts) == 1 and posts[0].rkey == "3mmoojp4cd223"
    batch = read_events(events, {})
    assert batch.entries == [] and batch.deleted == []  # the one post is a reply
    assert batch.skipped == {"other": 9, "reply": 1}


def test_jetstream_posts_give_entries_and_a_delete() -> None:
    batch = read_events(post_events(), {})
    assert len(batch.entries) == 6  # 8 events: one reply, one delete
    assert batch.deleted == ["at://did:plc:4smmjsqf6l5jkzczvw6vsrqc/app.bsky.feed.post/3mpt73z3ejc2p"]
    youtube = batch.entries[0]
    assert youtube.key == "at://did:plc:dclwtltrt2ggsryagfzk7dp4/app.bsky.feed.post/3mptbyoeyc22k"
    assert youtube.url == "https://bsky.app/profile/did:plc:dclwtltrt2ggsryagfzk7dp4/post/3mptbyoeyc22k"
    assert (
        youtube.author.handle is None
        and youtube.author.url == "https://bsky.app/profile/did:plc:dclwtltrt2ggsryagfzk7dp4"
    )
    assert youtube.card == Card(
        "link",
        "https://www.youtube.com/watch?v=V5lDo-jw8mA",
        title="What does America's 250th anniversary mean to Native Americans?",
        description="YouTube video by Reuters",
        image="https://cdn.bsky.app/img/feed_thumbnail/plain/did:plc:dclwtltrt2ggsryagfzk7dp4/"
        "bafkreias7oxbr6swsuggccmtnqpoeami4jza5x4w3urltn6gzhqf4k6k2e@jpeg",
    )
    russian = next(e for e in batch.entries if e.key.startswith("at://did:plc:6aw7u7"))
    assert russian.media[0].url == (
        "https://cdn.bsky.app/img/feed_fullsize/plain/did:plc:6aw7u7xjbaiznddugigmdhvc/"
        "bafkreicwsq23gkygrgpijv7ocssxdyjokfv3quss3f2dg4csds3jpeqkwe@jpeg"
    )
    assert russian.text == "Вечерок с Аватаром, дошли и в мульте до Тоф 😍🔥 Такая крутышка, я не могу :"
    assert read_jetstream_lines((FIXTURES / "jetstream_v1_posts.jsonl").read_bytes()).deleted == batch.deleted


def test_a_profile_names_the_author_of_streamed_posts_and_hidden_accounts_are_skipped() -> None:
    ja = event_of("did:plc:amnbij")
    profile = profile_from_view({"did": ja.did, "handle": "Sora.Example.COM", "displayName": "Sora", "labels": []})
    assert profile is not None
    entry = read_events([ja], {ja.did: profile}).entries[0]
    assert entry.author.handle == "@sora.example.com"
    assert entry.url == "https://bsky.app/profile/sora.example.com/post/3mptbyqhi7s2f"
    hidden = profile_from_view({"did": ja.did, "handle": "s.example", "labels": [{"val": "!no-unauthenticated"}]})
    assert hidden is not None
    assert read_events([ja], {ja.did: hidden}).skipped == {"hidden": 1}


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'{"did":"did:plc:x","kind":"commit"}',
        b'{"did":"nope","time_us":1,"kind":"commit"}',
        b'{"did":"did:plc:x","time_us":true,"kind":"commit"}',
        b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":"x"}',
        b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"operation":"explode","collection":"c","rkey":"r"}}',
        b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"operation":"create","collection":"c","rkey":"../x"}}',
        b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"operation":"create","collection":"c","rkey":"r"}}',
    ],
)
def test_garbage_frames_raise(frame: bytes) -> None:
    with pytest.raises(MalformedPost):
        parse_frame(frame)


def test_unknown_fields_are_tolerated() -> None:
    line = post_lines()[1].decode()
    data = json.loads(line)
    data["cursor"] = 123
    data["commit"]["futureField"] = {"x": 1}
    data["newTopLevel"] = [1]
    event = parse_frame(json.dumps(data))
    assert event.is_post and event.rkey == "3mptbyqhi7s2f"


# --- across processes -------------------------------------------------------------------------------------


def test_parsers_run_in_a_process_pool() -> None:
    body = feed_body([{"post": template()}])
    with ProcessPoolExecutor(max_workers=1) as pool:
        page = pool.submit(read_feed, body).result()
        batch = pool.submit(read_events, post_events(), {}).result()
    assert isinstance(page, FeedPage) and len(page.entries) == 1
    assert len(batch.entries) == 6
    assert pickle.loads(pickle.dumps(page)) == page

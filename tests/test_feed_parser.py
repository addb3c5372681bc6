"""parse_document over real and crafted feed documents: keys, dates, links, media, sanitizing, encodings, attacks."""

from __future__ import annotations

import json
import pickle
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from curation.codec import entry_to_json
from curation.collectors.feed_parser import ParsedFeed, parse_document
from curation.errors import ParseError
from curation.models import Author, ItemKind, Media

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def parse(name: str, url: str | None = None, content_type: str | None = None) -> ParsedFeed:
    return parse_document(
        (FEEDS / name).read_bytes(), content_type=content_type, url=url or f"https://feeds.example/{name}"
    )


def rss(items: str, channel: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://site.example/</link>{channel}{items}</channel></rss>"
    ).encode()


# --- paired expectation files (reader-style: X + X.expected.json) ---------------------------------

PAIRED = sorted(p.name.removesuffix(".expected.json") for p in FEEDS.glob("*.expected.json"))


def test_paired_fixtures_are_present() -> None:
    assert len(PAIRED) >= 6


@pytest.mark.parametrize("name", PAIRED)
def test_paired_fixture(name: str) -> None:
    expected = json.loads((FEEDS / f"{name}.expected.json").read_text(encoding="utf-8"))
    parsed = parse(name, url=expected["url"], content_type=expected["content_type"])
    actual = {
        "url": expected["url"],
        "content_type": expected["content_type"],
        "title": parsed.title,
        "format": parsed.format,
        "hubs": parsed.hubs,
        "self_url": parsed.self_url,
        "entries": [entry_to_json(e) for e in parsed.entries],
    }
    assert actual == expected


# --- formats and routing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("mastodon_rss_account_hachyderm.xml", "rss"),
        ("youtube_channel_tagesschau.xml", "atom"),
        ("jsonfeed_1.1_spec_podcast.json", "jsonfeed"),
    ],
)
def test_format_is_reported(name: str, fmt: str) -> None:
    assert parse(name).format == fmt


def test_rdf_format() -> None:
    body = (
        b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        b'xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://r.example/"><title>R</title>'
        b'<link>https://r.example/</link></channel><item rdf:about="https://r.example/1"><title>One</title>'
        b"<link>https://r.example/1</link></item></rdf:RDF>"
    )
    parsed = parse_document(body, content_type="application/rdf+xml", url="https://r.example/rss")
    assert parsed.format == "rdf"
    assert [(e.key, e.title) for e in parsed.entries] == [("https://r.example/1", "One")]


def test_json_feed_is_sniffed_whatever_the_content_type() -> None:
    body = (FEEDS / "jsonfeed_1.1_spec_microblog.json").read_bytes()
    for content_type in (None, "text/plain", "application/octet-stream", "application/feed+json; charset=utf-8"):
        assert parse_document(body, content_type=content_type, url="https://j.example/").format == "jsonfeed"


def test_xml_body_wins_over_a_json_content_type() -> None:
    body = (FEEDS / "update_v1.rss").read_bytes()
    assert parse_document(body, content_type="application/json", url="https://x.example/").format == "rss"


# --- not a feed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ((FEEDS / "not_a_feed.html").read_bytes(), "text/html; charset=utf-8"),
        (b"", None),
        (b"   \n ", "application/rss+xml"),
        (b"\x00\x01\x02\xffgarbage", None),
        (b"just some words", "text/plain"),
        (b'<?xml version="1.0"?><config><value>1</value></config>', "application/xml"),
        (b'{"hello": "world"}', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "application/feed+json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ],
)
def test_not_a_feed_raises_parse_error_naming_the_url(body: bytes, content_type: str | None) -> None:
    with pytest.raises(ParseError) as info:
        parse_document(body, content_type=content_type, url="https://bad.example/page", source_id="src-1")
    assert "not a feed: https://bad.example/page" in str(info.value)
    assert info.value.source_id == "src-1"
    assert str(info.value).startswith("src-1: ")


def test_a_valid_feed_without_entries_is_not_an_error() -> None:
    parsed = parse_document(rss(""), content_type="application/rss+xml", url="https://e.example/")
    assert parsed.entries == [] and parsed.title == "T"


# --- keys -----------------------------------------------------------------------------------------


def test_keys_are_the_raw_guid_not_resolved_against_the_feed_url() -> None:
    body = rss("<item><title>a</title><guid>story-1</guid><link>https://site.example/1</link></item>")
    a = parse_document(body, content_type=None, url="https://old.example/feed")
    b = parse_document(body, content_type=None, url="https://new.example/other/feed")
    assert a.entries[0].key == b.entries[0].key == "story-1"


def test_missing_guid_falls_back_to_the_link_then_to_a_content_hash() -> None:
    body = rss(
        "<item><title>linked</title><link>/posts/1</link></item>"
        "<item><title>bare</title><description>only text</description></item>"
    )
    first = parse_document(body, content_type=None, url="https://site.example/feed")
    again = parse_document(body, content_type=None, url="https://site.example/feed")
    assert first.entries[0].key == "https://site.example/posts/1"
    assert first.entries[1].key.startswith("sha256:")
    assert [e.key for e in first.entries] == [e.key for e in again.entries]


def _numbered_items(count: int, *, guid: str = "id-{i}") -> str:
    return "".join(
        f"<item><title>Item {i}</title><link>https://site.example/{i}</link>"
        f"<guid isPermaLink='false'>{guid.format(i=i)}</guid>"
        f"<pubDate>Sun, 04 Jul 2027 {i % 24:02d}:00:00 +0000</pubDate><description>body {i}</description></item>"
        for i in range(count)
    )


def test_a_guid_repeated_once_in_a_large_document_is_disambiguated() -> None:
    items = _numbered_items(25) + (
        "<item><title>Clash</title><link>https://site.example/clash</link><guid isPermaLink='false'>id-3</guid>"
        "<description>different</description></item>"
    )
    parsed = parse_document(rss(items), content_type=None, url="https://site.example/feed")
    keys = [e.key for e in parsed.entries]
    assert len(keys) == len(set(keys)) == 26
    assert keys[3] == "id-3"  # the first occurrence keeps its key
    assert keys[-1] == "id-3#https://site.example/clash"
    assert keys[0] == "id-0"


def test_a_repeated_guid_without_a_link_gets_its_position() -> None:
    items = _numbered_items(60) + (
        "<item><title>Clash</title><guid isPermaLink='false'>id-3</guid><description>other</description></item>"
        "<item><title>Clash 2</title><link>https://site.example/3</link><guid isPermaLink='false'>id-3</guid>"
        "<description>other body</description></item>"
        "<item><title>Clash 3</title><link>https://site.example/3</link><guid isPermaLink='false'>id-3</guid>"
        "<description>third body</description></item>"
    )
    keys = [e.key for e in parse_document(rss(items), content_type=None, url="https://site.example/").entries]
    assert keys[3] == "id-3"
    assert keys[60:] == ["id-3#60", "id-3#https://site.example/3", "id-3#https://site.example/3#62"]


def test_an_item_repeated_verbatim_is_kept_once() -> None:
    item = "<item><title>Same</title><link>https://site.example/s</link><guid>same</guid><description>x</description></item>"
    parsed = parse_document(rss(_numbered_items(25) + item + item), content_type=None, url="https://site.example/")
    assert [e.key for e in parsed.entries].count("same") == 1
    assert len(parsed.entries) == 26


def test_too_many_blank_or_repeated_ids_switch_the_document_to_link_and_published_keys() -> None:
    parsed = parse("duplicate_guids.rss")
    assert [e.key for e in parsed.entries] == [
        "https://sloppy.example/1 2027-07-04T10:00:00.000Z",
        "https://sloppy.example/2 2027-07-04T11:00:00.000Z",
        "https://sloppy.example/3 2027-07-04T12:00:00.000Z",
    ]


def test_a_feed_reusing_one_guid_for_everything_still_yields_distinct_entries() -> None:
    parsed = parse_document(rss(_numbered_items(10, guid="constant")), content_type=None, url="https://s.example/")
    keys = [e.key for e in parsed.entries]
    assert len(set(keys)) == 10
    assert keys[0] == "https://site.example/0 2027-07-04T00:00:00.000Z"


# --- updated entries and content hash -------------------------------------------------------------


def test_an_edited_entry_keeps_its_key_and_changes_its_hash() -> None:
    v1 = parse("update_v1.rss").entries[0]
    v2 = parse("update_v2.rss").entries[0]
    assert v1.key == v2.key == "live-7"
    assert v1.content_hash != v2.content_hash
    assert v2.text == "Several riders down at 40 km. All are back on their bikes."


def test_dates_do_not_take_part_in_the_content_hash() -> None:
    v1 = parse("update_v1.rss").entries[0]
    redated = parse("update_v1_redated.rss").entries[0]
    assert v1.published_at != redated.published_at
    assert v1.content_hash == redated.content_hash


def test_a_media_change_changes_the_hash() -> None:
    base = "<item><guid>m</guid><title>t</title><description>d</description>{}</item>"
    without = parse_document(rss(base.format("")), content_type=None, url="https://s.example/").entries[0]
    enclosure = '<enclosure url="https://s.example/a.jpg" type="image/jpeg" length="1"/>'
    with_media = parse_document(rss(base.format(enclosure)), content_type=None, url="https://s.example/").entries[0]
    assert without.content_hash != with_media.content_hash


# --- dates ----------------------------------------------------------------------------------------


def test_atom_updated_is_never_taken_as_published() -> None:
    entry = parse("relative_xml_base.atom").entries[1]  # has <updated> only
    assert entry.published_at is None
    assert entry.updated_at == datetime(2027, 7, 4, 10, 0, tzinfo=UTC)


def test_rss_dc_date_is_not_a_published_date() -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>'
        b"<item><guid>d</guid><title>t</title><dc:date>2027-07-04T10:00:00Z</dc:date></item></channel></rss>"
    )
    entry = parse_document(body, content_type=None, url="https://d.example/").entries[0]
    assert entry.published_at is None
    assert entry.updated_at == datetime(2027, 7, 4, 10, tzinfo=UTC)


def test_missing_date_is_none_and_zoneless_date_is_utc() -> None:
    body = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<entry><id>a</id><title>no zone</title><published>2027-07-04T10:00:00</published></entry>"
        b"<entry><id>b</id><title>no date</title></entry></feed>"
    )
    entries = parse_document(body, content_type=None, url="https://d.example/").entries
    assert entries[0].published_at == datetime(2027, 7, 4, 10, tzinfo=UTC)
    assert entries[1].published_at is None and entries[1].updated_at is None


def test_bluesky_go_date_layout_is_parsed() -> None:
    entries = parse("bluesky_profile.rss").entries
    assert entries[0].published_at == datetime(2027, 7, 4, 14, 42, tzinfo=UTC)
    assert entries[1].published_at == datetime(2027, 7, 3, 16, 5, tzinfo=UTC)


def test_every_date_is_tz_aware_utc() -> None:
    for name in ("relative_xml_base.atom", "jsonfeed_1.1_full_lemon24.json", "youtube_channel_tagesschau.xml"):
        for entry in parse(name).entries:
            for value in (entry.published_at, entry.updated_at):
                assert value is None or value.utcoffset() == timedelta(0)


# --- social profile feeds -------------------------------------------------------------------------


def test_mastodon_account_rss_gives_posts_with_the_account_as_author() -> None:
    parsed = parse("mastodon_rss_account_hachyderm.xml", url="https://hachyderm.io/@ricoberger.rss")
    entry = parsed.entries[0]
    assert entry.kind is ItemKind.POST
    assert entry.title is None
    assert entry.text is not None and entry.text.startswith("🎉🎉🎉 kubenav v4 the #kubernetes dashboard")
    assert entry.author == Author(
        name="Rico Berger",
        handle="@ricoberger@hachyderm.io",
        url="https://hachyderm.io/@ricoberger",
        avatar="https://media.hachyderm.io/accounts/avatars/109/773/619/675/865/785/original/bf731ded4166a661.png",
    )
    assert [m.type for m in entry.media] == ["image"] * 4


def test_mastodon_tag_rss_credits_each_post_to_its_own_author() -> None:
    entries = parse("mastodon_rss_tag_hachyderm.xml").entries
    assert len(entries) == 4
    assert {e.kind for e in entries} == {ItemKind.POST}
    assert [e.author.handle for e in entries] == [
        "@jon404@ioc.exchange",
        "@k8s_releases@botsin.space",
        "@ErikBussink@vmst.io",
        entries[3].author.handle,
    ]
    assert entries[3].author.handle is not None and entries[3].author.handle.endswith("@fosstodon.org")
    assert entries[0].author.url == "https://ioc.exchange/@jon404"
    assert entries[0].author.avatar is None  # a hashtag feed has no single owner


def test_mastodon_alt_text_stays_with_its_media_and_never_replaces_the_post() -> None:
    entry = parse("mastodon_rss_alt_text.xml").entries[0]
    assert entry.text == "What a finish! #TDF2027"
    assert entry.media == (
        Media(
            type="image",
            url="https://files.social.example/media_attachments/files/113/000/000/000/000/002/original/finish.jpg",
            alt="Two riders sprinting for the line & the crowd behind",
        ),
        Media(
            type="video",
            url="https://files.social.example/media_attachments/files/113/000/000/000/000/003/original/sprint.mp4",
            alt="Slow-motion replay of the sprint",
            thumbnail="https://files.social.example/media_attachments/files/113/000/000/000/000/003/small/sprint.png",
        ),
    )


def test_an_item_level_media_description_never_replaces_the_description() -> None:
    items = (
        "<item><guid>cap</guid><title>t</title><description>The real story</description>"
        '<media:content url="https://c.example/a.jpg" medium="image"/>'
        "<media:description>Photo caption</media:description></item>"
        "<item><guid>only</guid><title>t</title><media:description>Only a media description</media:description></item>"
    )
    body = rss(items).replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
    )
    first, second = parse_document(body, content_type=None, url="https://c.example/").entries
    assert first.text == "The real story"
    assert second.text == "Only a media description"


def test_bluesky_profile_rss_gives_posts_with_plain_text_kept_as_text() -> None:
    parsed = parse("bluesky_profile.rss", url="https://bsky.app/profile/did:plc:abcdefghijklmnopqrstuvwx/rss")
    entry = parsed.entries[0]
    assert entry.kind is ItemKind.POST
    assert entry.key == "at://did:plc:abcdefghijklmnopqrstuvwx/app.bsky.feed.post/3lxyzabc22k2a"
    assert entry.title is None
    assert entry.html == (
        "<p>Stage win today!</p><p>Thanks to the whole team &amp; see you tomorrow https://team.example/news</p>"
    )
    assert entry.author.name == "Anna Rider" and entry.author.handle == "@rider.example.com"


def test_items_without_titles_make_a_feed_of_posts() -> None:
    body = rss("<item><guid>p1</guid><description>just a note</description></item>")
    entry = parse_document(body, content_type=None, url="https://micro.example/").entries[0]
    assert entry.kind is ItemKind.POST
    assert entry.title is None and entry.text == "just a note"


def test_ordinary_feeds_give_articles() -> None:
    assert {e.kind for e in parse("relative_xml_base.atom").entries} == {ItemKind.ARTICLE}
    assert {e.kind for e in parse("youtube_channel_tagesschau.xml").entries} == {ItemKind.ARTICLE}


# --- links, relative URLs, media ------------------------------------------------------------------


def test_xml_base_and_document_url_resolve_every_relative_url() -> None:
    parsed = parse("relative_xml_base.atom", url="https://news.example/feeds/sport.atom")
    first, second = parsed.entries
    assert first.url == "https://news.example/sport/stage-1/report.html"
    assert first.html is not None
    assert 'href="https://news.example/media/riders/break.html"' in first.html
    assert 'src="https://news.example/media/photos/finish.jpg"' in first.html
    assert first.media == (
        Media(
            type="audio",
            url="https://news.example/sport/stage-1/audio/podcast.mp3",
            thumbnail="https://news.example/sport/stage-1/img/thumb.jpg",
        ),
    )
    assert first.author.url == "https://news.example/desk/"
    assert second.html is not None and 'href="https://news.example/sport/maps/stage-2.pdf"' in second.html
    assert parsed.self_url == "https://news.example/sport/feed.atom"
    assert parsed.hubs == ["https://hub.example/"]


def test_relative_links_resolve_against_the_final_url() -> None:
    parsed = parse("relative_links.rss", url="https://moved.example/feeds/relative.rss")
    entry = parsed.entries[0]
    assert entry.url == "https://moved.example/articles/42"
    assert entry.html is not None and 'href="https://moved.example/more/43"' in entry.html
    assert [m.url for m in entry.media] == ["https://moved.example/files/photo.jpg", "https://cdn.example/clip.mp4"]
    assert parsed.self_url == "https://moved.example/feeds/relative.rss"
    assert parsed.hubs == ["https://websub.example/hub"]


def test_enclosure_and_media_content_of_one_file_merge_into_one_media() -> None:
    entry = parse("relative_links.rss").entries[0]
    photo = [m for m in entry.media if m.url.endswith("photo.jpg")]
    assert photo == [Media(type="image", url="https://feeds.example/files/photo.jpg", alt="A rider on the podium")]


def test_youtube_media_group_gives_a_video_with_its_thumbnail() -> None:
    entry = parse("youtube_channel_tagesschau.xml").entries[0]
    assert entry.media == (
        Media(
            type="video",
            url="https://www.youtube.com/watch?v=oiBPyTi7lvM",
            thumbnail="https://i4.ytimg.com/vi/oiBPyTi7lvM/hqdefault.jpg",
        ),
    )
    assert entry.text is not None and entry.text.startswith("Bundeskanzler Olaf Scholz")
    assert entry.html is not None and entry.html.count("<p>") == 5  # the description's paragraphs survive


def test_media_types_come_from_mime_medium_or_extension() -> None:
    items = (
        "<item><guid>m</guid><title>t</title>"
        '<enclosure url="https://m.example/a.mp3" length="1" type="audio/mpeg"/>'
        '<enclosure url="https://m.example/b.mp4" length="1" type=""/>'
        '<enclosure url="https://m.example/c.pdf" length="1" type="application/pdf"/>'
        '<media:content url="https://m.example/d" medium="image"/>'
        '<enclosure url="javascript:alert(1)" length="1" type="image/png"/>'
        "</item>"
    )
    body = rss(items).replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
    )
    media = parse_document(body, content_type=None, url="https://m.example/").entries[0].media
    assert {m.url: m.type for m in media} == {
        "https://m.example/d": "image",
        "https://m.example/a.mp3": "audio",
        "https://m.example/b.mp4": "video",
        "https://m.example/c.pdf": "link",
    }


def test_full_content_is_preferred_over_the_summary() -> None:
    items = (
        "<item><guid>c</guid><title>t</title><description>Short teaser</description>"
        "<content:encoded><![CDATA[<p>The <b>full</b> story</p>]]></content:encoded></item>"
    )
    body = rss(items).replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
    )
    entry = parse_document(body, content_type=None, url="https://c.example/").entries[0]
    assert entry.html == "<p>The <b>full</b> story</p>"
    assert entry.text == "The full story"


def test_unsafe_entry_links_are_dropped() -> None:
    entry = parse("hostile_html.rss").entries[0]
    assert entry.url is None


# --- sanitizing -----------------------------------------------------------------------------------


def test_hostile_content_is_sanitized() -> None:
    entry = parse("hostile_html.rss").entries[0]
    html = entry.html or ""
    lowered = html.lower()
    for needle in ("<script", "onerror", "onclick", "onload", "javascript:", "vbscript:", "data:", "<svg", "<math"):
        assert needle not in lowered, needle
    for needle in ("<iframe", "<object", "<embed", "<form", "<input", "<base", "<meta", "<link", "<style", "style="):
        assert needle not in lowered, needle
    assert '<a href="https://ok.example/page" target="_blank" rel="noopener noreferrer nofollow">good link</a>' in html
    assert '<img src="https://img.example/ok.jpg" alt="fine" width="640">' in html
    assert "<p>Outro &amp; done</p>" in html
    assert entry.text is not None and "alert" not in entry.text and entry.text.endswith("Outro & done")


def test_titles_are_plain_text_without_markup() -> None:
    atom = parse("relative_xml_base.atom").entries[0]
    assert atom.title == "Stage 1: breakaway caught"  # type="html" title: markup stripped
    hostile = parse("hostile_html.rss")
    assert hostile.entries[0].title == "Innocent title"
    assert hostile.title == "Hostile"


def test_no_plain_text_field_ever_carries_markup() -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        b"<title>&lt;b&gt;Feed&lt;/b&gt;</title><generator>Mastodon v4.3</generator><link>https://m.example/@a</link>"
        b"<item><guid>1</guid><author>x@y.example (&lt;script&gt;alert(1)&lt;/script&gt;Name)</author>"
        b"<title>&amp;lt;script&amp;gt;alert(2)&amp;lt;/script&amp;gt;T</title>"
        b"<description>&amp;lt;img src=x onerror=alert(3)&amp;gt;body</description>"
        b'<media:content url="https://m.example/i.jpg" medium="image">'
        b"<media:description>&lt;img src=x onerror=alert(4)&gt;alt</media:description></media:content></item>"
        b"</channel></rss>"
    )
    parsed = parse_document(body, content_type="application/rss+xml", url="https://m.example/@a.rss")
    entry = parsed.entries[0]
    for value in (parsed.title, entry.title, entry.text, entry.author.name, entry.media[0].alt):
        assert value is not None and "<" not in value and "alert" not in value, value
    assert entry.media[0].alt == "alt"
    # double-escaped markup is shown as the literal text it is, never as markup
    assert entry.html == "&lt;img src=x onerror=alert(3)&gt;body"


# --- encodings and broken documents ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "title", "text"),
    [
        ("encoding_iso-8859-1.rss", "Café à la française", "Déjà vu, naïve façade, 15 °C"),
        ("encoding_windows-1251.rss", "Гонка: этап 1", "Победа на финише — отличный день"),
        ("encoding_koi8-r.rss", "Гонка: этап 2", "Горный этап, жёлтая майка"),
        ("encoding_wrong_prolog.rss", "Équipe de départ", "Château, crème brûlée"),
    ],
)
@pytest.mark.parametrize("content_type", [None, "application/rss+xml", "text/xml"])
def test_odd_encodings_come_out_as_unicode(name: str, title: str, text: str, content_type: str | None) -> None:
    parsed = parse(name, content_type=content_type)
    assert parsed.title == title
    assert parsed.entries[0].title == title
    assert parsed.entries[0].text == text


def test_the_http_charset_overrides_a_wrong_prolog() -> None:
    body = (FEEDS / "encoding_windows-1251.rss").read_bytes().replace(b'encoding="windows-1251"', b'encoding="UTF-8"')
    parsed = parse_document(body, content_type="application/rss+xml; charset=windows-1251", url="https://e.example/")
    assert parsed.entries[0].title == "Гонка: этап 1"


def test_malformed_xml_is_recovered() -> None:
    parsed = parse("malformed.rss")
    assert [e.key for e in parsed.entries] == ["broken-1", "broken-2"]
    assert parsed.entries[0].title == "First & unescaped"
    assert parsed.entries[0].url == "https://broken.example/1?a=1&b=2"
    assert parsed.entries[0].published_at == datetime(2027, 7, 4, 10, tzinfo=UTC)


# --- XML attacks ----------------------------------------------------------------------------------


def test_external_entities_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        '<rss version="2.0"><channel><title>T &xxe;</title><item><guid>x</guid>'
        "<title>A &xxe;</title><description>B &xxe;</description></item></channel></rss>"
    ).encode()
    try:
        parsed = parse_document(body, content_type="application/rss+xml", url="https://x.example/")
    except ParseError:
        return  # refusing the document is as good as not expanding it
    dumped = json.dumps([entry_to_json(e) for e in parsed.entries]) + str(parsed.title)
    assert "TOP-SECRET" not in dumped


def test_billion_laughs_does_not_expand() -> None:
    tracemalloc.start()
    try:
        parsed = parse("entity_expansion.rss")
        _, peak = tracemalloc.get_traced_memory()
    except ParseError:
        return
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024
    for entry in parsed.entries:
        assert len(entry.title or "") < 1000 and len(entry.text or "") < 1000
    assert "lollollol" not in (parsed.title or "")


def test_quadratic_blowup_does_not_expand() -> None:
    big = "x" * 50_000
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "{big}">]>\n'
        f'<rss version="2.0"><channel><title>t</title><item><guid>q</guid><title>q</title>'
        f"<description>{'&a;' * 20_000}</description></item></channel></rss>"
    ).encode()
    try:
        parsed = parse_document(body, content_type=None, url="https://q.example/")
    except ParseError:
        return
    assert all(len(e.text or "") < len(body) for e in parsed.entries)


# --- JSON Feed ------------------------------------------------------------------------------------


def test_json_feed_1_0_with_author_numeric_ids_and_items_without_id() -> None:
    parsed = parse("jsonfeed_1.0_author.json", url="https://wire.example/feed.json")
    assert [e.key for e in parsed.entries] == ["1001", "story-1002", "story-1003"]
    first, second, third = parsed.entries
    assert first.author == Author(
        name="Wire Desk", url="https://wire.example/desk", avatar="https://wire.example/desk.png"
    )
    assert first.url == "https://wire.example/stories/1001"
    assert first.html == "<p>Line one<br>Line two</p><p>Second &lt;paragraph&gt; &amp; more</p>"
    assert first.published_at == datetime(2027, 7, 4, 10, tzinfo=UTC)
    assert first.updated_at == datetime(2027, 7, 4, 10, 30, tzinfo=UTC)
    assert first.media == (Media(type="image", url="https://wire.example/img/1001.jpg"),)
    assert second.author.name == "Jo Reporter"
    assert second.url == "https://elsewhere.example/original"
    assert second.text == "Only a summary"
    assert [(m.type, m.url) for m in second.media] == [
        ("audio", "https://wire.example/audio/1002.mp3"),
        ("link", "https://wire.example/docs/1002.pdf"),
    ]
    assert third.html == (
        '<p>Hello <a href="https://wire.example/x" target="_blank" rel="noopener noreferrer nofollow">world</a></p>'
    )
    assert parsed.hubs == ["https://hub.wire.example/"]
    assert parsed.self_url == "https://wire.example/feed.json"


def test_json_feed_1_1_authors_attachments_and_empty_urls() -> None:
    parsed = parse("jsonfeed_1.1_full_lemon24.json", url="https://example.org/feed.json")
    second, first = parsed.entries
    assert second.title == "Title"
    assert second.text == "Content with link"  # content_html wins over content_text
    assert second.published_at == datetime(2020, 1, 2, 21, tzinfo=UTC)
    assert second.updated_at == datetime(2020, 1, 4, 0, tzinfo=UTC)
    assert [m.url for m in second.media] == [
        "http://example.com/downloads/file.m4a",
        "http://example.com/downloads/another.mp3",
    ]
    assert first.author.name == "Jane"  # the deprecated 1.0 `author`


def test_json_feed_podcast_and_microblog() -> None:
    podcast = parse("jsonfeed_1.1_spec_podcast.json").entries[0]
    assert podcast.kind is ItemKind.ARTICLE
    assert [m.type for m in podcast.media] == ["audio"]
    microblog = parse("jsonfeed_1.1_spec_microblog.json").entries[0]
    assert microblog.kind is ItemKind.POST
    assert microblog.title is None and microblog.text == "Cats are neat. https://example.org/cats"
    assert microblog.author.avatar == "https://example.org/avatar.png"


def test_json_feed_item_ids_are_coerced_or_discarded() -> None:
    items = [
        {"id": 7, "content_text": "int"},
        {"id": 8.0, "content_text": "float"},
        {"id": True, "content_text": "bool: no id"},
        {"id": "", "content_text": "blank: no id"},
        {"id": None, "content_text": "null: no id"},
        {"id": {"x": 1}, "content_text": "object: no id"},
        "not an item",
        {"id": " s ", "content_text": "string"},
    ]
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": items}).encode()
    parsed = parse_document(body, content_type="application/feed+json", url="https://j.example/")
    assert [(e.key, e.text) for e in parsed.entries] == [("7", "int"), ("8", "float"), ("s", "string")]


def test_json_feed_with_a_bom_and_odd_field_types_survives() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": 5,
        "hubs": "nope",
        "authors": "nope",
        "items": [
            {"id": "a", "title": ["x"], "content_html": 3, "content_text": "ok", "attachments": "no", "image": 4}
        ],
    }
    body = b"\xef\xbb\xbf" + json.dumps(doc).encode()
    parsed = parse_document(body, content_type=None, url="https://j.example/")
    assert parsed.title is None and parsed.hubs == []
    assert [(e.key, e.title, e.text, e.media) for e in parsed.entries] == [("a", None, "ok", ())]


# --- process pool ---------------------------------------------------------------------------------


def test_results_are_picklable() -> None:
    parsed = parse("mastodon_rss_alt_text.xml")
    assert pickle.loads(pickle.dumps(parsed)) == parsed


def test_parse_document_runs_in_a_process_pool() -> None:
    body = (FEEDS / "relative_xml_base.atom").read_bytes()
    with ProcessPoolExecutor(max_workers=1) as pool:
        remote = pool.submit(parse_document, body, content_type=None, url="https://news.example/feeds/sport.atom")
        result = remote.result(timeout=60)
    assert result == parse_document(body, content_type=None, url="https://news.example/feeds/sport.atom")


def test_an_undeclared_cyrillic_document_is_detected() -> None:
    """No charset in the prolog or the header: the bytes alone tell (feedparser uses chardet)."""
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Новости</title><item>'
        "<title>Велогонка Тур де Франс: третий этап завершился победой в горах</title>"
        "<link>https://x.example/1</link>"
        "<description>Гонщики преодолели перевал, отрыв составил четыре минуты.</description>"
        "</item></channel></rss>"
    ).encode("windows-1251")
    (entry,) = parse_document(body, content_type="application/rss+xml", url="https://x.example/f").entries
    assert entry.title == "Велогонка Тур де Франс: третий этап завершился победой в горах"

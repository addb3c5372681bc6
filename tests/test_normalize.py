"""Pure normalization helpers: UTC dates, canonical URLs, content hashes, keys, titles, Entry JSON."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from curation.codec import entry_to_json
from curation.models import Author, Entry, ItemKind, Media
from curation.normalize import canonical_url, content_hash, fallback_key, to_utc, truncate_title

# --- to_utc ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-07-04T12:00:00Z", datetime(2027, 7, 4, 12, tzinfo=UTC)),
        ("2027-07-04T14:00:00+02:00", datetime(2027, 7, 4, 12, tzinfo=UTC)),
        ("2020-01-04T01:00:00+0100", datetime(2020, 1, 4, 0, tzinfo=UTC)),
        ("2027-07-04T12:00:00.250Z", datetime(2027, 7, 4, 12, 0, 0, 250000, tzinfo=UTC)),
        # no zone: taken as UTC
        ("2027-07-04T12:00:00", datetime(2027, 7, 4, 12, tzinfo=UTC)),
        ("Sun, 04 Jul 2027 14:00:00 +0200", datetime(2027, 7, 4, 12, tzinfo=UTC)),
        ("Sun, 04 Jul 2027 12:00:00 GMT", datetime(2027, 7, 4, 12, tzinfo=UTC)),
        ("04 Jul 2027 12:00:00 -0000", datetime(2027, 7, 4, 12, tzinfo=UTC)),
        # Bluesky profile RSS: Go layout "02 Jan 2006 15:04 -0700"
        ("04 Jul 2027 16:42 +0200", datetime(2027, 7, 4, 14, 42, tzinfo=UTC)),
        ("3 Jul 2027 09:05 -0700", datetime(2027, 7, 3, 16, 5, tzinfo=UTC)),
        ("", None),
        ("not a date", None),
        ("2027-13-45T99:00:00Z", None),
        (None, None),
    ],
)
def test_to_utc_strings(value: str | None, expected: datetime | None) -> None:
    result = to_utc(value)
    assert result == expected
    if result is not None:
        assert result.tzinfo is UTC


def test_to_utc_datetimes() -> None:
    naive = datetime(2027, 7, 4, 12, 0)
    assert to_utc(naive) == datetime(2027, 7, 4, 12, tzinfo=UTC)
    paris = datetime(2027, 7, 4, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    converted = to_utc(paris)
    assert converted == datetime(2027, 7, 4, 12, tzinfo=UTC)
    assert converted is not None and converted.utcoffset() == timedelta(0)


def test_to_utc_struct_time_is_read_as_utc() -> None:
    parsed = time.strptime("2027-07-04 12:30:15", "%Y-%m-%d %H:%M:%S")
    assert to_utc(parsed) == datetime(2027, 7, 4, 12, 30, 15, tzinfo=UTC)


def test_to_utc_leap_second_is_clamped() -> None:
    leap = time.struct_time((2016, 12, 31, 23, 59, 60, 5, 366, 0))
    assert to_utc(leap) == datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)


# --- canonical_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://News.Example.ORG/Path/To?x=1#frag", "https://news.example.org/Path/To?x=1"),
        ("https://news.example:443/a", "https://news.example/a"),
        ("http://news.example:80/a", "http://news.example/a"),
        ("https://news.example:8443/a", "https://news.example:8443/a"),
        ("https://news.example", "https://news.example/"),
        (
            "https://news.example/a?id=7&utm_source=x&UTM_Medium=y&fbclid=z&page=2&gclid=q",
            "https://news.example/a?id=7&page=2",
        ),
        ("https://news.example/a?utm_campaign=only", "https://news.example/a"),
        ("https://news.example/a?b=2&a=1", "https://news.example/a?b=2&a=1"),
        ("https://user:pw@News.example/a", "https://user:pw@news.example/a"),
        ("https://[2001:DB8::1]:8080/a", "https://[2001:db8::1]:8080/a"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_canonical_url_makes_tracking_variants_equal() -> None:
    a = canonical_url("https://news.example/story/42?utm_source=twitter#comments")
    b = canonical_url("https://NEWS.example:443/story/42?fbclid=abc")
    assert a == b == "https://news.example/story/42"


# --- content_hash, fallback_key -------------------------------------------------------------------


def test_content_hash_is_stable_and_sensitive_to_what_readers_see() -> None:
    base = content_hash("Title", "<p>Body</p>", ["https://img.example/a.jpg"])
    assert base == content_hash("Title", "<p>Body</p>", ["https://img.example/a.jpg"])
    assert len(base) == 64 and int(base, 16) >= 0
    assert base != content_hash("Title!", "<p>Body</p>", ["https://img.example/a.jpg"])
    assert base != content_hash("Title", "<p>Body.</p>", ["https://img.example/a.jpg"])
    assert base != content_hash("Title", "<p>Body</p>", ["https://img.example/b.jpg"])
    assert base != content_hash("Title", "<p>Body</p>", [])


def test_content_hash_ignores_media_order_and_treats_none_as_empty() -> None:
    assert content_hash("t", "b", ["u1", "u2"]) == content_hash("t", "b", ["u2", "u1"])
    assert content_hash(None, None) == content_hash("", "")


def test_content_hash_fields_cannot_run_into_each_other() -> None:
    assert content_hash("ab", "c") != content_hash("a", "bc")


def test_fallback_key() -> None:
    key = fallback_key("Title", "content")
    assert key == fallback_key("Title", "content")
    assert key.startswith("sha256:")
    assert key != fallback_key("Title", "other content")
    assert key != fallback_key("Other", "content")


# --- truncate_title -------------------------------------------------------------------------------


def test_truncate_title_keeps_short_text_and_collapses_whitespace() -> None:
    assert truncate_title("  Stage  win\n today ") == "Stage win today"


def test_truncate_title_cuts_at_a_word_boundary() -> None:
    text = "word " * 60
    title = truncate_title(text, 120)
    assert len(title) <= 120
    assert title.endswith("word…")


def test_truncate_title_cuts_a_single_long_word() -> None:
    title = truncate_title("x" * 300, 50)
    assert title == "x" * 49 + "…"


# --- entry_to_json --------------------------------------------------------------------------------


def test_entry_to_json_is_json_ready_with_utc_z_dates() -> None:
    entry = Entry(
        key="k1",
        kind=ItemKind.POST,
        url="https://social.example/@a/1",
        title=None,
        text="hello",
        html="<p>hello</p>",
        content_hash="h",
        author=Author(name="A", handle="@a@social.example", url="https://social.example/@a", avatar=None),
        media=(Media(type="image", url="https://img.example/1.jpg", alt="alt"),),
        published_at=datetime(2027, 7, 4, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        updated_at=None,
    )
    data = entry_to_json(entry)
    assert json.loads(json.dumps(data)) == data
    assert data["kind"] == "post"
    assert data["published_at"] == "2027-07-04T12:00:00.123Z"
    assert data["updated_at"] is None
    assert data["author"] == {
        "name": "A",
        "handle": "@a@social.example",
        "url": "https://social.example/@a",
        "avatar": None,
    }
    assert data["media"] == [{"type": "image", "url": "https://img.example/1.jpg", "alt": "alt", "thumbnail": None}]

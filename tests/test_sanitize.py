"""The allowlist sanitizer, text helpers and URL policy, including a property test over hostile input."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation.sanitize import escape_text, html_to_text, plain_text, safe_url, sanitize_html
from tests.conftest import start_tags

BASE = "https://news.example/sport/stage-1/report.html"


FORBIDDEN_TAGS = {"script", "style", "iframe", "object", "embed", "form", "input", "button", "svg", "math"}
FORBIDDEN_TAGS |= {"link", "meta", "base", "textarea", "select", "noscript", "template", "frame", "frameset"}
URL_ATTRIBUTES = {"href", "src", "cite", "action", "formaction", "xlink:href", "poster", "srcset", "background"}


def assert_safe(html: str) -> None:
    """What no sanitized output may ever hold, checked on parsed tags (text may say anything)."""
    assert "<script" not in html.lower()
    for tag, attrs in start_tags(html):
        assert tag not in FORBIDDEN_TAGS, (tag, html)
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, html)
            assert name != "style", (tag, html)
            if name in URL_ATTRIBUTES:
                squeezed = re.sub(r"[\x00-\x20]", "", value).lower()
                assert not squeezed.startswith(("javascript:", "vbscript:", "data:")), (tag, value)
                scheme = urlsplit(value).scheme.lower()
                allowed = {"http", "https"} if tag == "img" else {"http", "https", "mailto"}
                assert scheme in allowed, (tag, name, value)
        if tag == "a":
            assert attrs.get("target") == "_blank"
            assert set(attrs.get("rel", "").split()) == {"noopener", "noreferrer", "nofollow"}


# --- sanitize_html --------------------------------------------------------------------------------


def test_keeps_allowlisted_markup() -> None:
    html = (
        "<h2>Stage</h2><p><strong>Bold</strong> <em>it</em> <code>x</code></p>"
        "<blockquote>quote</blockquote><ul><li>one</li></ul>"
        "<table><thead><tr><th>rider</th></tr></thead><tbody><tr><td>A</td></tr></tbody></table>"
    )
    assert sanitize_html(html) == html


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
        "<style>body{display:none}</style>",
        "<iframe src=https://evil.example/>fallback</iframe>",
        "<object data=evil.swf></object><embed src=evil.swf>",
        "<svg onload=alert(1)><script>alert(2)</script></svg>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
        "<form action=https://evil.example><input name=p><button formaction=javascript:alert(1)>x</button></form>",
        "<base href=https://evil.example/><meta http-equiv=refresh content=0><link rel=stylesheet href=x.css>",
        "<noscript><p title='</noscript><img src=x onerror=alert(1)>'></p></noscript>",
        "<template><script>alert(1)</script></template>",
    ],
)
def test_dangerous_elements_are_removed(hostile: str) -> None:
    cleaned = sanitize_html(f"<p>before</p>{hostile}<p>after</p>", BASE)
    assert_safe(cleaned)
    assert "alert" not in cleaned
    assert cleaned.startswith("<p>before</p>") and cleaned.endswith("<p>after</p>")


def test_event_handler_and_style_attributes_are_removed() -> None:
    cleaned = sanitize_html('<p onclick="alert(1)" style="position:fixed" id="x" class="y">hi</p>')
    assert cleaned == "<p>hi</p>"


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        " JaVaScRiPt:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "java\nscript:alert(1)",
        "&#106;avascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "file:///etc/passwd",
    ],
)
def test_unsafe_link_schemes_are_dropped(href: str) -> None:
    cleaned = sanitize_html(f'<a href="{href}">x</a>', BASE)
    assert "href" not in cleaned
    assert_safe(cleaned)


def test_every_link_opens_in_a_new_tab_without_opener() -> None:
    cleaned = sanitize_html('<a href="https://ok.example/" target="_self" rel="opener">ok</a>')
    assert cleaned == '<a href="https://ok.example/" target="_blank" rel="noopener noreferrer nofollow">ok</a>'


def test_mailto_links_are_kept() -> None:
    assert 'href="mailto:desk@news.example"' in sanitize_html('<a href="mailto:desk@news.example">m</a>')


def test_relative_urls_are_resolved_against_the_base() -> None:
    cleaned = sanitize_html(
        '<a href="../stage-2/">next</a> <img src="/img/a.jpg" alt="a"> <a href="//cdn.example/x">', BASE
    )
    assert 'href="https://news.example/sport/stage-2/"' in cleaned
    assert 'src="https://news.example/img/a.jpg"' in cleaned
    assert 'href="https://cdn.example/x"' in cleaned


def test_relative_urls_without_a_base_are_dropped() -> None:
    cleaned = sanitize_html('<a href="/x">x</a><img src="/a.jpg" alt="gone">')
    assert "href" not in cleaned
    assert "<img" not in cleaned


def test_images_keep_only_http_sources_and_a_few_attributes() -> None:
    cleaned = sanitize_html(
        '<img src="https://img.example/a.jpg" alt="A" width="640" height="100%" title="t" style="x" onload="y">'
        '<img src="data:image/png;base64,AAAA" alt="data"><img src="mailto:a@b.example" alt="mail">'
    )
    assert cleaned == '<img src="https://img.example/a.jpg" alt="A" width="640">'


def test_mastodon_link_shortening_classes_survive_and_others_do_not() -> None:
    cleaned = sanitize_html('<span class="invisible">https://</span><span class="ellipsis evil">example.org</span>')
    assert cleaned == '<span class="invisible">https://</span><span class="ellipsis">example.org</span>'


def test_comments_are_stripped() -> None:
    assert sanitize_html("<p>a<!-- <script>alert(1)</script> -->b</p>") == "<p>ab</p>"


def test_empty_input_gives_empty_output() -> None:
    assert sanitize_html("") == ""


def test_an_unusable_base_is_ignored() -> None:
    assert "href" not in sanitize_html('<a href="x">x</a>', "javascript:alert(1)")


HOSTILE_FRAGMENTS = [
    "<script>",
    "</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">',
    "<a href='jav&#x09;ascript:x'>",
    '<a href=" data:text/html,x">',
    "<svg><script>",
    "<math><mtext><table><mglyph><style>",
    "<iframe srcdoc='<script>'>",
    '"><script>',
    "<p style=x onmouseover=y>",
    "<!--",
    "-->",
    "<![CDATA[",
    "<noscript><p title='",
    "</noscript>",
    "<object data=x>",
    "<base href=javascript:x>",
    "&lt;script&gt;",
    "<a href=vbscript:x>",
    "<img src=//evil.example/x.png onload=x>",
    "<",
    ">",
    "'",
    '"',
    "&",
    "javascript:",
    "onerror=",
]


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.lists(st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.text(max_size=8))).map("".join)))
def test_property_output_is_always_safe(html: str) -> None:
    assert_safe(sanitize_html(html, BASE))
    assert_safe(sanitize_html(html))


PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(" \n\t")
TAG_LIKE = re.compile(r"<[a-zA-Z/!?]")


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(PRINTABLE))
def test_property_escape_text_never_makes_markup(text: str) -> None:
    html = escape_text(text)
    assert {tag for tag, _ in start_tags(html)} <= {"p", "br"}
    if not TAG_LIKE.search(text):
        assert html_to_text(html) == " ".join(text.split())


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(), st.lists(st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.text(max_size=8))).map("".join)))
def test_property_plain_text_fields_never_hold_a_tag(text: str) -> None:
    for result in (html_to_text(text), plain_text(text), html_to_text(escape_text(text))):
        assert not TAG_LIKE.search(result), result
        assert start_tags(result) == []


# --- escape_text, html_to_text --------------------------------------------------------------------


def test_escape_text_escapes_and_keeps_line_structure() -> None:
    assert escape_text("a < b & c\nnext line\n\n<script>x</script>") == (
        "<p>a &lt; b &amp; c<br>next line</p><p>&lt;script&gt;x&lt;/script&gt;</p>"
    )
    assert escape_text("  \n ") == ""
    assert escape_text("one\r\ntwo\x00") == "<p>one<br>two</p>"


def test_html_to_text_strips_tags_decodes_entities_and_collapses_whitespace() -> None:
    html = "<p>Caf&eacute;&nbsp;&amp;  <b>bar</b></p><p>second</p><ul><li>a</li><li>b</li></ul>line<br>break"
    assert html_to_text(html) == "Café & bar second a b line break"


def test_html_to_text_drops_script_and_style_content() -> None:
    assert html_to_text("<style>p{}</style>text<script>alert(1)</script>") == "text"


def test_html_to_text_never_returns_markup_even_when_it_was_escaped() -> None:
    assert html_to_text("&lt;b&gt;not bold&lt;/b&gt; &amp;lt;script&amp;gt;x&amp;lt;/script&amp;gt;y") == "not bold y"
    assert html_to_text("a &lt; b &amp;&amp; c &gt; d") == "a < b && c > d"


def test_plain_text_collapses_whitespace_and_strips_only_markup() -> None:
    assert plain_text("  Tom &amp; Jerry\n <3  ") == "Tom &amp; Jerry <3"
    assert plain_text("<script>alert(1)</script>Hostile <b>title</b>") == "Hostile title"
    assert plain_text("") == ""


# --- safe_url -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("https://example.org/a?b=1#c", None, "https://example.org/a?b=1#c"),
        ("HTTP://Example.org/A", None, "http://Example.org/A"),
        ("  https://example.org/x  ", None, "https://example.org/x"),
        ("/a/b", "https://example.org/x/y", "https://example.org/a/b"),
        ("c", "https://example.org/x/y", "https://example.org/x/c"),
        ("//cdn.example/x", "https://example.org/", "https://cdn.example/x"),
        ("https://example.org/a b", None, "https://example.org/a%20b"),
        ("/a", None, None),
        ("/a", "javascript:alert(1)", None),
        ("javascript:alert(1)", "https://example.org/", None),
        ("java\tscript:alert(1)", "https://example.org/", None),
        ("data:text/html,x", None, None),
        ("mailto:a@example.org", None, None),
        ("ftp://example.org/x", None, None),
        ("https://", None, None),
        ("https://example.org:99999/", None, None),
        ("", None, None),
        (None, "https://example.org/", None),
    ],
)
def test_safe_url(url: str | None, base: str | None, expected: str | None) -> None:
    assert safe_url(url, base) == expected

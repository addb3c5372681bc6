"""Allowlist HTML sanitizing and URL policy for everything upstreams send, as one policy table.

Pure functions over strings (nh3/ammonia underneath); nothing here does I/O.
"""

from __future__ import annotations

import html as _html
import re
from urllib.parse import urljoin, urlsplit, urlunsplit

import nh3

# --- the policy table -------------------------------------------------------------------------

#: tags kept (their attributes still go through ATTRIBUTES); anything else is unwrapped, text kept
TAGS: frozenset[str] = frozenset(
    {
        "p", "br", "hr", "a", "em", "strong", "b", "i", "u", "s", "sub", "sup", "span", "abbr", "time",
        "blockquote", "q", "cite", "pre", "code", "ul", "ol", "li", "dl", "dt", "dd",
        "h1", "h2", "h3", "h4", "h5", "h6", "figure", "figcaption", "img",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip

#: attributes kept per tag ("*": on every tag); no on*, no style, no class (except ALLOWED_CLASSES), no id
ATTRIBUTES: dict[str, set[str]] = {
    "*": {"lang"},
    "a": {"href", "title", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "abbr": {"title"},
    "time": {"datetime"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "ol": {"start", "reversed"},
    "li": {"value"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}

#: Mastodon shortens link text with these classes; a page may hide `.invisible` (harmless if it does not)
ALLOWED_CLASSES: dict[str, set[str]] = {"span": {"invisible", "ellipsis"}, "img": {"emoji"}}

#: dropped together with everything inside them (their text is code, markup or a trap, never prose)
DROP_WITH_CONTENT: frozenset[str] = frozenset(
    {
        "script", "style", "template", "noscript", "noembed", "noframes", "iframe", "frame", "frameset",
        "object", "embed", "applet", "svg", "math", "title", "textarea", "select", "xmp",
    }
)  # fmt: skip

URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
IMAGE_SCHEMES: frozenset[str] = frozenset({"http", "https"})
LINK_REL = "noopener noreferrer nofollow"
FORCED_ATTRIBUTES: dict[str, dict[str, str]] = {"a": {"target": "_blank"}}

# ----------------------------------------------------------------------------------------------

_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*):")
_DIGITS = re.compile(r"^\s*\d{1,5}\s*$")
# ammonia re-serializes its output, so attributes are always `name="value"`; an <img> left without a
# src (it was data:, javascript:, or relative with no base) is only an empty box, so it goes
_IMG_WITHOUT_SRC = re.compile(r'<img(?: (?!src=)[a-z\-]+="[^"]*")*>')
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|blockquote|pre|table|tr|td|th|figure|figcaption|"
    r"section|article|header|footer|aside|nav|main)\b)",
    re.IGNORECASE,
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# C0 controls other than tab and newline have no place in text and NUL is rewritten by HTML parsers
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# bidi embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI): in a one-line field shown inline
# (an author's name before their handle), an unclosed one reorders the text after the field too, which spoofs it
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# what a browser starts a tag, comment or processing instruction with
_TAG_LIKE = re.compile(r"<[a-zA-Z/!?]")
_MAX_UNESCAPE_ROUNDS = 2
_NO_TAGS: set[str] = set()
_NO_ATTRIBUTES: dict[str, set[str]] = {}


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img":
        if attribute == "src":
            # relative sources are still allowed here: ammonia resolves or drops them after this filter
            scheme = _SCHEME.match(value)
            if scheme and scheme.group(1).lower() not in IMAGE_SCHEMES:
                return None
        elif attribute in ("width", "height") and not _DIGITS.match(value):
            return None
    return value


def sanitize_html(html: str, base_url: str | None = None) -> str:
    """Clean untrusted HTML down to the allowlist; relative URLs are resolved against `base_url`.

    Links keep only http, https and mailto targets and open in a new tab with
    rel="noopener noreferrer nofollow"; images keep only http(s) sources. Relative URLs with no
    usable base are dropped.
    """
    if not html:
        return ""
    base = safe_url(base_url)
    cleaned = nh3.clean(
        html,
        tags=TAGS,
        clean_content_tags=DROP_WITH_CONTENT,
        attributes=ATTRIBUTES,
        attribute_filter=_attribute_filter,
        strip_comments=True,
        link_rel=LINK_REL,
        set_tag_attribute_values=FORCED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        allowed_classes=ALLOWED_CLASSES,
        url_relative=("rewrite_with_base", base) if base else "deny",
    )
    return _IMG_WITHOUT_SRC.sub("", cleaned).strip()


def escape_text(text: str) -> str:
    """Plain text to safe HTML: escaped; blank lines make paragraphs, single newlines make <br>."""
    text = _CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not text:
        return ""
    paragraphs = (p.strip() for p in _PARAGRAPH_BREAK.split(text))
    return "".join(f"<p>{_html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs if p)


def html_to_text(html: str) -> str:
    """HTML to one line of plain text: tags stripped (script/style with their content), entities decoded,
    whitespace collapsed; block boundaries become spaces so words never run together.

    The result never holds anything a browser would read as a tag, even when the source escaped its
    markup once more (double-escaped feeds), so a consumer that pastes it into innerHTML runs nothing.
    """
    text = _strip_markup(html)
    for _ in range(_MAX_UNESCAPE_ROUNDS):
        if not _TAG_LIKE.search(text):
            return text
        text = _strip_markup(text)
    return _TAG_LIKE.sub(lambda match: match.group(0)[1:], text)


def plain_text(text: str) -> str:
    """One line of plain text from text that should hold no markup (titles, names, alt text, text/plain
    bodies): whitespace collapsed, anything tag-like stripped as html_to_text would, and no bidi control
    that could reorder what a page shows after it (letters keep their own direction without them)."""
    if _TAG_LIKE.search(text):
        return _BIDI_CONTROLS.sub("", html_to_text(text))
    return " ".join(_BIDI_CONTROLS.sub("", text).split())


def _strip_markup(html: str) -> str:
    if not html:
        return ""
    spaced = _BLOCK_TAG.sub(" <", html)
    stripped = nh3.clean(
        spaced,
        tags=_NO_TAGS,
        clean_content_tags=DROP_WITH_CONTENT,
        attributes=_NO_ATTRIBUTES,
        link_rel=None,
    )
    return " ".join(_html.unescape(stripped).split())


def safe_url(url: str | None, base: str | None = None) -> str | None:
    """An absolute http(s) URL, resolved against `base` when relative; None for anything else."""
    if not url:
        return None
    url = url.strip()
    if not url:
        return None
    if base and not _SCHEME.match(url):
        absolute_base = safe_url(base)
        if absolute_base is None:
            return None
        url = urljoin(absolute_base, url)
    try:
        # urlsplit also strips the tab/CR/LF that browsers ignore, so "java\tscript:" is seen as such
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in IMAGE_SCHEMES or not parts.hostname:
        return None
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in parts.netloc):
        return None
    cleaned = urlunsplit(parts._replace(scheme=parts.scheme.lower()))
    # spaces and controls inside the path or query would break attribute contexts downstream
    return "".join(ch if ord(ch) > 0x20 and ord(ch) != 0x7F else f"%{ord(ch):02X}" for ch in cleaned)

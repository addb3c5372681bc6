"""Decode JSON that someone else wrote (upstream APIs, push senders, editors' browsers) into plain Python values.

json.loads lets two hostile inputs through as something other than a ValueError: nesting deep enough to raise
RecursionError, and lone UTF-16 surrogates ("\\ud800" escapes, or CESU-8 bytes that json decodes with
surrogatepass). A lone surrogate is a valid JSON string but cannot be encoded as UTF-8, so it would crash the
sanitizer, the store or the response encoder far from where it came in; here it becomes U+FFFD instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: one escape sequence: a surrogate pair (kept), a lone surrogate (replaced) or any other escape (kept, so that an
#: escaped backslash followed by "ud800" is never mistaken for a surrogate escape)
_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})|\\.", re.DOTALL
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return "\\ufffd" if match.group(1) else match.group(0)


def loads(body: bytes | str) -> Any:
    """The value of a JSON document, with every lone surrogate replaced by U+FFFD.

    Raises:
        ValueError: not JSON (its encoding included), or nested too deeply to decode.
    """
    if isinstance(body, bytes | bytearray):
        # as json.loads does: UTF-8, -16 or -32 by the first bytes; surrogatepass lets CESU-8 through, scrubbed below
        text = bytes(body).decode(json.detect_encoding(body), "surrogatepass")
    else:
        text = body
    if "\\" in text:
        text = _ESCAPE.sub(_escape, text)
    text = _SURROGATE.sub("\ufffd", text)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None

"""Security headers on every HTTP response: a Content-Security-Policy per kind of page, nosniff, a referrer policy
and the framing rules (the embed may be framed anywhere, the reader page by Fil itself, the desk nowhere).

A pure ASGI middleware. Every page's script comes from /static (never inline, never eval), so a hostile
fragment the sanitizer missed still cannot run; the policy also keeps what a page may load to what it
needs: its own origin, images from their origins (only /img/ when CURATION_IMAGE_PROXY is on), a video
or the YouTube no-cookie player after a click, and the reader websocket ('self' covers ws:/wss: of the
same host in CSP Level 3). A response that already says something keeps it: a handler's whole policy (one
with default-src) stays as it is, a partial one is merged with this module's (the handler's directive wins,
one header); its own Referrer-Policy and X-Frame-Options stay too.

The embed's <style> holding the partner's accent colour is the only inline style: the template passes its
text through the `csp_style` filter, which records its hash for this response's style-src.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from jinja2 import Environment, pass_context
from markupsafe import Markup
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the YouTube player a reader starts with a click (live.js)
YOUTUBE = "https://www.youtube-nocookie.com"
#: the scope key where `csp_style` leaves the hashes of the inline styles a template rendered
STYLE_HASHES = "fil.csp.style-hashes"
REFERRER_POLICY = "strict-origin-when-cross-origin"

Policy = dict[str, str]

_DESK = re.compile(r"/editor(?:/.*)?")
_EMBED = re.compile(r"/embed/.*")
#: the archive download: a file meant to be opened elsewhere, with the same policy as its <meta> one
_ARCHIVE = re.compile(r"/events/[^/]+/archive\.html")


def _images(proxy: bool) -> str:
    # the sanitizer keeps http(s) images only; with the proxy on, every image a page shows is /img/...
    return "'self'" if proxy else "'self' http: https:"


def reader_policy(image_proxy: bool) -> Policy:
    """The reader page and the event list: Fil's scripts and styles, images, a video or YouTube on click."""
    return {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": _images(image_proxy),
        # a <video> loads its upstream file only when the reader plays it (the image proxy does not carry video)
        "media-src": "http: https:",
        "frame-src": YOUTUBE,
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        # partners frame /embed/{slug}; the full page is framed by nobody else (no clickjacking of its links)
        "frame-ancestors": "'self'",
    }


def embed_policy(image_proxy: bool) -> Policy:
    """The framed timeline: the reader's policy, framed by any site, with its <base target=_blank>."""
    return {**reader_policy(image_proxy), "base-uri": "'self'", "frame-ancestors": "*"}


def desk_policy(image_proxy: bool) -> Policy:
    """The editor desk: no frames at all, in or out; no media player."""
    return {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": _images(image_proxy),
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }


#: the archive download's policy, as templates/archive.html states it in its <meta>, plus no framing
ARCHIVE_POLICY: Policy = {
    "default-src": "'none'",
    "img-src": "http: https: data:",
    "style-src": "'unsafe-inline'",
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
}


def data_policy(frame_ancestors: str) -> Policy:
    """Anything that is not an HTML page (JSON, feeds, text, images, scripts): should a browser open it as a
    document, it loads nothing and runs nothing."""
    return {"default-src": "'none'", "frame-ancestors": frame_ancestors}


def parse_policy(value: str) -> Policy:
    """A CSP header value as {directive: sources}; the first of a repeated directive wins, as in browsers."""
    policy: Policy = {}
    for part in value.split(";"):
        name, _, sources = part.strip().partition(" ")
        name = name.lower()
        if name and name not in policy:
            policy[name] = sources.strip()
    return policy


def format_policy(policy: Policy) -> str:
    return "; ".join(f"{name} {sources}".rstrip() for name, sources in policy.items())


def style_hash(css: str) -> str:
    """The CSP source that allows an inline <style> holding exactly `css`."""
    digest = hashlib.sha256(css.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@pass_context
def csp_style(context: Any, css: str) -> Markup:
    """Jinja filter: allow this inline <style> text in this response's style-src (its hash); the text
    itself is returned unchanged. Only for CSS the server built from validated values."""
    text = Markup(css) if isinstance(css, Markup) else Markup.escape(css)
    request = context.get("request")
    hashes = request.scope.get(STYLE_HASHES) if request is not None else None
    if isinstance(hashes, list):
        hashes.append(style_hash(str(text)))
    return text


def setup(templates: Jinja2Templates) -> None:
    env: Environment = templates.env
    env.filters["csp_style"] = csp_style


class SecurityHeaders:
    """Adds the headers to every HTTP response; websockets pass untouched (they carry no document)."""

    def __init__(self, app: ASGIApp, *, image_proxy: bool = False) -> None:
        self.app = app
        self.image_proxy = image_proxy

    def policy_for(self, path: str, html: bool) -> Policy:
        desk = _DESK.fullmatch(path) is not None
        embed = _EMBED.fullmatch(path) is not None
        if not html:
            return data_policy("'none'" if desk else "*" if embed else "'self'")
        if desk:
            return desk_policy(self.image_proxy)
        if embed:
            return embed_policy(self.image_proxy)
        if _ARCHIVE.fullmatch(path):
            return dict(ARCHIVE_POLICY)
        return reader_policy(self.image_proxy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hashes: list[str] = []
        scope[STYLE_HASHES] = hashes
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": self._headers(path, list(message.get("headers", [])), hashes)}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _headers(self, path: str, headers: list[tuple[bytes, bytes]], hashes: list[str]) -> list[tuple[bytes, bytes]]:
        names = {name.lower() for name, _ in headers}
        content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
        html = content_type.split(b";")[0].strip().lower() == b"text/html"
        own: Policy = {}
        for name, value in headers:
            if name.lower() == b"content-security-policy":
                own.update(parse_policy(value.decode("latin-1")))
        if "default-src" in own:
            # a whole policy the handler chose (the image proxy's default-src 'none'): kept as it is
            return self._common(headers, names, html, own.get("frame-ancestors"))
        policy = self.policy_for(path, html)
        if hashes and "style-src" in policy:
            policy["style-src"] = " ".join([policy["style-src"], *dict.fromkeys(hashes)])
        # a handler's directives (the desk's, the embed's) win over ours, merged into one header: two headers
        # would each apply, and the stricter of each pair would silently win
        policy.update(own)
        kept = [(name, value) for name, value in headers if name.lower() != b"content-security-policy"]
        kept.append((b"content-security-policy", format_policy(policy).encode("latin-1")))
        return self._common(kept, names, html, policy.get("frame-ancestors"))

    @staticmethod
    def _common(
        headers: list[tuple[bytes, bytes]], names: set[bytes], html: bool, ancestors: str | None
    ) -> list[tuple[bytes, bytes]]:
        kept = list(headers)
        if b"x-content-type-options" not in names:
            kept.append((b"x-content-type-options", b"nosniff"))
        if b"referrer-policy" not in names:
            kept.append((b"referrer-policy", REFERRER_POLICY.encode()))
        # for browsers older than frame-ancestors; the embed (framed anywhere) gets none
        if html and b"x-frame-options" not in names and ancestors in ("'none'", "'self'"):
            kept.append((b"x-frame-options", b"DENY" if ancestors == "'none'" else b"SAMEORIGIN"))
        return kept

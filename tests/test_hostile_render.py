"""Nothing executes: a corpus of hostile upstream documents (tests/fixtures/hostile/) goes in through Fil's real
paths (feeds from a fake server, Mastodon and Bluesky from their fakes, signed push batches, the editor API, pasted
posts) and is rendered on the reader page, the embed and the desk in headless Chromium.

Each page runs with an execution sentinel installed before any of its script (alert, confirm, prompt, eval,
Function, string timers and document.write record instead of acting): nothing may be recorded, with the page's
Content-Security-Policy and also without it (the sanitizer must hold on its own). Every request the browser makes
is logged, and everything outside 127.0.0.1 is aborted: no request may reach the trap server (where every script,
frame, style, object, form and CSS url of the corpus points), and outside Fil's origin only images may load
(none at all with the image proxy on). The DOM of each page is audited for what the sanitizer must drop, and a
page with its CSP reports no `securitypolicyviolation`: the real page code needs nothing the policy forbids.
"""

from __future__ import annotations

import asyncio
import html
import json
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, Route

from curation.auth import create_editor
from curation.collectors import REGISTRY
from curation.collectors.bluesky import BlueskyCollector
from curation.collectors.push import sign
from curation.sanitize import plain_text
from tests.browser_util import WAIT, until_true
from tests.conftest import RunningFil, start_fil
from tests.fake_bluesky import FakeBluesky
from tests.fake_mastodon import TOKEN, FakeMastodon
from tests.loopback import LoopbackServer
from tests.test_browser import browser  # noqa: F401 - fixture
from tests.upstreams import ATOM, JSON_FEED, RSS, FakeUpstream

pytestmark = pytest.mark.browser

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
SLUG = "hostile"
SECRET = "hostile-push-secret"
PASSWORD = "a long desk password"
TOKEN_ENV = "FIL_HOSTILE_MASTODON_TOKEN"
SECRET_ENV = "FIL_HOSTILE_PUSH_SECRET"
WAIT_MS = int(WAIT * 1000)
#: a 1×1 transparent PNG: what the image host answers for any path
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002"
    "00000500010d0a2db40000000049454e44ae426082"
)

# --- the corpus ---------------------------------------------------------------------------------------------


def read_blocks() -> dict[str, str]:
    """html.txt: name -> fragment, in file order (the last one, <plaintext>, swallows what follows it)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (HOSTILE / "html.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("== "):
            current = blocks.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in blocks.items()}


@dataclass
class Corpus:
    """The hostile documents with their placeholders filled: {IMG} (the image host), {TRAP} (the trap), dates."""

    img: str
    trap: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.blocks = {name: self.fill(text) for name, text in read_blocks().items()}
        self.all_html = "\n".join(self.blocks.values())

    def fill(self, text: str) -> str:
        return (
            text.replace("{IMG}", self.img)
            .replace("{TRAP}", self.trap)
            .replace("{TRAPHOST}", urlsplit(self.trap).netloc)
            .replace("{RFC3339}", self.now.isoformat().replace("+00:00", "Z"))
            .replace("{RFC822}", format_datetime(self.now, usegmt=True))
        )

    def xml(self, name: str) -> bytes:
        """An XML document: blocks raw ({BLOCK:name}, inside CDATA) or escaped ({BLOCK_XML:name}, {ALL_XML})."""
        text = self.fill((HOSTILE / name).read_text(encoding="utf-8"))
        for block, fragment in self.blocks.items():
            text = text.replace(f"{{BLOCK:{block}}}", fragment)
            text = text.replace(f"{{BLOCK_XML:{block}}}", html.escape(fragment, quote=False))
        return text.replace("{ALL_XML}", html.escape(self.all_html, quote=False)).encode("utf-8")

    def raw(self, name: str) -> bytes:
        """A document kept as bytes (declared UTF-7, invalid UTF-8): only the ASCII placeholders are filled."""
        data = (HOSTILE / name).read_bytes()
        for key in ("{IMG}", "{RFC822}"):
            data = data.replace(key.encode(), self.fill(key).encode())
        return data

    def json(self, name: str) -> Any:
        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return self.fill(value.replace("{ALL_HTML}", self.all_html))
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items() if k != "_comment"}
            return value

        return walk(json.loads((HOSTILE / name).read_text(encoding="utf-8")))


# --- the servers around Fil ---------------------------------------------------------------------------------


class Recorder(LoopbackServer):
    """Answers every path and remembers it. As the image host: a PNG under /ok/, else 404. As the trap: whatever
    would run if it were loaded."""

    def __init__(self, trap: bool) -> None:
        super().__init__()
        self.trap = trap
        self.seen: list[str] = []

    def make_app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            self.seen.append(f"{request.method} {request.path_qs}")
            if not self.trap:
                # a broken image too, so that an onerror the sanitizer missed would fire
                if request.path.startswith("/ok/"):
                    return web.Response(body=PNG, content_type="image/png")
                return web.Response(status=404, text="no such image")
            if request.path.endswith(".js"):
                return web.Response(text="alert('trap-script')", content_type="text/javascript")
            if request.path.endswith(".css"):
                return web.Response(
                    text="@import url(/css-import.css); * { background: url(/css-url.png) }", content_type="text/css"
                )
            return web.Response(text="<script>alert('trap-document')</script>", content_type="text/html")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app


EMPTY_RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://x.example/</link></channel></rss>'
)
EMPTY_ATOM = (
    b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:x</id>'
    b"<updated>2027-01-01T00:00:00Z</updated></feed>"
)
EMPTY_JSON = b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": []}'
FEEDS = {
    "rss": ("/rss.xml", RSS, EMPTY_RSS),
    "atom": ("/atom.xml", ATOM, EMPTY_ATOM),
    "jsonfeed": ("/feed.json", JSON_FEED, EMPTY_JSON),
    "utf7": ("/utf7.xml", "application/rss+xml", EMPTY_RSS),
    "bytes": ("/bytes.xml", "application/rss+xml; charset=utf-8", EMPTY_RSS),
}


@dataclass
class World:
    fil: RunningFil
    corpus: Corpus
    upstream: FakeUpstream
    mastodon: FakeMastodon
    bsky: FakeBluesky
    images: Recorder
    trap: Recorder
    token: str

    @property
    def api(self) -> str:
        return f"{self.fil.base}/api/events/{SLUG}"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.request(method, f"{self.api}{path}", json=body) as response:
                return response.status, json.loads(await response.text())

    async def push(self, items: list[dict[str, Any]]) -> tuple[int, str]:
        body = json.dumps({"items": items}).encode()
        stamp = int(time.time())
        headers = {"X-Fil-Timestamp": str(stamp), "X-Fil-Signature": sign(SECRET, stamp, body)}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.fil.base}/api/ingest/wire", data=body, headers=headers) as response:
                return response.status, await response.text()

    async def items(self) -> list[dict[str, Any]]:
        """Every item of the event, in every state (the desk's view)."""
        status, body = await self.call("GET", "/desk")
        assert status == 200, body
        return body["items"]  # type: ignore[no-any-return]


def sources_yaml(upstream: FakeUpstream, mastodon: FakeMastodon, bsky: FakeBluesky) -> str:
    feeds = "".join(
        f"      - id: {name}\n        kind: feed\n        url: {upstream.url(path)}\n        role: editorial\n"
        "        interval: 0.3s\n"
        for name, (path, _, _) in FEEDS.items()
    )
    return (
        textwrap.dedent(
            f"""\
            events:
              - slug: {SLUG}
                title: "Hostile <script>alert('event-title')</script>"
                sources:
                  - id: masto
                    kind: mastodon
                    instance: {mastodon.base_url}
                    account: hostile
                    token_env: {TOKEN_ENV}
                    role: journalist
                    interval: 30s
                  - id: bsky
                    kind: bluesky
                    actor: hostile.test
                    appview: {bsky.base}
                    jetstream: {bsky.jetstream_url}
                    role: athlete
                    interval: 1h
                  - id: wire
                    kind: push
                    secret_env: {SECRET_ENV}
                    role: journalist
            """
        )
        + feeds
    )


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeUpstream, FakeMastodon, FakeBluesky, Recorder, Recorder]]:
    async with (
        FakeUpstream() as upstream,
        FakeMastodon() as mastodon,
        FakeBluesky() as bsky,
        Recorder(trap=False) as images,
        Recorder(trap=True) as trap,
    ):
        yield upstream, mastodon, bsky, images, trap


async def start_world(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[FakeUpstream, FakeMastodon, FakeBluesky, Recorder, Recorder],
    *,
    image_proxy: bool,
) -> World:
    upstream, mastodon, bsky, images, trap = servers
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setitem(REGISTRY, "bluesky", lambda context: BlueskyCollector(context, settle=0.05))
    corpus = Corpus(img=images.base_url, trap=trap.base_url)
    for path, content_type, empty in FEEDS.values():
        upstream.add(path, empty, content_type=content_type, etag="auto")
    paste = corpus.json("editor.json")
    upstream.add("/youtube/oembed", json.dumps(paste["youtube_oembed"]), content_type="application/json")
    upstream.add("/x/oembed", json.dumps(paste["x_oembed"]), content_type="application/json")
    social = corpus.json("mastodon.json")
    mastodon.account("hostile", **social["account"])
    mastodon.account("paster", **social["account"])
    profile = corpus.json("bluesky.json")["account"]
    bsky.add_account(profile["handle"], display_name=profile["display_name"], avatar=profile["avatar"])
    (tmp_path / "sources.yaml").write_text(sources_yaml(upstream, mastodon, bsky))
    fil = await start_fil(
        tmp_path / "sources.yaml",
        tmp_path / "data",
        image_proxy=image_proxy,
        youtube_oembed=upstream.url("/youtube/oembed"),
        x_oembed=upstream.url("/x/oembed"),
    )
    await create_editor(fil.fil.store, "ana", PASSWORD, "editor")  # type: ignore[arg-type]
    world = World(fil, corpus, upstream, mastodon, bsky, images, trap, await fil.token())
    await mastodon.wait_subscribed(1)

    async def streaming() -> bool:
        listing = await fil.sources()
        details = next(s for s in listing["sources"] if s["id"] == "bsky")["details"]
        return bool(details.get("stream", {}).get("state") == "open")

    await wait_until(streaming, "the Bluesky stream")
    return world


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def byte_range(text: str, on: str, shift: int = 0) -> dict[str, int]:
    data = text.encode("utf-8")
    start = data.index(on.encode("utf-8"))
    return {"byteStart": start + shift, "byteEnd": start + len(on.encode("utf-8"))}


#: images the corpus shows through the elements the sanitizer keeps (avatar, inline image, media, card, video
#: poster, emoji), as the image host sees them asked for
KEPT_IMAGES = {
    f"/ok/{name}.png"
    for name in (
        "handlers", "push-avatar", "push-image", "card", "masto-image", "masto-video-preview", "editor",
        "emoji-static", "rss-media", "jf-attachment",
    )
}  # fmt: skip
#: items each source yields from the corpus (a document or field that cannot be an item is dropped, never the
#: source: every source stays healthy)
EXPECTED = {"rss": 10, "atom": 5, "jsonfeed": 3, "utf7": 1, "bytes": 1, "masto": 4, "bsky": 4, "wire": 2, "desk": 5}


async def ingest(world: World) -> None:
    """Everything hostile, through the real paths; refused pieces are answered 400 naming the bad field."""
    corpus = world.corpus
    for name, (path, _, _) in FEEDS.items():
        document = {
            "rss": lambda: corpus.xml("rss.xml"),
            "atom": lambda: corpus.xml("atom.xml"),
            "jsonfeed": lambda: json.dumps(corpus.json("feed.json")).encode(),
            "utf7": lambda: corpus.raw("utf7.rss"),
            "bytes": lambda: corpus.raw("invalid-utf8.rss"),
        }[name]()
        world.upstream.route(path).body = document
    social = corpus.json("mastodon.json")
    for status in social["statuses"]:
        world.mastodon.post("hostile", **status)
    pasted = world.mastodon.post("paster", broadcast=False, **social["paste"])
    bluesky = corpus.json("bluesky.json")
    account = world.bsky.account(bluesky["account"]["handle"])
    assert account is not None
    lines = []
    for post in bluesky["posts"]:
        facets = []
        for facet in post.get("facets", []):
            index = facet.get("index") or byte_range(post["text"], facet["on"], facet.get("shift", 0))
            facets.append({"index": index, "features": facet["features"]})
        lines.append(
            world.bsky.post_event(
                account, post["text"], facets=facets or None, embed=post.get("embed"), labels=post.get("labels")
            )
        )
    await world.bsky.push(*lines)
    pushed = corpus.json("push.json")
    status, text = await world.push(pushed["accepted"])
    assert status == 202, text
    for refused in pushed["refused"]:
        status, text = await world.push([refused["item"]])
        assert status == 400 and refused["error"] in text, (refused["error"], status, text)
    editor = corpus.json("editor.json")
    for post in editor["posts"]:
        status, body = await world.call("POST", "/posts", post)
        assert status == 201, body
    for refused in editor["refused_posts"]:
        status, body = await world.call("POST", "/posts", refused["body"])
        assert status == 400 and body["error"].startswith(refused["error"]), (refused, status, body)
    status, body = await world.call("PUT", "/header", editor["header"])
    assert status == 200, body
    for url in (pasted.data["url"], "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://x.com/evil/status/123"):
        status, body = await world.call("POST", "/paste", {"url": url})
        assert status == 201, (url, status, body)

    async def everything() -> bool:
        counts: dict[str, int] = {}
        for item in await world.items():
            counts[item["source"]["id"]] = counts.get(item["source"]["id"], 0) + 1
        everything.counts = counts  # type: ignore[attr-defined]
        return counts == EXPECTED

    try:
        await wait_until(everything, "every hostile item")
    except AssertionError:
        raise AssertionError(f"items per source: {everything.counts} != {EXPECTED}") from None  # type: ignore[attr-defined]
    target = next(i for i in await world.items() if i["source"]["id"] == "wire")
    for action in ({"action": "note", "text": editor["note"]}, {"action": "highlight", "label": editor["highlight"]}):
        status, body = await world.call("POST", f"/items/{target['id']}/actions", action)
        assert status == 200, body
    # hostile documents are content, not faults: every source is healthy
    listing = await world.fil.sources()
    assert [(x["id"], x["state"], x["last_error"]) for x in listing["sources"] if x["state"] != "ok"] == []


# --- the browser side ---------------------------------------------------------------------------------------

#: installed before any script of every document and frame: records what hostile code would do
SENTINEL = """
(() => {
  const pwned = [], violations = [];
  Object.defineProperty(window, "__pwned", { value: pwned });
  Object.defineProperty(window, "__violations", { value: violations });
  const note = (what) => function () {
    pwned.push(what + ": " + Array.prototype.map.call(arguments, String).join(", ").slice(0, 160));
  };
  for (const name of ["alert", "confirm", "prompt", "print"]) window[name] = note(name);
  // eval and Function still work (Playwright's own evaluate goes through eval: its frames are not noted)
  const foreign = () => !String(new Error().stack).includes("UtilityScript");
  const realEval = window.eval;
  window.eval = function (source) {
    if (foreign()) pwned.push("eval: " + String(source).slice(0, 160));
    return realEval(source);
  };
  window.Function = new Proxy(Function, {
    apply(target, self, args) {
      if (foreign()) pwned.push("Function: " + args.join(", ").slice(0, 160));
      return Reflect.apply(target, self, args);
    },
    construct(target, args) {
      if (foreign()) pwned.push("new Function: " + args.join(", ").slice(0, 160));
      return Reflect.construct(target, args);
    },
  });
  for (const name of ["setTimeout", "setInterval"]) {
    const real = window[name];
    window[name] = function (handler, ...rest) {
      if (typeof handler === "string") { pwned.push(name + ": " + handler.slice(0, 160)); return 0; }
      return real.call(this, handler, ...rest);
    };
  }
  document.write = note("document.write");
  document.writeln = note("document.writeln");
  document.addEventListener("securitypolicyviolation", (e) => {
    violations.push(e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " " + (e.sample || ""));
  }, true);
})();
"""

#: what the sanitizer must have dropped, looked for in the parts of a page that show upstream content
AUDIT = """
([roots, proxy]) => {
  const found = [];
  const where = (el) => el.localName + (el.id ? "#" + el.id : "") + " in " + (el.closest("[id]") || {}).id;
  const FORBIDDEN = new Set(["script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "input", "button", "select", "textarea", "link", "meta", "base", "svg", "math", "video", "audio", "source",
    "track", "picture", "portal", "template", "noscript", "noembed", "noframes", "xmp", "plaintext", "marquee",
    "bgsound", "isindex", "keygen", "title", "image", "use", "foreignobject", "animate", "set"]);
  const URL_ATTRIBUTES = new Set(["style", "srcset", "formaction", "action", "background", "poster", "lowsrc",
    "dynsrc", "ping", "xlink:href", "srcdoc", "data", "codebase", "code", "manifest", "sizes", "usemap"]);
  const BODY_CLASSES = new Set(["invisible", "ellipsis", "emoji"]);
  for (const selector of roots) {
    for (const root of document.querySelectorAll(selector)) {
      for (const el of [root, ...root.querySelectorAll("*")]) {
        if (el.closest(".actions")) continue;  // the desk's own buttons
        const name = el.localName;
        if (FORBIDDEN.has(name)) found.push("element " + where(el));
        for (const attr of el.attributes) {
          const a = attr.name.toLowerCase();
          if (a.startsWith("on") || URL_ATTRIBUTES.has(a)) found.push("attribute " + a + " on " + where(el));
        }
        if (el.hasAttribute("src") && name !== "img") found.push("src on " + where(el));
        if (name === "img") {
          const src = new URL(el.getAttribute("src") || "", document.baseURI);
          if (proxy ? !(src.origin === location.origin && src.pathname.startsWith("/img/"))
                    : !["http:", "https:"].includes(src.protocol)) found.push("img " + src.href.slice(0, 120));
        }
        if (el.hasAttribute("href")) {
          const href = new URL(el.getAttribute("href"), document.baseURI);
          if (!["http:", "https:", "mailto:"].includes(href.protocol)) found.push("href " + href.href.slice(0, 120));
        }
        if (el.closest(".body") && el !== el.closest(".body")) {
          if (el.id || el.hasAttribute("name")) found.push("id/name (DOM clobbering) on " + where(el));
          for (const c of el.classList) if (!BODY_CLASSES.has(c)) found.push("class " + c + " on " + where(el));
        }
      }
    }
  }
  // a one-line field shown inline must not reorder what follows it (an unclosed right-to-left override)
  for (const el of document.querySelectorAll(".author, .handle, .card-author, .reposted, .meta"))
    if (/[\u202a-\u202e\u2066-\u2069]/.test(el.textContent)) found.push("bidi control in " + where(el));
  for (const s of document.querySelectorAll("script")) {
    const own = s.src ? s.src.startsWith(location.origin + "/static/")
                      : ["application/json", "application/ld+json"].includes(s.type);
    if (!own) found.push("script " + (s.src || s.textContent.slice(0, 80)));
  }
  for (const s of document.querySelectorAll("style, iframe, frame, object, embed, applet, portal"))
    found.push("document " + s.localName);
  for (const f of document.querySelectorAll("form"))
    if (new URL(f.action, document.baseURI).origin !== location.origin) found.push("form to " + f.action);
  for (const l of document.querySelectorAll("link"))
    if (!l.href.startsWith(location.origin)) found.push("link " + l.href);
  return found;
}
"""


@dataclass
class Browsing:
    """One browser context and what it saw: requests, console errors, page errors, dialogs."""

    context: BrowserContext
    fil: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: Browser, fil: str, *, csp: bool) -> Browsing:  # noqa: F811
        # tall, so that fewer steps of scroll_through bring every lazy image into view
        context = await browser.new_context(bypass_csp=not csp, viewport={"width": 1000, "height": 3000})
        seen = cls(context, fil)
        await context.add_init_script(SENTINEL)

        async def gate(route: Route) -> None:
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                await route.continue_()
            else:  # no internet: anything else is noted (below) and refused
                await route.abort()

        await context.route("**/*", gate)
        context.on("request", lambda request: seen.requests.append((request.url, request.resource_type)))
        return seen

    async def page(self, path: str) -> Page:
        page = await self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("dialog", lambda dialog: self._dialog(dialog.message))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}")
                if message.type == "error" and not message.text.startswith("Failed to load resource")
                else None
            ),
        )
        await page.goto(self.fil + path)
        return page

    def _dialog(self, message: str) -> None:
        self.errors.append(f"dialog: {message}")

    async def login(self) -> Page:
        page = await self.page(f"/editor/events/{SLUG}")
        await page.fill('input[name="name"]', "ana")
        await page.fill('input[name="password"]', PASSWORD)
        await page.click('button[type="submit"]')
        await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
        return page


READER_ROOTS = ["#timeline", "#header", "#moments", ".event-head"]
DESK_ROOTS = ["#queue", "#timeline", "#removed"]


async def settle(page: Page, expression: str, what: str) -> None:
    """until_true, and when it fails, what the sentinel saw (hostile markup may have wrecked the page)."""
    try:
        await until_true(page, expression)
    except AssertionError as e:
        seen = await page.evaluate("[window.__pwned, window.__violations]")
        raise AssertionError(f"{what}: {e}; hostile code ran: {seen[0]}; CSP violations: {seen[1]}") from None


async def scroll_through(page: Page) -> None:
    """Scrolls to the bottom a screen at a time: lazy images (loading=lazy) load only near the viewport."""
    height = await page.evaluate("document.documentElement.scrollHeight")
    for y in range(0, height + 3000, 2500):
        await page.evaluate(f"window.scrollTo(0, {y})")
        await asyncio.sleep(0.05)


async def check_page(page: Page, roots: list[str], *, proxy: bool, csp: bool, what: str) -> None:
    for frame in page.frames:
        pwned = await frame.evaluate("window.__pwned || ['no sentinel in ' + location.href]")
        assert pwned == [], f"{what}: hostile code ran: {pwned}"
    assert len(page.frames) == 1, f"{what}: frames appeared: {[f.url for f in page.frames]}"
    found = await page.evaluate(AUDIT, [roots, proxy])
    assert found == [], f"{what}: the sanitizer let through: {found}"
    if csp:
        violations = await page.evaluate("window.__violations")
        assert violations == [], f"{what}: CSP violations: {violations}"


def check_requests(seen: Browsing, world: World, *, proxy: bool) -> None:
    fil = urlsplit(world.fil.base).netloc
    trap = urlsplit(world.trap.base_url).netloc
    for url, kind in seen.requests:
        netloc = urlsplit(url).netloc
        assert netloc != trap, f"the trap was asked for {url} ({kind})"
        if netloc == fil:
            continue
        assert not proxy, f"with the image proxy on, the browser asked another origin: {url} ({kind})"
        assert kind == "image", f"a {kind} request left Fil's origin: {url}"


async def render_everywhere(browser: Browser, world: World, *, proxy: bool, live: bool) -> None:  # noqa: F811
    """Reader, embed and desk with and without CSP (and, when `live`, fed over their websockets), all checked."""
    relaxed = await Browsing.open(browser, world.fil.base, csp=False)
    strict = await Browsing.open(browser, world.fil.base, csp=True)
    pages: list[tuple[Page, list[str], bool, str]] = []
    if live:
        # opened before anything hostile exists: the corpus reaches them through live.js and desk.js
        for seen, csp in ((relaxed, False), (strict, True)):
            reader = await seen.page(f"/events/{SLUG}")
            await reader.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
            pages.append((reader, READER_ROOTS, csp, f"live reader (csp={csp})"))
        pages.append((await relaxed.login(), DESK_ROOTS, False, "live desk (csp=False)"))
    await ingest(world)
    published = len([i for i in await world.items() if i["state"] == "published"])
    total = len(await world.items())
    for page, _, _, what in pages:
        if "reader" in what:
            await settle(page, f"document.querySelectorAll('#timeline > article').length === {published}", what)
            await settle(page, "document.querySelector('#header .summary') !== null", what)
        else:
            await settle(page, f"document.querySelectorAll('.card').length === {total}", what)
    for seen, csp in ((relaxed, False), (strict, True)):
        reader = await seen.page(f"/events/{SLUG}")
        await reader.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
        assert await reader.locator("#timeline > article").count() == published
        pages.append((reader, READER_ROOTS, csp, f"reader (csp={csp})"))
        embed = await seen.page(f"/embed/{SLUG}?limit=200")
        await embed.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
        assert await embed.locator("#timeline > article").count() == published
        pages.append((embed, ["#timeline", ".embed-head"], csp, f"embed (csp={csp})"))
    desk = await strict.login()
    await settle(desk, f"document.querySelectorAll('.card').length === {total}", "desk")
    pages.append((desk, DESK_ROOTS, True, "desk (csp=True)"))
    for page, _, _, _ in pages:
        await scroll_through(page)
    await asyncio.sleep(0.5)  # late image errors, timers
    for page, roots, csp, what in pages:
        await check_page(page, roots, proxy=proxy, csp=csp, what=what)
    for seen in (relaxed, strict):
        assert seen.errors == [], seen.errors
        check_requests(seen, world, proxy=proxy)
    assert world.trap.seen == [], f"the trap was asked (by the browser or by Fil): {world.trap.seen}"
    # the images the sanitizer keeps did load: the audit above is not vacuous
    # the images the sanitizer keeps did load (by the browser, or by /img/ with the proxy): the checks see pages
    # that show the corpus, avatars, inline images, media, cards, posters and emoji included
    loaded = {line.split()[1] for line in world.images.seen}
    assert KEPT_IMAGES <= loaded, sorted(KEPT_IMAGES - loaded)
    await relaxed.context.close()
    await strict.context.close()


async def test_hostile_corpus_runs_nothing_and_loads_only_images(
    browser: Browser,  # noqa: F811
    servers: tuple[FakeUpstream, FakeMastodon, FakeBluesky, Recorder, Recorder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = await start_world(tmp_path, monkeypatch, servers, image_proxy=False)
    try:
        await render_everywhere(browser, world, proxy=False, live=True)
    finally:
        await world.fil.stop()


async def test_hostile_corpus_with_the_image_proxy_loads_nothing_but_fil(
    browser: Browser,  # noqa: F811
    servers: tuple[FakeUpstream, FakeMastodon, FakeBluesky, Recorder, Recorder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = await start_world(tmp_path, monkeypatch, servers, image_proxy=True)
    try:
        await render_everywhere(browser, world, proxy=True, live=False)
    finally:
        await world.fil.stop()


def test_one_line_fields_lose_the_bidi_controls_that_would_spoof_what_follows() -> None:
    assert plain_text("Reuters\u202e") == "Reuters"
    assert plain_text("<b>\u202eevil\u202c</b> \u2067x\u2069") == "evil x"
    assert (
        plain_text("\u0639\u0631\u0628\u064a \u200fname") == "\u0639\u0631\u0628\u064a \u200fname"
    )  # letters, marks: kept

"""embed.js in a real headless Chromium, on a partner page served from a second loopback origin."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, ElementHandle, Frame, Page, async_playwright

from tests.browser_util import until_true
from tests.conftest import RunningFil
from tests.loopback import LoopbackServer
from tests.test_embed import SLUG, fil, push  # noqa: F401 - fixture

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 20_000
WAIT = WAIT_MS / 1000


class PartnerSite(LoopbackServer):
    """A media site on another origin: serves the pages a test gives it, each with its own headers."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: dict[str, tuple[str, dict[str, str]]] = {}

    def make_app(self) -> web.Application:
        async def page(request: web.Request) -> web.Response:
            html, headers = self.pages[request.path]
            return web.Response(text=html, content_type="text/html", headers=headers)

        app = web.Application()
        app.router.add_get("/{name}", page)
        return app


@pytest.fixture
async def partner() -> AsyncIterator[PartnerSite]:
    async with PartnerSite() as site:
        yield site


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"Debian's chromium is needed at {CHROMIUM} (make test installs it)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
        )
        yield browser
        await browser.close()


def article(html_body: str) -> str:
    head = "<!doctype html><html lang='en'><head><title>Partner</title></head>"
    return f"{head}<body><h1>Partner</h1>{html_body}</body></html>"


async def framed(page: Page, index: int = 0) -> tuple[ElementHandle, Frame]:
    """The index-th Fil iframe of the page, once its timeline is live."""
    await until_true(page, f"document.querySelectorAll('iframe.fil-embed').length > {index}")
    element = (await page.query_selector_all("iframe.fil-embed"))[index]
    frame = await element.content_frame()
    assert frame is not None
    await frame.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    return element, frame


async def heights(element: ElementHandle, frame: Frame) -> tuple[float, float]:
    """(the iframe's height on the partner page, the height of the content inside it)"""
    outer = await element.evaluate("e => e.getBoundingClientRect().height")
    inner = await frame.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)")
    return float(outer), float(inner)


async def sized_to_content(element: ElementHandle, frame: Frame, *, above: float = 0) -> float:
    """Waits until the iframe is as tall as its content (and taller than `above`); returns that height."""
    for _ in range(int(WAIT / 0.05)):
        outer, inner = await heights(element, frame)
        if abs(outer - inner) <= 1 and outer > above:
            return outer
        await asyncio.sleep(0.05)
    raise AssertionError(f"the iframe never took its content's height: {await heights(element, frame)}")


async def test_embed_renders_resizes_and_updates_live_on_another_origin(
    browser: Browser,
    fil: RunningFil,  # noqa: F811
    partner: PartnerSite,
) -> None:
    await push(fil, "wire", ("w1", 1), ("w2", 2))
    await push(fil, "riders", ("r1", 3))
    snippet = (
        f'<script src="{fil.base}/embed.js" data-event="{SLUG}" data-theme="dark" data-accent="#0a7" async></script>'
    )
    # a strict partner policy: Fil's script and frame allowed by name, no inline style or script at all
    policy = f"default-src 'none'; script-src {fil.base}; frame-src {fil.base}; style-src 'none'"
    partner.pages["/article"] = (article(snippet + "<p>More of the article.</p>"), {"Content-Security-Policy": policy})
    page = await browser.new_page()
    errors: list[object] = []
    page.on("pageerror", lambda error: errors.append(error))
    # Content-Security-Policy refusals, on the partner page or in the frame, are logged as console errors
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    await page.goto(f"{partner.base_url}/article")
    element, frame = await framed(page)
    assert await page.evaluate("document.querySelector('script[data-event]').nextElementSibling.className") == (
        "fil-embed"
    )
    assert await frame.locator("#timeline article").count() == 3
    first = await sized_to_content(element, frame)
    # dark theme and the partner's accent (#0a7 = rgb(0, 170, 119)) on the newsroom badge
    assert await frame.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 20, 24)"
    badge = "getComputedStyle(document.querySelector('.role-editorial .badge')).backgroundColor"
    assert await frame.evaluate(badge) == "rgb(0, 170, 119)"
    # a new story through the push ingest reaches the frame live, and the frame grows to show it
    await push(fil, "wire", ("w3", 4))
    await until_true(frame, "document.querySelectorAll('#timeline article').length === 4")
    await sized_to_content(element, frame, above=first)
    # links leave the frame for a new tab: here the full live page
    async with page.expect_popup() as popup:
        await frame.click(".embed-title")
    opened = await popup.value
    await opened.wait_for_load_state()
    assert opened.url == f"{fil.base}/events/{SLUG}"
    assert errors == []


async def test_several_snippets_size_separately_and_forged_messages_change_nothing(
    browser: Browser,
    fil: RunningFil,  # noqa: F811
    partner: PartnerSite,
) -> None:
    await push(fil, "wire", ("w1", 1), ("w2", 2), ("w3", 4))
    await push(fil, "riders", ("r1", 3))
    snippets = (
        f'<script src="{fil.base}/embed.js" data-event="{SLUG}" data-roles="athlete" data-limit="1" async></script>'
        "<p>Between the two.</p>"
        f'<script src="{fil.base}/embed.js" data-event="{SLUG}" data-theme="light" async></script>'
    )
    partner.pages["/two"] = (article(snippets), {})
    page = await browser.new_page()
    await page.goto(f"{partner.base_url}/two")
    one, one_frame = await framed(page, 0)
    two, two_frame = await framed(page, 1)
    assert await one_frame.locator("#timeline article").count() == 1
    assert await two_frame.locator("#timeline article").count() == 4
    small = await sized_to_content(one, one_frame)
    large = await sized_to_content(two, two_frame)
    assert small < large
    # the partner page itself, and another frame of its own, pretend to be Fil's frame
    await page.evaluate(
        """() => new Promise(resolve => {
          window.addEventListener("message", e => { if (e.data === "probe") resolve(); });
          window.postMessage({ type: "fil:height", height: 5000 }, "*");
          const other = document.createElement("iframe");
          document.body.appendChild(other);
          other.contentWindow.eval('parent.postMessage({ type: "fil:height", height: 4000 }, "*")');
          // delivered after the forgeries: by then embed.js has seen and refused them
          window.postMessage("probe", "*");
        })"""
    )
    assert (await heights(one, one_frame))[0] == small
    assert (await heights(two, two_frame))[0] == large
    # Fil's frame window, navigated away to a page of another origin, is no longer believed either
    partner.pages["/elsewhere"] = (
        "<!doctype html><title>x</title><script>"
        'parent.postMessage({ type: "fil:height", height: 3000 }, "*"); parent.postMessage("moved", "*");'
        "</script>",
        {},
    )
    await page.evaluate(
        """url => new Promise(resolve => {
          window.addEventListener("message", e => { if (e.data === "moved") resolve(); });
          document.querySelector("iframe.fil-embed").src = url;
        })""",
        f"{partner.base_url}/elsewhere",
    )
    assert await one.evaluate("e => e.getBoundingClientRect().height") == small

"""The reader page in a real headless Chromium (Debian's, driven by Playwright): live updates, resume."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.browser_util import until_true
from tests.conftest import RunningFil, start_fil
from tests.test_live_e2e import SLUG, item, write_sources
from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"Debian's chromium is needed at {CHROMIUM} (make test installs it)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def fil(upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[RunningFil]:  # noqa: F811
    upstream.add("/feed.xml", rss_document([item(1, minutes_ago=5), item(2, minutes_ago=4)]), etag="auto")
    write_sources(tmp_path / "sources.yaml", upstream.url("/feed.xml"))
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    for _ in range(400):
        if (await running.fil.store.head(SLUG)) >= 2:
            break
        await asyncio.sleep(0.05)
    yield running
    await running.stop()


async def titles(page: Page) -> list[str]:
    result: list[str] = await page.eval_on_selector_all("#timeline article h2", "els => els.map(e => e.textContent)")
    return result


async def open_live(browser: Browser, url: str) -> Page:
    page = await browser.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    # counts any script the hostile fixtures manage to run, from the first byte of every document
    await page.add_init_script("window.__ran = 0")
    await page.goto(url)
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def test_new_items_appear_without_reload(browser: Browser, fil: RunningFil, upstream: FakeUpstream) -> None:  # noqa: F811
    page = await open_live(browser, f"{fil.base}/events/{SLUG}")
    assert await titles(page) == ["Story 2", "Story 1"]
    await page.evaluate("window.__marker = 'same document'")
    upstream.route("/feed.xml").body = rss_document([item(3), item(1, minutes_ago=5), item(2, minutes_ago=4)])
    await until_true(page, "document.querySelectorAll('#timeline article').length === 3")
    assert await titles(page) == ["Story 3", "Story 2", "Story 1"]
    assert await page.evaluate("window.__marker") == "same document"  # no reload happened
    # an edit replaces the item in place
    upstream.route("/feed.xml").body = rss_document(
        [item(3), item(1, minutes_ago=5), item(2, minutes_ago=4, description="<p>Corrected text</p>")]
    )
    await until_true(
        page, "document.querySelector('#timeline article:nth-child(2) .body').textContent.includes('Corrected')"
    )
    assert await titles(page) == ["Story 3", "Story 2", "Story 1"]
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_dropped_connection_resumes_without_loss_or_duplicates(
    browser: Browser,
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    page = await open_live(browser, f"{fil.base}/events/{SLUG}")
    # the network drops every reader; stories arrive while the page is offline
    for channel in fil.fil.hub.channels.values():
        for sink in list(channel.readers):
            sink.connection.transport.abort()  # type: ignore[attr-defined]
    await page.wait_for_selector('#conn[data-state="offline"]', timeout=WAIT_MS)
    upstream.route("/feed.xml").body = rss_document(
        [
            item(5, minutes_ago=1),
            item(4, minutes_ago=2),
            item(3, minutes_ago=3),
            item(1, minutes_ago=5),
            item(2, minutes_ago=4),
        ]
    )
    await until_true(page, "document.querySelectorAll('#timeline article').length >= 5")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    await asyncio.sleep(0.5)
    assert await titles(page) == ["Story 5", "Story 4", "Story 3", "Story 2", "Story 1"]


async def test_hostile_markup_never_runs_in_the_page(
    browser: Browser,
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    page = await open_live(browser, f"{fil.base}/events/{SLUG}")
    hostile = item(
        6,
        title="Hostile <img src=x onerror=window.__ran++>",
        description=(
            "<p>Hi<script>window.__ran++</script><img src=x onerror=window.__ran++>"
            '<a href="javascript:window.__ran++" id="bad">click</a>'
            "<svg><script>window.__ran++</script></svg></p>"
        ),
    )
    upstream.route("/feed.xml").body = rss_document([hostile, item(1, minutes_ago=5), item(2, minutes_ago=4)])
    await until_true(page, "document.querySelectorAll('#timeline article').length === 3")
    links = page.locator("#timeline a", has_text="click")
    if await links.count():
        await links.first.click()
    await asyncio.sleep(0.5)
    assert await page.evaluate("window.__ran") == 0
    # and the server-rendered page of the same content
    await page.goto(f"{fil.base}/events/{SLUG}")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    assert await page.locator("#timeline article").count() == 3
    await asyncio.sleep(0.5)
    assert await page.evaluate("window.__ran") == 0

"""The header editor and the mute button on the desk, in headless Chromium, with a reader watching live."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.browser_util import until_true
from tests.conftest import RunningFil
from tests.test_browser import WAIT_MS, browser  # noqa: F401 - fixture
from tests.test_desk_browser import SLUG, fil, login, push  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


async def test_desk_edits_the_header_and_mutes_a_source(browser: Browser, fil: RunningFil) -> None:  # noqa: F811
    await push(fil, 1)
    ana = await login(browser, fil, "ana")
    ben = await login(browser, fil, "ben")
    reader = await (await browser.new_context()).new_page()
    await reader.goto(f"{fil.base}/events/{SLUG}")
    await reader.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    assert await reader.locator("#header").is_hidden()
    await ana.click("#header-editor summary")
    await ana.fill('#header-form textarea[name="summary"]', "**Breakaway** of four")
    await ana.fill('#header-form textarea[name="facts"]', "Distance | 182 km\nGap | 45s")
    await ana.fill('#header-form textarea[name="standings"]', "1 | Castagnède | 4h12")
    await ana.click('#header-form button[type="submit"]')
    await reader.wait_for_selector("#header .summary strong", timeout=WAIT_MS)
    assert await reader.locator("#header dd").all_text_contents() == ["182 km", "45s"]
    assert "Castagnède" in await reader.locator("#header .standings").inner_text()
    # the other editor's desk follows, so their next save starts from this version
    await until_true(
        ben, "document.querySelector('#header-form textarea[name=\"summary\"]').value.includes('Breakaway')"
    )
    # the queued wire story carries a mute button; muting shows until when
    card = ana.locator("#queue .card").first
    await card.locator("button.mute").click()
    await ana.click("summary:has-text('Sources')")  # the sources list is folded away by default
    await ana.wait_for_selector("#mute-list button.mute:has-text('Unmute')", timeout=WAIT_MS)
    assert "muted until" in await ana.locator("#message").inner_text()

"""The reader page in headless Chromium: new items never move what the reader reads, filter chips, permalinks to
old items and "load older", videos that load YouTube only on click, and an oldest-first French event."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route

from curation.models import Media
from tests.browser_util import until_true
from tests.conftest import RunningFil
from tests.test_browser import WAIT_MS, browser  # noqa: F401 - fixture
from tests.test_reader_page import QA, SLUG, act, add, entry, start_reader

pytestmark = pytest.mark.browser

#: every request that does not go to the test's own server (nothing may reach the internet)
EXTERNAL = re.compile(r"^(?!https?://127\.0\.0\.1[:/])")
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await start_reader(tmp_path, monkeypatch)
    yield running
    await running.stop()


async def offline(context: BrowserContext) -> list[str]:
    """Keep the browser off the internet: images get a pixel, YouTube's player a stub page, the rest an abort.
    Returns the list of external URLs asked for, in order."""
    asked: list[str] = []

    async def answer(route: Route) -> None:
        url = route.request.url
        asked.append(url)
        if route.request.resource_type == "image":
            await route.fulfill(status=200, content_type="image/png", body=PNG)
        elif url.startswith("https://www.youtube-nocookie.com/embed/"):
            await route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>player</title>")
        else:
            await route.abort()

    await context.route(EXTERNAL, answer)
    return asked


async def open_page(browser: Browser, url: str, **context_options: object) -> Page:  # noqa: F811
    context = await browser.new_context(**context_options)  # type: ignore[arg-type]
    await offline(context)
    page = await context.new_page()
    errors: list[object] = []
    page.on("pageerror", lambda error: errors.append(error))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(url)
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    return page


async def top_of(page: Page, item_id: str) -> float:
    """Where the item's top is on screen, once the page has settled (two frames)."""
    top: float = await page.evaluate(
        "id => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() =>"
        " done(document.getElementById('item-' + id).getBoundingClientRect().top))))",
        item_id,
    )
    return top


def same_place(a: float, b: float) -> bool:
    return abs(a - b) < 1  # sub-pixel rounding is not a move


async def ids(page: Page) -> list[str]:
    found: list[str] = await page.eval_on_selector_all("#timeline > article", "els => els.map(e => e.dataset.id)")
    return found


async def test_new_items_wait_below_the_top_and_edits_never_move_the_view(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
) -> None:
    items = await add(fil, "newsroom", *(entry(f"s{i}", minutes_ago=60 - i) for i in range(30)))
    page = await open_page(browser, f"{fil.base}/events/{SLUG}", viewport={"width": 800, "height": 600})
    # as in a browser without CSS scroll anchoring (Safari): live.js alone must hold the view
    # a constructed stylesheet (CSSOM), not a <style> tag, which the page's CSP (style-src 'self') refuses
    await page.evaluate(
        "(() => { const s = new CSSStyleSheet(); s.replaceSync('* { overflow-anchor: none !important; }');"
        " document.adoptedStyleSheets = [...document.adoptedStyleSheets, s]; })()"
    )
    shown = await ids(page)
    reading = shown[12]
    await page.evaluate(f"document.getElementById('item-{reading}').scrollIntoView({{block: 'center'}})")
    await page.focus(f"#item-{reading} a.time")
    before = await top_of(page, reading)
    assert re.fullmatch(r"\d+ min\. ago", await page.inner_text(f"#item-{reading} time"))
    assert await page.get_attribute(f"#item-{reading} time", "title")

    # a new item while the reader is scrolled down: a button, and the page does not move
    (fresh,) = await add(fil, "newsroom", entry("fresh", minutes_ago=0, title="Fresh news"))
    await page.wait_for_selector("#fresh:not([hidden])", timeout=WAIT_MS)
    assert await page.inner_text("#fresh") == "1 new update"
    assert fresh.id not in await ids(page)
    assert same_place(await top_of(page, reading), before)
    await until_true(page, "document.getElementById('announce').textContent === 'New post: Fresh news'")

    # an item above grows, another above goes away, the one being read is corrected: nothing moves
    above = shown[3]
    longer = "A much longer correction. " * 40
    await add(fil, "newsroom", entry("s26", minutes_ago=60 - 26, text=longer, html=f"<p>{longer}</p>"))
    await until_true(page, f"document.querySelector('#item-{above} .body').textContent.includes('much longer')")
    assert same_place(await top_of(page, reading), before)
    await act(fil, shown[5], "hide")
    await until_true(page, f"!document.getElementById('item-{shown[5]}')")
    assert same_place(await top_of(page, reading), before)
    index = 29 - 12  # the item being read is s17
    assert items[index].id == reading
    await add(fil, "newsroom", entry("s17", minutes_ago=60 - 17, text="Corrected", html="<p>Corrected</p>"))
    await until_true(page, f"document.querySelector('#item-{reading} .body').textContent === 'Corrected'")
    assert same_place(await top_of(page, reading), before)
    # the reader's focus stayed on the same link of the corrected item
    assert await page.evaluate(f"document.activeElement.matches('#item-{reading} a.time')")

    # the button brings the new item in and moves focus to it
    await page.click("#fresh")
    await until_true(page, f"document.activeElement.id === 'item-{fresh.id}'")
    assert (await ids(page))[0] == fresh.id
    assert await page.is_hidden("#fresh")
    # at the top, new items flow in directly
    (direct,) = await add(fil, "newsroom", entry("direct", minutes_ago=0, title="Straight in"))
    await until_true(page, f"document.getElementById('item-{direct.id}')")
    assert await page.is_hidden("#fresh")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_key_moments_and_filter_chips_follow_live(browser: Browser, fil: RunningFil) -> None:  # noqa: F811
    first, _ = await add(fil, "newsroom", entry("n1", minutes_ago=5), entry("n2", minutes_ago=4))
    (road,) = await add(fil, "reporter", entry("r1", minutes_ago=3))
    page = await open_page(browser, f"{fil.base}/events/{SLUG}")
    assert len(await ids(page)) == 3
    assert await page.is_hidden("#moments")
    # an editor marks a key moment: the strip appears and jumps to the item
    await act(fil, first.id, "highlight", label="Attack")
    await page.wait_for_selector("#moments li a", timeout=WAIT_MS)
    assert (await page.inner_text("#moments li a")).endswith("Attack")
    await page.click("#moments li a")
    await until_true(page, f"document.activeElement.id === 'item-{first.id}'")
    assert page.url.endswith(f"#item-{first.id}")
    await page.click(".chips a[data-role='journalist']")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    assert page.url.endswith("/events/stage-1?roles=journalist")
    assert await ids(page) == [road.id]
    assert await page.get_attribute(".chips a[data-role='journalist']", "aria-current") == "true"
    (other,) = await add(fil, "newsroom", entry("n3", minutes_ago=0))
    (mine,) = await add(fil, "reporter", entry("r2", minutes_ago=0))
    await until_true(page, f"document.getElementById('item-{mine.id}')")
    assert await ids(page) == [mine.id, road.id]
    assert other.id not in await ids(page)


async def test_permalink_to_an_old_item_and_load_older(browser: Browser, fil: RunningFil) -> None:  # noqa: F811
    items = await add(fil, "newsroom", *(entry(f"o{i}", minutes_ago=300 - i) for i in range(80)))
    page = await open_page(browser, f"{fil.base}/events/{SLUG}")
    await page.evaluate("window.__same = true")
    assert len(await ids(page)) == 50
    await page.click("#older")
    await until_true(page, "document.querySelectorAll('#timeline > article').length === 80")
    assert await page.evaluate("window.__same") is True  # appended in place, no navigation
    assert await ids(page) == [i.id for i in reversed(items)]
    assert await page.query_selector("#older") is None
    assert await page.evaluate("document.activeElement.id") == f"item-{items[29].id}"  # the first loaded one

    # a shared link to an item the first page does not hold opens the page around it, at the item
    old = items[4]
    page = await open_page(browser, f"{fil.base}/events/{SLUG}#item-{old.id}")
    assert f"?item={old.id}#item-{old.id}" in page.url
    await until_true(page, f"document.activeElement.id === 'item-{old.id}'")
    box = await page.evaluate(f"document.getElementById('item-{old.id}').getBoundingClientRect().toJSON()")
    height = await page.evaluate("innerHeight")
    assert 0 <= box["top"] < height


async def test_videos_play_on_click_and_youtube_is_not_asked_before(browser: Browser, fil: RunningFil) -> None:  # noqa: F811
    youtube = Media(
        type="video",
        url="https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
        alt="The finish",
        thumbnail="https://img.example/poster.png",
    )
    clip = Media(type="video", url="https://media.example/clip.mp4", thumbnail="https://img.example/clip.png")
    await add(fil, "rider", entry("yt", media=(youtube,), title="Finish line video"), entry("clip", media=(clip,)))
    context = await browser.new_context()
    asked = await offline(context)
    page = await context.new_page()
    await page.goto(f"{fil.base}/events/{SLUG}")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    await page.wait_for_load_state("networkidle")
    assert [u for u in asked if "youtube" in u] == []
    assert "https://img.example/poster.png" in asked  # the poster itself is an image from the data
    assert await context.cookies() == []
    await page.click("a[data-yt='dQw4w9WgXcQ']")
    frame = await page.wait_for_selector("iframe.player", timeout=WAIT_MS)
    assert await frame.get_attribute("src") == "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ?autoplay=1"
    await until_true(page, "document.activeElement.tagName === 'IFRAME'")
    for _ in range(200):
        if any(u.startswith("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ") for u in asked):
            break
        await asyncio.sleep(0.05)
    assert [u for u in asked if "youtube" in u and "youtube-nocookie.com/embed/" not in u] == []
    assert any("youtube-nocookie.com/embed/dQw4w9WgXcQ" in u for u in asked)
    await page.click("a[data-video]")
    video = await page.wait_for_selector("video.player", timeout=WAIT_MS)
    assert await video.get_attribute("src") == "https://media.example/clip.mp4"


async def test_oldest_first_event_appends_at_the_bottom_in_french(browser: Browser, fil: RunningFil) -> None:  # noqa: F811
    await add(fil, "qa-desk", entry("q1", minutes_ago=30), entry("q2", minutes_ago=5), slug=QA)
    context = await browser.new_context()
    await offline(context)
    await context.clock.install()  # the page's clock, moved forward below
    page = await context.new_page()
    await page.goto(f"{fil.base}/events/{QA}")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    assert await page.inner_text("#conn") == "En direct"
    ago = await page.inner_text("#timeline > article:last-child time")
    assert ago.replace("\xa0", " ") == "il y a 5 min"  # Intl puts a no-break space before the unit
    made = entry("q3", minutes_ago=0, title="Nouvelle question")
    (latest,) = await add(fil, "qa-desk", dataclasses.replace(made), slug=QA)
    await until_true(page, f"document.getElementById('item-{latest.id}')")
    assert (await ids(page))[-1] == latest.id
    assert await page.inner_text(f"#item-{latest.id} time") == "à l’instant"
    assert await page.is_hidden("#fresh")
    # relative times keep up with the clock
    await page.clock.fast_forward("03:00")
    await until_true(
        page, f"document.querySelector('#item-{latest.id} time').textContent.replace('\\u00a0', ' ') === 'il y a 3 min'"
    )

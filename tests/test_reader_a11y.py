"""Accessibility of the reader page in headless Chromium: axe-core finds no violation in light or dark, with items
of every kind; nothing scrolls sideways at 320 px; the keyboard reaches the timeline first thing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from curation import posts
from curation.header import Fact, Header, Standing
from curation.models import Author, Card, ItemKind, Media, utcnow
from tests.conftest import RunningFil
from tests.test_browser import WAIT_MS, browser  # noqa: F401 - fixture
from tests.test_reader_browser import offline
from tests.test_reader_page import ROOT, SLUG, act, add, entry, start_reader

pytestmark = pytest.mark.browser

#: installed by `make test` (npm install --prefix .cache/axe axe-core@4)
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await start_reader(tmp_path, monkeypatch)
    yield running
    await running.stop()


async def every_kind(fil: RunningFil) -> None:
    """A timeline with one of everything a reader may meet, and the editors' header."""
    avatar = "https://social.example/avatars/a.png"
    (article,) = await add(
        fil,
        "newsroom",
        entry(
            "article",
            minutes_ago=50,
            title="The stage, kilometre by kilometre",
            media=(Media(type="image", url="https://img.example/peloton.jpg", alt="The peloton in the valley"),),
        ),
    )
    (post, quote) = await add(
        fil,
        "reporter",
        entry(
            "post",
            minutes_ago=30,
            kind=ItemKind.POST,
            title=None,
            html='<p>Attack on the climb! <a href="https://social.example/tags/tdf">#TDF</a> <a href="https://news.example/live">live</a></p>',
            author=Author(
                name="Léa Road", handle="@lea@social.example", url="https://social.example/@lea", avatar=avatar
            ),
            card=Card(
                kind="link",
                url="https://news.example/analysis",
                title="Analysis: the decisive climb",
                description="Why the race turned on the Tourmalet",
                image="https://img.example/card.jpg",
            ),
        ),
        entry(
            "quote",
            minutes_ago=25,
            kind=ItemKind.POST,
            title=None,
            html="<p>Quoting the team</p>",
            author=Author(name="Léa Road", handle="@lea@social.example", avatar=avatar),
            card=Card(
                kind="quote",
                url="https://social.example/@team/1",
                title=None,
                description="We ride for the win",
                author=Author(name="The Team", handle="@team@social.example"),
            ),
        ),
    )
    await add(
        fil,
        "rider",
        entry(
            "boost",
            minutes_ago=20,
            kind=ItemKind.POST,
            title=None,
            html="<p>Tough day, but happy with the legs</p>",
            author=Author(name="Rider", handle="@rider.bsky.social", url="https://bsky.example/rider"),
            reposted_by=Author(name="Team Rider", url="https://bsky.example/team"),
            content_warning="Crash photos",
        ),
        entry(
            "videos",
            minutes_ago=10,
            kind=ItemKind.POST,
            title="Finish line",
            media=(
                Media(
                    type="video",
                    url="https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
                    alt="The sprint",
                    thumbnail="https://img.example/sprint.jpg",
                ),
                Media(type="video", url="https://media.example/clip.mp4", thumbnail=None),
            ),
        ),
    )
    await add(fil, "wire", entry("wire", minutes_ago=5, title="Held for moderation"))
    update = posts.new_item(
        posts.Post(text="**Breakaway** caught with 10 km to go. [Live map](https://news.example/map)"),
        event=SLUG,
        editor="ana",
        key="u1",
        label="Newsroom desk",
        now=utcnow(),
    )
    await fil.fil.store.add_post(update, editor="ana")
    await act(fil, article.id, "pin")
    await act(fil, article.id, "note", text="Updated with the finish")
    await act(fil, post.id, "highlight", label="Attack")
    await act(fil, quote.id, "highlight", label="Breakaway")
    header = Header(
        summary="**Castagnède** wins the stage",
        facts=(Fact("Distance", "182 km"), Fact("Average speed", "44.2 km/h")),
        standings=(Standing("Castagnède", "4h12", "1"), Standing("Roux", "+0:04", "2")),
    )
    await fil.fil.store.set_header(SLUG, header, editor="ana")


async def violations(page: Page) -> list[dict[str, Any]]:
    assert AXE.exists(), f"axe-core is missing at {AXE}: `make test` installs it (npm)"
    # through the DevTools protocol, not a <script> tag: the page's CSP (script-src 'self') refuses inline script
    await page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
             .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"""
    )
    return found


async def test_no_axe_violation_in_light_and_dark_and_nothing_scrolls_sideways_at_320px(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
) -> None:
    await every_kind(fil)
    context = await browser.new_context(viewport={"width": 1024, "height": 800}, color_scheme="light")
    await offline(context)
    page = await context.new_page()
    await page.goto(f"{fil.base}/events/{SLUG}")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    assert await page.locator("#timeline > article").count() == 6
    assert await page.locator("#moments li").count() == 2
    assert await page.is_visible("#header .standings")

    # the keyboard: the first Tab offers the skip link, which leads into the timeline
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    assert await page.evaluate("!!document.activeElement.closest('#timeline')")

    light = await violations(page)
    assert light == [], json.dumps(light, indent=1)
    for scheme in ("dark", "light"):
        await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        await page.set_viewport_size({"width": 320, "height": 640})
        width = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width == [320, 320], f"{scheme}: the page scrolls sideways at 320 px: {width}"
    await page.emulate_media(color_scheme="dark")
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 20, 24)"
    dark = await violations(page)
    assert dark == [], json.dumps(dark, indent=1)

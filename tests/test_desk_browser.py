"""The editor desk in a real headless Chromium: two editors, one reader, all live."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page

from curation.auth import create_editor
from curation.collectors.push import sign
from tests.browser_util import until_true
from tests.conftest import RunningFil, start_fil
from tests.test_browser import WAIT_MS, browser  # noqa: F401 - fixture

pytestmark = pytest.mark.browser

SLUG = "stage-1"
SECRET = "desk-test-secret"
PASSWORD = "correct horse battery"


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("DESK_WIRE_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: DESK_WIRE_SECRET\n        role: other\n"
    )
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    for name in ("ana", "ben"):
        await create_editor(running.fil.store, name, PASSWORD, "editor")  # type: ignore[arg-type]
    yield running
    await running.stop()


async def push(fil: RunningFil, n: int) -> None:
    body = json.dumps(
        {
            "items": [
                {
                    "id": f"w{n}",
                    "url": f"https://wire.example/{n}",
                    "title": f"Wire story {n}",
                    "text": "The breakaway is caught.",
                    "published_at": "2027-07-12T12:00:00Z",
                }
            ]
        }
    ).encode()
    ts = int(time.time())
    headers = {"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRET, ts, body)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fil.base}/api/ingest/wire", data=body, headers=headers) as response:
            assert response.status == 202


async def login(browser: Browser, fil: RunningFil, name: str) -> Page:  # noqa: F811
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{fil.base}/editor/events/{SLUG}")
    await page.fill('input[name="name"]', name)
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    return page


async def test_editors_approve_pin_and_hide_and_readers_see_it_live(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
) -> None:
    await push(fil, 1)  # role other: held for moderation
    ana = await login(browser, fil, "ana")
    ben = await login(browser, fil, "ben")
    reader_context = await browser.new_context()
    reader = await reader_context.new_page()
    await reader.goto(f"{fil.base}/events/{SLUG}")
    await reader.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    assert await reader.locator("#timeline article").count() == 0  # queued: readers never see it

    await ana.wait_for_selector("#queue .card", timeout=WAIT_MS)
    await ana.click('#queue .card button[data-action="approve"]')
    await ana.wait_for_selector("#timeline .card.state-published", timeout=WAIT_MS)
    await reader.wait_for_selector("#timeline article", timeout=WAIT_MS)
    # the second editor's desk shows the first editor's action without a reload
    await ben.wait_for_selector("#timeline .card.state-published", timeout=WAIT_MS)
    assert await ben.locator("#queue .card").count() == 0

    await push(fil, 2)
    await ana.wait_for_selector("#queue .card", timeout=WAIT_MS)
    await ana.click('#queue .card button[data-action="approve"]')
    await until_true(reader, "document.querySelectorAll('#timeline article').length === 2")
    # pin the older story: it goes to the top of every reader's timeline
    older = ana.locator("#timeline .card", has_text="Wire story 1")
    await older.locator('button[data-action="pin"]').click()
    await until_true(
        reader,
        "document.querySelector('#timeline article').dataset.pinned === '1'"
        " && document.querySelector('#timeline article h2').textContent.includes('Wire story 1')",
    )
    # keyboard: hide the focused card
    await ana.locator("#timeline .card", has_text="Wire story 1").focus()
    await ana.keyboard.press("h")
    await until_true(reader, "document.querySelectorAll('#timeline article').length === 1")
    await ben.wait_for_selector("#timeline .card.state-hidden", timeout=WAIT_MS)
    assert "Wire story 2" in (await reader.locator("#timeline article").inner_text())
    # the second editor reads who did what
    await ben.click("#audit-load")
    await ben.wait_for_selector("#audit:not([hidden]) tbody tr", timeout=WAIT_MS)
    rows = await ben.locator("#audit tbody tr").all_inner_texts()
    assert any("ana" in row and "hide" in row for row in rows)
    assert any("ana" in row and "pin" in row for row in rows)


async def test_an_editor_writes_an_update_and_corrects_it(browser: Browser, fil: RunningFil) -> None:  # noqa: F811
    ana = await login(browser, fil, "ana")
    reader = await (await browser.new_context()).new_page()
    await reader.goto(f"{fil.base}/events/{SLUG}")
    await reader.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    await ana.fill('#composer textarea[name="text"]', "**Crash** in the descent, *three riders* down")
    await ana.fill('#composer input[name="key_moment"]', "crash")
    await ana.click("#compose-submit")
    await reader.wait_for_selector("#timeline article strong", timeout=WAIT_MS)
    assert (await reader.locator("#timeline article strong").inner_text()) == "Crash"
    await ana.click('#timeline .card button[data-action="edit"]')
    await ana.fill('#composer textarea[name="text"]', "Crash in the descent, two riders down")
    await ana.click("#compose-submit")
    await until_true(reader, "document.querySelector('#timeline article .body').textContent.includes('two riders')")
    assert await reader.locator("#timeline article").count() == 1
    assert await reader.locator("#timeline article .updated").count() == 1


async def test_an_editor_adds_a_feed_from_the_desk_and_readers_get_its_items(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
) -> None:
    from tests.upstreams import FakeUpstream, rss_document

    async with FakeUpstream() as upstream:
        upstream.add(
            "/team.xml", rss_document([{"title": "Team news", "link": "https://team.example/1", "guid": "t1"}])
        )
        ana = await login(browser, fil, "ana")
        reader = await (await browser.new_context()).new_page()
        await reader.goto(f"{fil.base}/events/{SLUG}")
        await reader.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
        await ana.click("summary:has-text('Sources')")
        await ana.fill('#add-source input[name="id"]', "team-feed")
        await ana.select_option('#add-source select[name="role"]', "team")
        await ana.fill('#add-source input[name="url"]', upstream.url("/team.xml"))
        await ana.click('#add-source button[type="submit"]')
        await reader.wait_for_selector("#timeline article.role-team", timeout=WAIT_MS)
        assert "Team news" in await reader.locator("#timeline article").inner_text()
        await ana.wait_for_selector('#mute-list li[data-source="team-feed"] .remove-source', timeout=WAIT_MS)
        assert "from desk" in await ana.locator('#mute-list li[data-source="team-feed"]').inner_text()
        await ana.click('#mute-list li[data-source="team-feed"] .remove-source')
        await ana.wait_for_selector('#mute-list li[data-source="team-feed"]', state="detached", timeout=WAIT_MS)


async def test_an_admin_creates_an_event_closes_another_and_adds_an_editor(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
) -> None:
    await create_editor(fil.fil.store, "chief", PASSWORD, "admin")  # type: ignore[arg-type]
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{fil.base}/editor/")
    await page.fill('input[name="name"]', "chief")
    await page.fill('input[name="password"]', PASSWORD)
    await page.click('button[type="submit"]')
    form = page.locator("#new-event")
    await form.locator('input[name="slug"]').fill("rest-day")
    await form.locator('input[name="title"]').fill("Rest day")
    await form.locator('select[name="status"]').select_option("live")
    await form.locator('button[type="submit"]').click()
    await page.wait_for_url(f"{fil.base}/editor/events/rest-day", timeout=WAIT_MS)
    await page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    await page.goto(f"{fil.base}/editor/")
    assert await page.locator('#events tr[data-slug="rest-day"]').inner_text() != ""
    page.on("dialog", lambda dialog: dialog.accept())
    await page.select_option(f"#status-{SLUG}", "closed")
    await until_true(page, "document.getElementById('message').textContent.includes('now closed')")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/api/events") as response:
            listed = {e["slug"]: e["status"] for e in (await response.json())["events"]}
    assert listed == {SLUG: "closed", "rest-day": "live"}
    editor_form = page.locator("#new-editor")
    await editor_form.locator('input[name="name"]').fill("cleo")
    await editor_form.locator('input[name="password"]').fill(PASSWORD)
    await editor_form.locator('button[type="submit"]').click()
    await page.wait_for_selector('#editors tr[data-name="cleo"]', timeout=WAIT_MS)
    await context.close()

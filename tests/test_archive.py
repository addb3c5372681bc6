"""An event's archive over real HTTP (one self-contained HTML file and a JSON document), and a closed event
that keeps serving its final timeline."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Route, async_playwright
from websockets.asyncio.client import connect

from curation.models import EventStatus
from tests.conftest import RunningFil, start_tags
from tests.test_syndication import (
    BASE,
    SLUG,
    act,
    call,
    curate,
    get,
    item_ids,
    launch,
    push,
    wire_item,
    write_sources,
)

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
HIDDEN = ("b", "c", "q1", "q2", "scheduled")
PUBLISHED = ("post", "e", "d", "a")


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await launch(tmp_path, monkeypatch)
    yield running
    await running.stop()


async def rich_timeline(fil: RunningFil) -> dict[str, str]:
    """curate()'s timeline, plus an item with media and hostile HTML, a pinned item and a header block."""
    ids = await curate(fil)
    await push(
        fil,
        "wire",
        wire_item(
            "pic",
            8,
            title="Breakaway <b>bold</b>",
            html='<p>They go <a href="https://x.example/">clear</a><script>alert(1)</script></p>'
            '<img src="https://img.example/inline.png" onerror="alert(2)">',
            author={"name": "Anna & co", "url": "https://wire.example/anna", "avatar": "https://img.example/a.png"},
            media=[
                {"type": "image", "url": "https://img.example/break.jpg", "alt": "The break"},
                {"type": "video", "url": "https://video.example/v.mp4", "alt": "Clip"},
            ],
        ),
    )
    ids["pic"] = (await item_ids(fil))["pic"]
    await act(fil, ids["d"], "pin")
    status, body = await call(
        fil,
        "PUT",
        f"/api/events/{SLUG}/header",
        {"summary": "Pogačar **wins**", "facts": [{"label": "Distance", "value": "182 km"}], "standings": []},
    )
    assert status == 200, body
    return ids


async def test_archive_html_is_one_self_contained_file(fil: RunningFil) -> None:
    ids = await rich_timeline(fil)
    status, headers, raw = await get(fil, f"/events/{SLUG}/archive.html")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Disposition"] == f'attachment; filename="{SLUG}-archive.html"'
    html = raw.decode()
    tags = start_tags(html)
    names = {name for name, _ in tags}
    # nothing runs, nothing is fetched but images
    assert not names & {"script", "link", "iframe", "object", "embed", "frame", "video", "audio", "source", "base"}
    assert all(name == "img" for name, attrs in tags if "src" in attrs)
    assert not any(attr.startswith("on") for _, attrs in tags for attr in attrs)
    (csp,) = [a["content"] for n, a in tags if n == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "alert(1)" not in html

    # every published item, with its permalink as an in-page anchor; nothing readers may not see
    articles = [a["id"] for n, a in tags if n == "article"]
    assert articles == [f"item-{ids[k]}" for k in ("d", "post", "pic", "e", "a")]  # pinned first
    anchors = {a["href"] for n, a in tags if n == "a"}
    assert {f"#item-{ids[k]}" for k in PUBLISHED + ("pic",)} <= anchors
    for hidden in HIDDEN:
        assert ids[hidden] not in html
    assert "Queued tip" not in html and "Scheduled for later" not in html and "Story b" not in html

    # author, time, text, media, original links, header
    assert "Anna &amp; co" in html and "Breakaway bold" in html
    assert 'datetime="2024-07-12T12:08:00.000Z"' in html
    images = {a["src"] for n, a in tags if n == "img"}
    assert {"https://img.example/break.jpg", "https://img.example/a.png", "https://img.example/inline.png"} <= images
    assert "https://video.example/v.mp4" in anchors and "https://wire.example/pic" in anchors
    assert "<strong>wins</strong>" in html and "182 km" in html
    assert f"{BASE}/events/{SLUG}" in anchors
    assert "A word from the desk" in html


async def test_archive_json_holds_the_event_its_header_and_every_item(fil: RunningFil) -> None:
    ids = await rich_timeline(fil)
    status, headers, raw = await get(fil, f"/events/{SLUG}/archive.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Content-Disposition"] == f'attachment; filename="{SLUG}-archive.json"'
    archive = json.loads(raw)
    assert archive["event"] == {
        "slug": SLUG,
        "title": "Stage 1 & the <climb>",
        "language": "fr",
        "timezone": "UTC",
        "order": "newest",
        "status": "live",
        "url": f"{BASE}/events/{SLUG}",
    }
    assert archive["header"]["facts"] == [{"label": "Distance", "value": "182 km"}]
    assert "<strong>wins</strong>" in archive["header"]["summary_html"]
    # the very Item JSON of the items API, in the same order
    status, _, api = await get(fil, f"/api/events/{SLUG}/items?limit=200")
    assert archive["items"] == json.loads(api)["items"]
    assert [i["id"] for i in archive["items"]] == [ids[k] for k in ("d", "post", "pic", "e", "a")]
    assert archive["seq"] == json.loads(api)["seq"]


async def test_archive_spans_many_pages(fil: RunningFil) -> None:
    for start in range(0, 450, 100):
        await push(fil, "wire", *(wire_item(f"n{n:03d}", n) for n in range(start, min(start + 100, 450))))
    status, _, raw = await get(fil, f"/events/{SLUG}/archive.json")
    items = json.loads(raw)["items"]
    assert len(items) == 450 and len({i["id"] for i in items}) == 450
    assert items[0]["text"] == "Story n449" and items[-1]["text"] == "Story n000"
    status, _, raw = await get(fil, f"/events/{SLUG}/archive.html")
    assert raw.count(b"<article ") == 450


async def test_draft_and_unknown_events_have_no_archive(fil: RunningFil) -> None:
    for slug in ("hidden-draft", "nope"):
        for name in ("archive.html", "archive.json"):
            status, _, _ = await get(fil, f"/events/{slug}/{name}")
            assert status == 404, (slug, name)


async def test_a_closed_event_keeps_serving_its_final_timeline(tmp_path: Path, fil: RunningFil) -> None:
    ids = await curate(fil)
    write_sources(tmp_path / "sources.yaml", "closed")
    for _ in range(200):
        event = fil.fil.config.event(SLUG)
        if event is not None and event.status is EventStatus.CLOSED:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the event did not close")

    status, _, page = await get(fil, f"/events/{SLUG}")
    assert status == 200 and b"Story a" in page and b"Story b" not in page
    for name in ("feed.atom", "feed.json", "archive.html", "archive.json"):
        status, headers, body = await get(fil, f"/events/{SLUG}/{name}")
        assert status == 200, name
        assert ids["a"].encode() in body and ids["b"].encode() not in body, name
        assert "max-age=300" in headers["Cache-Control"], name
    status, _, raw = await get(fil, f"/events/{SLUG}/archive.json")
    assert json.loads(raw)["event"]["status"] == "closed"
    status, _, api = await get(fil, f"/api/events/{SLUG}/items")
    assert status == 200 and [i["id"] for i in json.loads(api)["items"]][-1] == ids["a"]

    # the live socket still says hello, then has nothing more to say
    head = await fil.fil.store.head(SLUG)
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live?since={head}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "hello", "seq": head}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)


@pytest.mark.browser
async def test_the_archive_opens_offline_and_fetches_only_images(fil: RunningFil, tmp_path: Path) -> None:
    ids = await rich_timeline(fil)
    _, _, raw = await get(fil, f"/events/{SLUG}/archive.html")
    saved = tmp_path / "archive.html"
    saved.write_bytes(raw)
    assert Path(CHROMIUM).exists(), f"Debian's chromium is needed at {CHROMIUM} (make test installs it)"
    requested: list[tuple[str, str]] = []

    async def refuse(route: Route) -> None:
        requested.append((route.request.resource_type, route.request.url))
        if route.request.url.startswith("file://"):
            await route.continue_()
        else:
            await route.abort()

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page(java_script_enabled=True)
            await page.route("**/*", refuse)
            await page.goto(f"{saved.as_uri()}#item-{ids['a']}")
            await page.wait_for_load_state("load")
            assert await page.locator(f"#item-{ids['a']}").is_visible()
            target = await page.evaluate("document.querySelector(':target') && document.querySelector(':target').id")
            assert target == f"item-{ids['a']}"
            # a page-scripted check: the document has no script of its own, and the CSP forbids any
            assert await page.evaluate("document.scripts.length") == 0
        finally:
            await browser.close()
    kinds = {kind for kind, _ in requested}
    assert kinds <= {"document", "image"}, requested
    assert any(url == "https://img.example/break.jpg" for _, url in requested)

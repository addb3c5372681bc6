"""Security headers (curation/web/security.py): one strict Content-Security-Policy on every page (no inline
script), nosniff and a Referrer-Policy on every response, framing rules (the embed anywhere, the reader page by
Fil alone, the desk nowhere); and, in headless Chromium, pages that need nothing their policy forbids."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from playwright.async_api import Browser, Page

from curation.auth import create_editor
from curation.collectors.push import sign
from curation.errors import StoreError
from curation.web.security import parse_policy, style_hash
from tests.browser_util import until_true
from tests.conftest import RunningFil, start_fil, start_tags
from tests.test_browser import WAIT_MS, browser  # noqa: F401 - fixture
from tests.test_embed_browser import PartnerSite, article

SLUG = "stage-1"
SECRET = "headers-wire-secret"
PASSWORD = "a long desk password"
SOURCES = f"""\
events:
  - slug: {SLUG}
    title: Stage 1
    sources:
      - id: wire
        kind: push
        secret_env: HEADERS_WIRE_SECRET
        role: editorial
  - slug: rest-day
    title: Rest day
    status: closed
    sources:
      - id: rest-wire
        kind: push
        secret_env: HEADERS_WIRE_SECRET
        role: editorial
"""
#: what no page's policy may hold, anywhere
UNSAFE = ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "'strict-dynamic'", "data:", "blob:")


async def open_fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> RunningFil:
    monkeypatch.setenv("HEADERS_WIRE_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(SOURCES)
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data", **settings)
    await create_editor(running.fil.store, "ana", PASSWORD, "admin")  # type: ignore[arg-type]
    return running


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    running = await open_fil(tmp_path, monkeypatch)
    yield running
    await running.stop()


async def push(fil: RunningFil, *items: dict[str, Any]) -> None:
    body = json.dumps({"items": list(items)}).encode()
    stamp = int(time.time())
    headers = {"X-Fil-Timestamp": str(stamp), "X-Fil-Signature": sign(SECRET, stamp, body)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fil.base}/api/ingest/wire", data=body, headers=headers) as response:
            assert response.status == 202, await response.text()


def story(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": key,
        "url": f"https://news.example/{key}",
        "text": f"Story {key}",
        "published_at": "2027-07-12T12:00:00Z",
    } | fields


async def get(
    fil: RunningFil, path: str, *, method: str = "GET", token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDictProxy[str], str]:
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.request(method, fil.base + path, headers=sent, allow_redirects=False) as response:
            return response.status, response.headers, await response.text()


def policy_of(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    policies = headers.getall("Content-Security-Policy", [])
    assert len(policies) == 1, f"expected one Content-Security-Policy, got {policies}"
    policy = parse_policy(policies[0])
    assert len(policy) == len([d for d in policies[0].split(";") if d.strip()]), f"a directive twice: {policies[0]}"
    return policy


def assert_strict_page(headers: CIMultiDictProxy[str], *, ancestors: str) -> dict[str, str]:
    policy = policy_of(headers)
    text = headers["Content-Security-Policy"]
    assert not [word for word in UNSAFE if word in text], text
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["style-src"].split()[0] == "'self'"
    assert policy["connect-src"] == "'self'"  # fetches and the websocket: 'self' covers ws:/wss: of this host
    assert policy["base-uri"] in ("'none'", "'self'")
    assert policy["form-action"] == "'self'"
    assert policy["frame-ancestors"] == ancestors
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in ("strict-origin-when-cross-origin", "same-origin", "no-referrer")
    return policy


async def test_every_page_sends_one_strict_policy_and_the_framing_it_needs(fil: RunningFil) -> None:
    await push(fil, story("a", media=[{"type": "image", "url": "https://img.example/a.png"}]))
    token = await fil.token()
    for path in ("/", f"/events/{SLUG}", f"/events/{SLUG}?roles=editorial", "/events/rest-day"):
        status, headers, _ = await get(fil, path)
        assert status == 200, path
        policy = assert_strict_page(headers, ancestors="'self'")
        # images from their origins, a video or the YouTube no-cookie player after a click
        assert policy["img-src"] == "'self' http: https:"
        assert policy["media-src"] == "http: https:"
        assert policy["frame-src"] == "https://www.youtube-nocookie.com"
        assert policy["base-uri"] == "'none'"
        assert headers["X-Frame-Options"] == "SAMEORIGIN"  # browsers older than frame-ancestors
    # the embed: framed by any site, its <base target=_blank> allowed, no X-Frame-Options
    status, headers, _ = await get(fil, f"/embed/{SLUG}")
    assert status == 200
    policy = assert_strict_page(headers, ancestors="*")
    assert policy["base-uri"] == "'self'" and policy["style-src"] == "'self'"
    assert "X-Frame-Options" not in headers
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    # the desk and its login: never framed, no media, no frames of its own
    for path in ("/editor/login", "/editor/", f"/editor/events/{SLUG}"):
        status, headers, _ = await get(fil, path, token=token)
        assert status == 200, (path, status)
        policy = assert_strict_page(headers, ancestors="'none'")
        assert "frame-src" not in policy and "media-src" not in policy  # default-src 'none' holds
        assert policy["img-src"] == "'self' http: https:"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"  # the desk's own, kept
        assert headers["Cache-Control"] == "no-store"


async def test_every_other_response_gets_nosniff_a_referrer_policy_and_a_policy(fil: RunningFil) -> None:
    await push(fil, story("a"))
    answers = [
        await get(fil, "/api/events"),
        await get(fil, f"/api/events/{SLUG}/items"),
        await get(fil, f"/events/{SLUG}/feed.atom"),
        await get(fil, f"/events/{SLUG}/feed.json"),
        await get(fil, f"/oembed?url={fil.base}/events/{SLUG}"),
        await get(fil, "/static/live.js"),
        await get(fil, "/embed.js"),
        await get(fil, "/healthz"),
        await get(fil, "/no/such/page"),
        await get(fil, f"/events/{SLUG}/archive.json"),
        await get(fil, "/api/ingest/wire", method="POST"),  # unsigned: 401
        await get(
            fil,
            "/api/events",
            method="OPTIONS",
            headers={"Origin": "https://a.example", "Access-Control-Request-Method": "GET"},
        ),
        await get(fil, f"/editor/events/{SLUG}"),  # no session: a redirect to the login
        await get(fil, "/embed/no-such-event"),
    ]
    for status, headers, body in answers:
        assert headers["X-Content-Type-Options"] == "nosniff", (status, body[:80])
        assert headers["Referrer-Policy"], status
        policy = policy_of(headers)
        assert policy.get("default-src") == "'none'", (status, headers["Content-Security-Policy"], body[:80])
    # each keeps the framing of its path: the redirect out of the desk is not framed, the embed's refusal is
    redirect, refusal = answers[-2], answers[-1]
    assert redirect[0] == 303 and policy_of(redirect[1])["frame-ancestors"] == "'none'"
    assert refusal[0] == 404 and policy_of(refusal[1])["frame-ancestors"] == "*"
    assert "frame-ancestors *" in refusal[1]["Content-Security-Policy"]


async def test_with_the_image_proxy_pages_load_images_from_fil_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fil = await open_fil(tmp_path, monkeypatch, image_proxy=True)
    try:
        token = await fil.token()
        for path in (f"/events/{SLUG}", f"/embed/{SLUG}", f"/editor/events/{SLUG}"):
            status, headers, _ = await get(fil, path, token=token)
            assert status == 200, path
            assert policy_of(headers)["img-src"] == "'self'", path
    finally:
        await fil.stop()


async def test_the_archive_download_keeps_the_policy_it_states(fil: RunningFil) -> None:
    await push(fil, story("a", html="<p>a <img src='https://img.example/a.png'></p>"))
    status, headers, body = await get(fil, f"/events/{SLUG}/archive.html")
    assert status == 200
    (meta,) = [
        a["content"] for n, a in start_tags(body) if n == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    served = policy_of(headers)
    # the file states its own policy for wherever it is opened; served from Fil it gets the same, and no framing
    assert served == {**parse_policy(meta), "frame-ancestors": "'none'"}
    assert "script-src" not in served and served["default-src"] == "'none'"


async def test_the_embed_accent_is_the_one_inline_style_and_only_its_hash_is_allowed(fil: RunningFil) -> None:
    hashes = set()
    for accent in ("#0a7", "rgb(0, 119, 170)", "rebeccapurple"):
        status, headers, body = await get(fil, f"/embed/{SLUG}?accent={accent.replace('#', '%23')}")
        assert status == 200
        (css,) = re.findall(r"<style>(.*?)</style>", body, re.S)
        assert accent in css
        sources = policy_of(headers)["style-src"].split()
        assert sources == ["'self'", style_hash(css)]
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        assert sources[1] == f"'sha256-{digest}'"
        hashes.add(sources[1])
    assert len(hashes) == 3
    # the reader page has no inline style at all
    status, headers, body = await get(fil, f"/events/{SLUG}")
    assert "<style" not in body and " style=" not in body
    assert policy_of(headers)["style-src"] == "'self'"


async def test_a_stale_copy_served_while_the_store_is_away_keeps_its_policy(
    fil: RunningFil, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/embed/{SLUG}?accent=%230a7"
    status, fresh, _ = await get(fil, path)
    assert status == 200

    async def away(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("the store is away (test)")

    monkeypatch.setattr(fil.fil.store, "page", away)
    status, stale, _ = await get(fil, path)
    assert status == 200 and "X-Fil-Stale" in stale
    # the copy keeps the hash of its own <style>: the accent still shows, nothing else is let in
    assert stale.getall("Content-Security-Policy") == fresh.getall("Content-Security-Policy")


# --- in Chromium ---------------------------------------------------------------------------------------------

#: installed before any page script: every CSP violation of the document, as evidence
VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " " + (e.sample || ""));
}, true);
"""


async def page_with_evidence(browser: Browser, errors: list[str]) -> Page:  # noqa: F811
    context = await browser.new_context()
    await context.add_init_script(VIOLATIONS)
    # no internet: the YouTube player is answered here (its frame is allowed; what it loads is not the test's)
    await context.route(
        "https://www.youtube-nocookie.com/**",
        lambda route: route.fulfill(body="<p>player</p>", content_type="text/html"),
    )
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    return page


async def no_violation(page: Page, what: str) -> None:
    violations = await page.evaluate("window.__violations")
    assert violations == [], f"{what}: {violations}"


@pytest.mark.browser
async def test_reader_embed_and_desk_run_under_their_policy_without_a_violation(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
) -> None:
    await push(
        fil,
        story("words", html="<p>A <strong>story</strong> with a <a href='https://news.example/x'>link</a></p>"),
        story("video", media=[{"type": "video", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"}]),
    )
    errors: list[str] = []
    reader = await page_with_evidence(browser, errors)
    await reader.goto(f"{fil.base}/events/{SLUG}")
    # the websocket connected: connect-src 'self' covers ws: of the same host in Chromium
    await reader.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    await push(fil, story("live", title="Arrived live"))
    await until_true(reader, "document.querySelectorAll('#timeline > article').length === 3")
    await reader.click("#timeline a.video")
    await reader.wait_for_selector("iframe.player", timeout=WAIT_MS)
    # the player's frame loaded (frame-src allows the no-cookie player, answered here: no internet)
    for _ in range(200):
        players = [f for f in reader.frames if f.url.startswith("https://www.youtube-nocookie.com/embed/")]
        if players and "player" in await players[0].inner_text("body"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the player never loaded: {[f.url for f in reader.frames]}")
    await no_violation(reader, "reader")

    embed = await page_with_evidence(browser, errors)
    await embed.goto(f"{fil.base}/embed/{SLUG}?accent=%230a7&theme=dark")
    await embed.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    # the hashed <style> applied: the accent reaches the links it colours
    accent = await embed.evaluate("getComputedStyle(document.querySelector('.embed-more a')).color")
    assert accent == "rgb(0, 170, 119)"
    await no_violation(embed, "embed")

    desk = await page_with_evidence(browser, errors)
    await desk.goto(f"{fil.base}/editor/events/{SLUG}")
    await no_violation(desk, "login page")
    await desk.fill('input[name="name"]', "ana")
    await desk.fill('input[name="password"]', PASSWORD)
    await desk.click('button[type="submit"]')
    await desk.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
    await until_true(desk, "document.querySelectorAll('#timeline .card').length === 3")
    await no_violation(desk, "desk")
    await desk.goto(f"{fil.base}/editor/")  # the admin's event list (admin.js)
    await desk.wait_for_selector("#events tr", timeout=WAIT_MS)
    await asyncio.sleep(0.3)
    await no_violation(desk, "event list")
    assert errors == []


@pytest.mark.browser
async def test_partners_may_frame_the_embed_and_nobody_the_desk(
    browser: Browser,  # noqa: F811
    fil: RunningFil,
) -> None:
    await push(fil, story("a"))
    async with PartnerSite() as partner:  # another origin (another port of 127.0.0.1)
        frames = "".join(
            f'<iframe id="{name}" src="{fil.base}{path}"></iframe>'
            for name, path in (
                ("embed", f"/embed/{SLUG}"),
                ("reader", f"/events/{SLUG}"),
                ("login", "/editor/login"),
                ("desk", f"/editor/events/{SLUG}"),
            )
        )
        partner.pages["/framing"] = (article(frames), {})
        context = await browser.new_context()
        page = await context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
        await page.goto(partner.base_url + "/framing")
        embed_handle = await page.wait_for_selector("#embed")
        assert embed_handle is not None
        embed = await embed_handle.content_frame()
        assert embed is not None
        await embed.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
        assert await embed.locator("#timeline > article").count() == 1
        for name in ("reader", "login", "desk"):
            handle = await page.wait_for_selector(f"#{name}")
            assert handle is not None
            frame = await handle.content_frame()
            assert frame is not None

            # Chromium swaps a refused document for its error page: no Fil content, not Fil's URL
            for _ in range(200):
                if frame.url.startswith("chrome-error:"):
                    break
                await asyncio.sleep(0.05)
            assert frame.url.startswith("chrome-error:"), (name, frame.url)
        assert len(refused) >= 3, refused
        await context.close()

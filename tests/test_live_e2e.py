"""End to end over real sockets: fake feed upstream -> Fil (uvicorn) -> websocket readers and pages."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import RunningFil, start_fil
from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

SLUG = "stage-1"
WAIT = 20.0  # generous: tests wait for outcomes, they never time them


def item(n: int, *, minutes_ago: float = 0, **extra: str) -> dict[str, str]:
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    fields = {
        "title": f"Story {n}",
        "link": f"https://news.example/story-{n}",
        "guid": f"story-{n}",
        "description": f"<p>Body of story {n}</p>",
        "pubDate": format_datetime(when),
    }
    fields.update(extra)
    return fields


def write_sources(path: Path, feed_url: str, *, extra: str = "") -> None:
    path.write_text(
        textwrap.dedent(
            f"""\
            events:
              - slug: {SLUG}
                title: "Stage 1"
                sources:
                  - id: desk
                    kind: feed
                    url: {feed_url}
                    role: editorial
                    interval: 0.3s
            """
        )
        + extra
    )


async def next_message(ws: ClientConnection, *types: str) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if not types or message["type"] in types:
            return message  # type: ignore[no-any-return]


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(int(WAIT / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture
async def fil(upstream: FakeUpstream, tmp_path: Path) -> Any:  # noqa: F811
    upstream.add("/feed.xml", rss_document([item(1, minutes_ago=5), item(2, minutes_ago=4)]), etag="auto")
    write_sources(tmp_path / "sources.yaml", upstream.url("/feed.xml"))
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    yield running
    await running.stop()


async def timeline(fil: RunningFil) -> dict[str, Any]:
    return await get_json(f"{fil.base}/api/events/{SLUG}/items")  # type: ignore[no-any-return]


async def test_an_upstream_entry_reaches_a_websocket_reader(fil: RunningFil, upstream: FakeUpstream) -> None:  # noqa: F811
    await wait_for(lambda: _count(fil, 2), "the first import")

    async def not_modified() -> bool:
        return upstream.served("/feed.xml", 304) >= 1

    await wait_for(not_modified, "a conditional GET answered 304")
    assert upstream.last("/feed.xml").headers.get("if-none-match")
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        hello = await next_message(ws)
        assert hello["type"] == "hello" and hello["seq"] == 2
        upstream.route("/feed.xml").body = rss_document([item(3), item(1, minutes_ago=5), item(2, minutes_ago=4)])
        message = await next_message(ws, "upsert")
        assert message["seq"] == 3
        assert message["item"]["title"] == "Story 3"
        assert message["item"]["url"] == "https://news.example/story-3"
        assert message["item"]["role"] == "editorial" and message["item"]["source"]["id"] == "desk"
    page = await timeline(fil)
    assert [i["title"] for i in page["items"]] == ["Story 3", "Story 2", "Story 1"]
    assert page["seq"] == 3 and page["next"] is None


async def _count(fil: RunningFil, n: int) -> bool:
    return len((await timeline(fil))["items"]) >= n


async def test_a_reader_that_reconnects_with_since_gets_exactly_what_it_missed(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    await wait_for(lambda: _count(fil, 2), "the first import")
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        seen = (await next_message(ws, "hello"))["seq"]
    # offline while three stories arrive and one is corrected
    upstream.route("/feed.xml").body = rss_document(
        [item(5), item(4), item(3), item(1, minutes_ago=5, description="<p>Corrected</p>"), item(2, minutes_ago=4)]
    )
    await wait_for(lambda: _count(fil, 5), "three new stories")
    await asyncio.sleep(0.5)
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live?since={seen}") as ws:
        hello = await next_message(ws, "hello")
        missed = [await next_message(ws) for _ in range(hello["seq"] - seen)]
        assert [m["seq"] for m in missed] == list(range(seen + 1, hello["seq"] + 1))
        titles = sorted(m["item"]["title"] for m in missed)
        assert titles == ["Story 1", "Story 3", "Story 4", "Story 5"]
        corrected = next(m["item"] for m in missed if m["item"]["title"] == "Story 1")
        assert corrected["version"] == 2 and "Corrected" in corrected["html"]
        # and then nothing more: no duplicates
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 1.0)


async def test_unknown_event_is_refused_with_4404(fil: RunningFil) -> None:
    async with connect(f"{fil.ws_base}/api/events/no-such-event/live") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
    assert "no-such-event" in closed.value.rcvd.reason


async def test_bogus_since_gets_reset_and_stays_live(fil: RunningFil, upstream: FakeUpstream) -> None:  # noqa: F811
    await wait_for(lambda: _count(fil, 2), "the first import")
    for since in ("abc", "-4", "99999"):
        async with connect(f"{fil.ws_base}/api/events/{SLUG}/live?since={since}") as ws:
            assert (await next_message(ws))["type"] == "hello"
            assert (await next_message(ws))["type"] == "reset"


async def test_hostile_markup_reaches_neither_page_nor_api(fil: RunningFil, upstream: FakeUpstream) -> None:  # noqa: F811
    hostile = item(
        9,
        title="<script>alert(1)</script>Hostile",
        description=(
            '<p onclick="alert(2)">Hi<script>alert(3)</script>'
            '<img src="https://img.example/x.png" onerror="alert(4)">'
            '<a href="javascript:alert(5)">click</a><iframe src="https://evil.example/"></iframe></p>'
        ),
    )
    upstream.route("/feed.xml").body = rss_document([hostile])
    await wait_for(lambda: _count(fil, 3), "the hostile story")
    api = json.dumps(await timeline(fil))
    async with aiohttp.ClientSession() as session, session.get(f"{fil.base}/events/{SLUG}") as response:
        html = await response.text()
    # the page's own scripts (live.js) are fine; the timeline must carry none
    start = html.index('<section id="timeline"')
    page = html[start : html.index("</section>", start)]
    for blob in (api, page):
        for bad in ("<script", "onerror", "onclick", "javascript:", "<iframe"):
            assert bad not in blob, f"{bad} leaked"
    assert "Hostile" in page and "img.example/x.png" in page


async def test_page_is_server_rendered_and_lists_the_event(fil: RunningFil) -> None:
    await wait_for(lambda: _count(fil, 2), "the first import")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/") as response:
            assert response.status == 200
            assert f"/events/{SLUG}" in await response.text()
        async with session.get(f"{fil.base}/events/{SLUG}") as response:
            html = await response.text()
            assert 'id="timeline"' in html and "Story 2" in html and "Story 1" in html
            assert html.index("Story 2") < html.index("Story 1")
            assert "live.js" in html
        async with session.get(f"{fil.base}/events/nope") as response:
            assert response.status == 404
        async with session.get(f"{fil.base}/healthz") as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
    events = await get_json(f"{fil.base}/api/events")
    assert [e["slug"] for e in events["events"]] == [SLUG]


async def test_items_api_pages_and_refuses_bad_parameters(fil: RunningFil) -> None:
    await wait_for(lambda: _count(fil, 2), "the first import")
    first = await get_json(f"{fil.base}/api/events/{SLUG}/items?limit=1")
    assert len(first["items"]) == 1 and first["next"]
    second = await get_json(f"{fil.base}/api/events/{SLUG}/items?limit=1&before={first['next']}")
    assert second["items"][0]["id"] != first["items"][0]["id"]
    async with aiohttp.ClientSession() as session:
        for query in ("limit=0", "limit=500", "limit=x", "before=garbage"):
            async with session.get(f"{fil.base}/api/events/{SLUG}/items?{query}") as response:
                assert response.status == 400
                assert "error" in await response.json()


async def test_source_status_is_visible(fil: RunningFil, upstream: FakeUpstream) -> None:  # noqa: F811
    await wait_for(lambda: _count(fil, 2), "the first import")
    sources = (await fil.sources())["sources"]
    (desk,) = sources
    assert desk["id"] == "desk" and desk["state"] == "ok" and desk["items_seen"] == 2
    assert desk["last_success_at"] and desk["next_poll_at"]
    upstream.gone("/feed.xml")

    async def gone() -> bool:
        return bool((await fil.sources())["sources"][0]["state"] == "gone")

    await wait_for(gone, "the gone state")
    (desk,) = (await fil.sources())["sources"]
    assert "410" in desk["last_error"]
    health = await get_json(f"{fil.base}/healthz")
    assert health["status"] == "ok"  # a gone source is a decision, not a failure being ridden out


async def test_editing_sources_yaml_takes_effect_without_restart(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
    tmp_path: Path,
) -> None:
    await wait_for(lambda: _count(fil, 2), "the first import")
    upstream.add("/wire.xml", rss_document([item(7, guid="wire-7", link="https://wire.example/7")]))
    path = tmp_path / "sources.yaml"
    write_sources(path, upstream.url("/feed.xml"))
    wire = f"- id: wire\nkind: feed\nurl: {upstream.url('/wire.xml')}\nrole: journalist\ninterval: 0.3s\n"
    text = path.read_text() + textwrap.indent(wire, " " * 8).replace(" " * 8 + "- ", " " * 6 + "- ", 1)
    path.write_text(text)
    await wait_for(lambda: _count(fil, 3), "the new source's story")
    # an invalid edit is refused and the running configuration stays
    path.write_text(text.replace("role: journalist", "role: wizard"))

    async def refused() -> bool:
        return bool((await fil.sources())["reload_error"])

    await wait_for(refused, "the refused edit")
    status = await fil.sources()
    assert "role" in status["reload_error"] and "sources.yaml:" in status["reload_error"]
    assert {s["id"] for s in status["sources"]} == {"desk", "wire"}
    # removing the source stops it; its story stays
    write_sources(path, upstream.url("/feed.xml"))

    async def removed() -> bool:
        return [s["id"] for s in (await fil.sources())["sources"]] == ["desk"]

    await wait_for(removed, "the source to be removed")
    hits = upstream.hits("/wire.xml")
    await asyncio.sleep(1.0)
    assert upstream.hits("/wire.xml") == hits
    assert "Story 7" in [i["title"] for i in (await timeline(fil))["items"]]


async def test_reader_frames_are_ignored_and_a_closed_reader_leaves_the_hub(
    fil: RunningFil,
    upstream: FakeUpstream,  # noqa: F811
) -> None:
    await wait_for(lambda: _count(fil, 2), "the first import")
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        await next_message(ws, "hello")
        for n in range(500):
            await ws.send(f"garbage {n}")
        await ws.send(b"\x00\xff binary")
        await asyncio.wait_for(await ws.ping(), WAIT)  # still read and answered
        upstream.route("/feed.xml").body = rss_document([item(3), item(1, minutes_ago=5), item(2, minutes_ago=4)])
        assert (await next_message(ws, "upsert"))["seq"] == 3
        assert fil.fil.hub.readers(SLUG) == 1

    async def left() -> bool:
        return fil.fil.hub.readers(SLUG) == 0

    await wait_for(left, "the closed reader to leave the hub")


async def test_an_oversized_reader_frame_closes_only_that_reader(fil: RunningFil) -> None:
    await wait_for(lambda: _count(fil, 2), "the first import")
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as other:
        await next_message(other, "hello")
        async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
            await next_message(ws, "hello")
            await ws.send("x" * 100_000)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await asyncio.wait_for(await other.ping(), WAIT)

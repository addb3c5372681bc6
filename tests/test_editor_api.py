"""The editor API over real HTTP: the auth matrix over every route, actions, conflicts, queue, audit."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from curation.collectors.push import sign
from tests.conftest import RunningFil, start_fil

SLUG = "stage-1"
SECRET = "editor-api-secret"

#: every route of the app, sorted into what anyone may use and what only editors may use; a new route
#: fails test_every_route_is_classified until it is put in one of these lists
PUBLIC = {
    "/",
    "/events/{slug}",
    "/events/{slug}/feed.atom",
    "/events/{slug}/feed.json",
    "/events/{slug}/archive.html",
    "/events/{slug}/archive.json",
    "/api/events",
    "/api/events/{slug}/items",
    "/api/events/{slug}/live",
    "/api/ingest/{source_id}",  # signed by its own secret instead
    "/websub/{source_id}",  # verified by the hub's signature instead
    "/healthz",
    "/metrics",  # or a bearer token of its own (CURATION_METRICS_TOKEN)
    "/editor/login",
    "/static",
    "/embed.js",
    "/embed/{slug}",
    "/oembed",
    "/img/{signature}",  # CURATION_IMAGE_PROXY: signed by the server's key instead
}
#: editors with the admin role only: an editor's token gets 403
ADMIN_ONLY = {
    "/api/events/{slug}",  # PATCH: change an event (POST /api/events, public for GET, is tested on its own)
    "/api/editors",
    "/api/editors/{name}",
    "/api/editors/{name}/disabled",
}
EDITOR_ONLY = ADMIN_ONLY | {
    "/api/sources",
    "/editor/",
    "/editor/logout",
    "/editor/events/{slug}",
    "/api/events/{slug}/queue",
    "/api/events/{slug}/desk",
    "/api/events/{slug}/audit",
    "/api/events/{slug}/items/{item_id}/actions",
    "/api/events/{slug}/sources/{source_id}/actions",
    "/api/events/{slug}/desk/live",
    "/api/events/{slug}/posts",
    "/api/events/{slug}/sources",
    "/api/events/{slug}/sources/{source_id}",
    "/api/events/{slug}/posts/{item_id}",
    "/api/events/{slug}/paste",
    "/api/events/{slug}/header",  # readers get the header through the items API and the page
    "/api/events/{slug}/sources/{source_id}/mute",
}


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("API_WIRE_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: API_WIRE_SECRET\n        role: other\n"
    )
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    yield running
    await running.stop()


async def push(fil: RunningFil, *ids: str) -> None:
    items = [
        {"id": i, "url": f"https://wire.example/{i}", "text": f"Story {i}", "published_at": "2026-07-12T12:00:00Z"}
        for i in ids
    ]
    body = json.dumps({"items": items}).encode()
    ts = int(time.time())
    async with aiohttp.ClientSession() as session:
        headers = {"X-Fil-Timestamp": str(ts), "X-Fil-Signature": sign(SECRET, ts, body)}
        async with session.post(f"{fil.base}/api/ingest/wire", data=body, headers=headers) as response:
            assert response.status == 202


async def call(fil: RunningFil, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.request(method, f"{fil.base}{path}", json=body, allow_redirects=False) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text


def test_every_route_is_classified(fil: RunningFil) -> None:
    app = fil.server.config.app
    while not hasattr(app, "routes"):
        app = app.app
    paths = {r.path for r in app.routes if isinstance(r, Route | WebSocketRoute | Mount)}
    assert paths - PUBLIC - EDITOR_ONLY == set(), "classify the new route in this test"
    assert PUBLIC & EDITOR_ONLY == set()


async def test_every_editor_route_refuses_anonymous_and_bad_tokens(fil: RunningFil) -> None:
    await push(fil, "a")
    (item,) = (await call(fil, "GET", f"/api/events/{SLUG}/queue", token=await fil.token()))[1]["items"]
    concrete = {
        "{slug}": SLUG,
        "{item_id}": item["id"],  # also a post id for PATCH: refused before it is looked up
        "{source_id}": "wire",
        "{name}": "ops",
    }
    for pattern in EDITOR_ONLY - {"/api/events/{slug}/desk/live"}:
        path = pattern
        for key, value in concrete.items():
            path = path.replace(key, value)
        method = "PATCH" if pattern.endswith("{item_id}") else "GET"
        if pattern.endswith(("actions", "logout", "/posts", "/paste", "/mute", "/disabled")):
            method = "POST"
        if pattern.endswith("{name}"):
            method = "PUT"
        if pattern == "/api/events/{slug}":
            method = "PATCH"
        if pattern == "/api/events/{slug}/sources":
            method = "POST"
        if pattern.endswith("/sources/{source_id}"):
            method = "DELETE"
        for token in (None, "not-a-token"):
            status, _ = await call(fil, method, path, {"action": "approve", "text": "x"}, token)
            if pattern.startswith("/editor/"):
                # a desk page sends the browser to the login; logging out without a session changes nothing
                assert status in (303, 401, 403), (pattern, status)
            else:
                assert status in (401, 403), (pattern, token, status)
    for token in (None, "not-a-token"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with connect(f"{fil.ws_base}/api/events/{SLUG}/desk/live", additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # nothing happened to the item
    assert (await call(fil, "GET", f"/api/events/{SLUG}/queue", token=await fil.token()))[1]["items"] == [item]


async def test_actions_with_a_bearer_token_and_version_conflicts(fil: RunningFil) -> None:
    token = await fil.token()
    await push(fil, "a", "b")
    status, queue = await call(fil, "GET", f"/api/events/{SLUG}/queue", token=token)
    assert status == 200 and {i["state"] for i in queue["items"]} == {"queued"}
    a = next(i for i in queue["items"] if i["text"] == "Story a")
    path = f"/api/events/{SLUG}/items/{a['id']}/actions"
    status, done = await call(fil, "POST", path, {"action": "approve", "version": a["version"]}, token)
    assert status == 200 and done["item"]["state"] == "published" and done["seq"]
    status, conflict = await call(fil, "POST", path, {"action": "hide", "version": a["version"]}, token)
    assert status == 409 and conflict["item"]["version"] == a["version"] + 1 and "version" in conflict["error"]
    status, pinned = await call(fil, "POST", path, {"action": "pin", "version": conflict["item"]["version"]}, token)
    assert status == 200 and pinned["item"]["pinned"] is True
    status, moment = await call(fil, "POST", path, {"action": "highlight", "label": "Attack"}, token)
    assert status == 200 and moment["item"]["key_moment"] == "Attack"
    status, noted = await call(fil, "POST", path, {"action": "note", "text": "Confirmed"}, token)
    assert status == 200 and noted["item"]["note"] == "Confirmed"
    public = (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"]
    assert [(i["text"], i["pinned"], i["key_moment"], i["note"]) for i in public] == [
        ("Story a", True, "Attack", "Confirmed")
    ]
    for body, code in (
        ({"action": "launch"}, 400),
        ({"action": "note", "text": 5}, 400),
        ({"action": "pin", "version": "3"}, 400),
        ("not an object", 400),
    ):
        assert (await call(fil, "POST", path, body, token))[0] == code, body
    assert (await call(fil, "POST", f"/api/events/{SLUG}/items/nope/actions", {"action": "pin"}, token))[0] == 404
    assert (await call(fil, "POST", f"/api/events/nope/items/{a['id']}/actions", {"action": "pin"}, token))[0] == 404
    status, bulk = await call(fil, "POST", f"/api/events/{SLUG}/sources/wire/actions", {"action": "reject"}, token)
    assert status == 200 and bulk["changed"] == 1
    assert (await call(fil, "GET", f"/api/events/{SLUG}/queue", token=token))[1]["items"] == []
    status, audit = await call(fil, "GET", f"/api/events/{SLUG}/audit", token=token)
    assert status == 200
    assert [e["action"] for e in audit["entries"]] == ["reject", "note", "highlight", "pin", "approve"]
    assert all(e["editor"] == "ops" for e in audit["entries"])
    assert audit["entries"][-1]["detail"]["before"]["state"] == "queued"


async def test_a_desk_session_needs_its_csrf_token(fil: RunningFil) -> None:
    await fil.token()  # creates the editor "ops"
    await push(fil, "a")
    item = (await call(fil, "GET", f"/api/events/{SLUG}/queue", token=await fil.token()))[1]["items"][0]
    # unsafe=True: aiohttp keeps no cookies for an IP address host otherwise
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(
            f"{fil.base}/editor/login",
            data={"name": "ops", "password": "a long test password"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
        async with session.get(f"{fil.base}/editor/events/{SLUG}") as response:
            page = await response.text()
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        path = f"{fil.base}/api/events/{SLUG}/items/{item['id']}/actions"
        async with session.post(path, json={"action": "approve"}) as response:
            assert response.status == 403
        async with session.post(path, json={"action": "approve"}, headers={"X-CSRF-Token": "wrong"}) as response:
            assert response.status == 403
        async with session.post(path, json={"action": "approve"}, headers={"X-CSRF-Token": csrf}) as response:
            assert response.status == 200


async def test_editor_posts_publish_now_or_later_and_corrections_keep_their_place(fil: RunningFil) -> None:
    token = await fil.token()
    posts = f"/api/events/{SLUG}/posts"
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        await ws.recv()  # hello
        status, made = await call(
            fil,
            "POST",
            posts,
            {
                "text": "**Attack!** *Castagnède* goes on the [Aubisque](https://x.example/a)"
                "\n\n- gap 30s\n- <b>raw</b>",
                "image_url": "https://img.example/attack.jpg",
                "image_alt": "Castagnède out of the saddle",
                "link": "https://x.example/live",
                "key_moment": "attack",
            },
            token,
        )
        assert status == 201, made
        item = made["item"]
        assert item["kind"] == "update" and item["state"] == "published" and item["author"]["name"] == "ops"
        assert "<strong>Attack!</strong>" in item["html"] and "<em>Castagnède</em>" in item["html"]
        assert "<li>gap 30s</li>" in item["html"] and "<b>" not in item["html"] and "&lt;b&gt;" in item["html"]
        assert item["media"] == [
            {
                "type": "image",
                "url": "https://img.example/attack.jpg",
                "alt": "Castagnède out of the saddle",
                "thumbnail": None,
            }
        ]
        assert item["card"]["url"] == "https://x.example/live" and item["key_moment"] == "attack"
        live = json.loads(await ws.recv())
        assert live["type"] == "upsert" and live["item"]["id"] == item["id"]
        # the desk gets the Markdown as written (a correction starts from it); readers never do
        assert item["markdown"].startswith("**Attack!** *Castagnède*") and "markdown" not in live["item"]
        await call(fil, "POST", posts, {"text": "Later post"}, token)
        await ws.recv()
        # a correction keeps its place and shows as updated
        status, fixed = await call(
            fil,
            "PATCH",
            f"{posts}/{item['id']}",
            {"text": "Attack by **Castagnède**!", "version": item["version"]},
            token,
        )
        assert status == 200 and fixed["item"]["updated_at"] and fixed["item"]["version"] == item["version"] + 1
        assert fixed["item"]["markdown"] == "Attack by **Castagnède**!"
        corrected = json.loads(await ws.recv())
        assert corrected["item"]["text"] == "Attack by Castagnède!"
    timeline = (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"]
    assert [i["text"] for i in timeline] == ["Later post", "Attack by Castagnède!"]
    stale = await call(fil, "PATCH", f"{posts}/{item['id']}", {"text": "x", "version": item["version"]}, token)
    assert stale[0] == 409
    for body, field in (
        ({"text": ""}, "text"),
        ({"text": "x", "image_url": "javascript:alert(1)"}, "image_url"),
        ({"text": "x", "link": "ftp://x"}, "link"),
        ({"text": "x", "publish_at": "tomorrow"}, "publish_at"),
        ({"text": "x", "publish_at": "2030-01-01T10:00:00"}, "publish_at"),
    ):
        status, answer = await call(fil, "POST", posts, body, token)
        assert status == 400 and answer["error"].startswith(field), (body, answer)
    assert (await call(fil, "PATCH", f"{posts}/nope", {"text": "x"}, token))[0] == 404


async def test_a_scheduled_post_appears_at_its_time(fil: RunningFil) -> None:
    from datetime import UTC, datetime, timedelta

    token = await fil.token()
    when = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    status, made = await call(
        fil, "POST", f"/api/events/{SLUG}/posts", {"text": "At the line", "publish_at": when}, token
    )
    assert status == 201 and made["item"]["state"] == "scheduled"
    assert (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"] == []
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        await ws.recv()
        published = json.loads(await asyncio.wait_for(ws.recv(), 20))
    assert published["type"] == "upsert" and published["item"]["text"] == "At the line"


async def test_admin_routes_refuse_editors_and_let_admins_manage_editors(fil: RunningFil) -> None:
    from curation.auth import create_editor, create_token

    editor_token = await fil.token()  # "ops", role editor
    await create_editor(fil.fil.store, "chief", "another long password", "admin")  # type: ignore[arg-type]
    admin_token = await create_token(fil.fil.store, "chief")  # type: ignore[arg-type]
    wrong_role = (
        ("GET", "/api/editors", None),
        ("PUT", "/api/editors/newbie", {"password": "a long enough one", "role": "editor"}),
        ("POST", "/api/editors/ops/disabled", {"disabled": True}),
    )
    for method, path, body in wrong_role:
        status, answer = await call(fil, method, path, body, editor_token)
        assert status == 403 and "admin" in answer["error"], (path, status, answer)
    status, made = await call(
        fil, "PUT", "/api/editors/newbie", {"password": "a long enough one", "role": "editor"}, admin_token
    )
    assert status == 201 and made["created"] is True
    status, listing = await call(fil, "GET", "/api/editors", token=admin_token)
    assert {e["name"]: e["role"] for e in listing["editors"]} == {"chief": "admin", "newbie": "editor", "ops": "editor"}
    assert (await call(fil, "PUT", "/api/editors/x", {"password": "short"}, admin_token))[0] == 400
    assert (await call(fil, "PUT", "/api/editors/x", {"password": "long enough pass", "role": "god"}, admin_token))[
        0
    ] == 400
    # disabling an editor ends its token's access at once
    assert (await call(fil, "POST", "/api/editors/ops/disabled", {"disabled": True}, admin_token))[0] == 200
    assert (await call(fil, "GET", f"/api/events/{SLUG}/queue", token=editor_token))[0] == 401
    assert (await call(fil, "POST", "/api/editors/ops/disabled", {"disabled": False}, admin_token))[0] == 200
    assert (await call(fil, "GET", f"/api/events/{SLUG}/queue", token=editor_token))[0] == 200
    assert (await call(fil, "POST", "/api/editors/chief/disabled", {"disabled": True}, admin_token))[0] == 400
    assert (await call(fil, "POST", "/api/editors/nobody/disabled", {"disabled": True}, admin_token))[0] == 404


async def test_sources_added_and_removed_at_runtime_from_the_desk(fil: RunningFil, tmp_path: Path) -> None:
    from tests.upstreams import FakeUpstream, rss_document

    token = await fil.token()
    async with FakeUpstream() as upstream:
        upstream.add(
            "/late.xml", rss_document([{"title": "Late feed story", "link": "https://late.example/1", "guid": "1"}])
        )
        definition = {
            "id": "late-feed",
            "kind": "feed",
            "url": upstream.url("/late.xml"),
            "role": "journalist",
            "interval": "0.3s",
        }
        status, added = await call(fil, "POST", f"/api/events/{SLUG}/sources", definition, token)
        assert status == 201 and added["source"]["origin"] == "desk"
        for _ in range(200):
            items = (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"]
            if items:
                break
            await asyncio.sleep(0.05)
        assert [i["title"] for i in items] == ["Late feed story"]
        desk = (await call(fil, "GET", f"/api/events/{SLUG}/desk", token=token))[1]
        late = next(s for s in desk["sources"] if s["id"] == "late-feed")
        assert late["state"] == "ok" and late["items_seen"] == 1 and late["last_success_at"]
        assert next(s for s in desk["sources"] if s["id"] == "wire")["origin"] == "sources.yaml"
        # wrong definitions are refused with the key named; a sources.yaml source is not removed here
        for bad, key in (
            ({"id": "x", "kind": "feed", "url": "ftp://x", "role": "editorial"}, "url"),
            ({"id": "wire", "kind": "feed", "url": "https://x.example/f", "role": "editorial"}, "id"),
            ({"id": "y", "kind": "feed", "url": "https://x.example/f", "role": "wizard"}, "role"),
        ):
            status, answer = await call(fil, "POST", f"/api/events/{SLUG}/sources", bad, token)
            assert status == 400 and answer["error"].startswith(key), (bad, answer)
        assert (await call(fil, "DELETE", f"/api/events/{SLUG}/sources/wire", token=token))[0] == 400
        # removing stops polling; the items stay
        polled = upstream.hits("/late.xml")
        await asyncio.sleep(1.0)
        assert upstream.hits("/late.xml") > polled  # it is being polled...
        assert (await call(fil, "DELETE", f"/api/events/{SLUG}/sources/late-feed", token=token))[0] == 200
        hits = upstream.hits("/late.xml")
        await asyncio.sleep(1.0)
        assert upstream.hits("/late.xml") == hits
        assert [i["title"] for i in (await call(fil, "GET", f"/api/events/{SLUG}/items"))[1]["items"]] == [
            "Late feed story"
        ]
        trail = [e["action"] for e in (await call(fil, "GET", f"/api/events/{SLUG}/audit", token=token))[1]["entries"]]
        assert trail[:2] == ["remove-source", "add-source"]


async def test_sources_added_from_the_desk_survive_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_WIRE_SECRET", SECRET)
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: API_WIRE_SECRET\n        role: other\n"
    )
    # a loopback URL nobody answers: the test makes no request beyond this machine
    definition = {"id": "rider", "kind": "feed", "url": "http://127.0.0.1:9/rider.xml", "role": "athlete"}
    first = await start_fil(sources, tmp_path / "data")
    try:
        token = await first.token()
        assert (await call(first, "POST", f"/api/events/{SLUG}/sources", definition, token))[0] == 201
    finally:
        await first.stop()
    again = await start_fil(sources, tmp_path / "data")
    try:
        desk = (await call(again, "GET", f"/api/events/{SLUG}/desk", token=token))[1]
        assert {s["id"]: s["origin"] for s in desk["sources"]} == {"wire": "sources.yaml", "rider": "desk"}
    finally:
        await again.stop()

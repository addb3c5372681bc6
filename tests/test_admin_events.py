"""Admins create, change and close events from the desk; editors cannot; the changes survive a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.auth import create_editor, create_token
from tests.conftest import RunningFil, start_fil
from tests.test_editor_api import SLUG, call, fil, push  # noqa: F401 - fixture


async def admin_token(fil: RunningFil) -> str:  # noqa: F811
    await create_editor(fil.fil.store, "chief", "another long password", "admin")  # type: ignore[arg-type]
    return await create_token(fil.fil.store, "chief")  # type: ignore[arg-type]


async def test_only_admins_create_or_change_events(fil: RunningFil) -> None:  # noqa: F811
    editor = await fil.token()
    for token, code in ((None, 401), ("not-a-token", 401), (editor, 403)):
        assert (await call(fil, "POST", "/api/events", {"slug": "x", "title": "X"}, token))[0] == code
        assert (await call(fil, "PATCH", f"/api/events/{SLUG}", {"status": "closed"}, token))[0] == code
    assert [e["status"] for e in (await call(fil, "GET", "/api/events"))[1]["events"]] == ["live"]
    assert (await call(fil, "GET", "/api/events/x/items"))[0] == 404
    # the desk's front page shows the event forms to admins only
    status, front = await call(fil, "GET", "/editor/", token=editor)
    assert status == 200 and SLUG in front and 'id="new-event"' not in front and "admin.js" not in front
    status, front = await call(fil, "GET", "/editor/", token=await admin_token(fil))
    assert status == 200 and 'id="new-event"' in front and 'id="new-editor"' in front


async def test_an_admin_prepares_an_event_as_a_draft_then_opens_it(fil: RunningFil) -> None:  # noqa: F811
    token = await admin_token(fil)
    definition = {"slug": "tonight", "title": "Election night", "language": "fr", "status": "draft"}
    status, made = await call(fil, "POST", "/api/events", definition, token)
    assert status == 201, made
    assert made["event"]["origin"] == "desk" and made["event"]["timezone"] == "UTC"
    # a draft: editors prepare it, readers cannot see it yet
    assert (await call(fil, "GET", "/events/tonight"))[0] == 404
    assert "tonight" not in {e["slug"] for e in (await call(fil, "GET", "/api/events"))[1]["events"]}
    editor = await fil.token()
    assert (await call(fil, "GET", "/api/events/tonight/queue", token=editor))[0] == 200
    # a source added from the desk to the new event, then opened to readers
    source = {"id": "tonight-wire", "kind": "feed", "url": "http://127.0.0.1:9/wire.xml", "role": "editorial"}
    assert (await call(fil, "POST", "/api/events/tonight/sources", source, editor))[0] == 201
    status, opened = await call(fil, "PATCH", "/api/events/tonight", {"status": "live"}, token)
    assert status == 200 and opened["event"]["status"] == "live" and opened["event"]["sources"] == ["tonight-wire"]
    status, page = await call(fil, "GET", "/events/tonight")
    assert status == 200 and "Election night" in page and 'lang="fr"' in page
    assert (await call(fil, "POST", "/api/events", {"slug": "tonight", "title": "Again"}, token))[0] == 409
    assert (await call(fil, "POST", "/api/events", {"slug": SLUG, "title": "Again"}, token))[0] == 409
    trail = (await call(fil, "GET", "/api/events/tonight/audit", token=token))[1]["entries"]
    assert [(e["action"], e["editor"]) for e in trail] == [
        ("event-settings", "chief"),
        ("add-source", "ops"),
        ("event-settings", "chief"),
    ]
    assert trail[0]["detail"]["before"] == {"title": "Election night", "language": "fr", "status": "draft"}


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"slug": "Bad Slug", "title": "X"}, "slug"),
        ({"title": "No slug"}, "slug"),
        ({"slug": "no-title"}, "title"),
        ({"slug": "x", "title": "X", "timezone": "Mars/Olympus"}, "timezone"),
        ({"slug": "x", "title": "X", "status": "finished"}, "status"),
        ({"slug": "x", "title": "X", "colour": "red"}, "colour"),
        ({"slug": "x", "title": "X", "keywords": {"block": "casino"}}, "keywords"),
        (["not", "an", "object"], ""),
    ],
)
async def test_a_wrong_event_is_refused_naming_the_key(fil: RunningFil, body: object, key: str) -> None:  # noqa: F811
    status, answer = await call(fil, "POST", "/api/events", body, await admin_token(fil))
    assert status == 400 and answer["error"].startswith(key), answer
    assert {e["slug"] for e in (await call(fil, "GET", "/api/events"))[1]["events"]} == {SLUG}


async def test_closing_a_sources_yaml_event_from_the_desk_and_handing_it_back(fil: RunningFil) -> None:  # noqa: F811
    token = await admin_token(fil)
    await push(fil, "a")
    status, closed = await call(
        fil, "PATCH", f"/api/events/{SLUG}", {"status": "closed", "title": "Stage 1 (final)"}, token
    )
    assert status == 200, closed
    event = closed["event"]
    assert (event["origin"], event["status"], event["title"]) == ("sources.yaml", "closed", "Stage 1 (final)")
    assert (
        event["desk"]["settings"] == {"status": "closed", "title": "Stage 1 (final)"} and event["desk"]["by"] == "chief"
    )
    listed = (await call(fil, "GET", "/api/events"))[1]["events"]
    assert [(e["slug"], e["status"], e["title"]) for e in listed] == [(SLUG, "closed", "Stage 1 (final)")]
    # the timeline stays readable, as an archive (no live connection), offered for download
    status, page = await call(fil, "GET", f"/events/{SLUG}")
    assert status == 200 and 'data-status="closed"' in page and "has ended" in page
    assert f'href="/events/{SLUG}/archive.html" download' in page
    assert (await call(fil, "GET", f"/events/{SLUG}/archive.json"))[0] == 200
    assert event["sources"] == ["wire"]
    assert (await call(fil, "PATCH", f"/api/events/{SLUG}", {"status": "over"}, token))[0] == 400
    assert (await call(fil, "PATCH", f"/api/events/{SLUG}", {"slug": "renamed"}, token))[0] == 400
    assert (await call(fil, "PATCH", "/api/events/nope", {"status": "closed"}, token))[0] == 404
    # null hands a key back to the file
    status, back = await call(fil, "PATCH", f"/api/events/{SLUG}", {"status": None, "title": None}, token)
    assert status == 200 and (back["event"]["status"], back["event"]["title"]) == ("live", "Stage 1")


async def test_desk_events_and_changes_survive_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"events:\n  - slug: {SLUG}\n    title: Stage 1\n")
    first = await start_fil(sources, tmp_path / "data")
    try:
        token = await admin_token(first)
        assert (await call(first, "POST", "/api/events", {"slug": "rest-day", "title": "Rest day"}, token))[0] == 201
        assert (await call(first, "PATCH", f"/api/events/{SLUG}", {"status": "closed"}, token))[0] == 200
    finally:
        await first.stop()
    again = await start_fil(sources, tmp_path / "data")
    try:
        listed = (await call(again, "GET", "/api/events"))[1]["events"]
        assert {e["slug"]: e["status"] for e in listed} == {SLUG: "closed", "rest-day": "live"}
    finally:
        await again.stop()

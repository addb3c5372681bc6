"""Push ingest over real HTTP: signatures, rotation, validation, size cap, updates, readers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from curation.collectors.push import sign
from tests.conftest import RunningFil, start_fil
from tests.test_live_e2e import next_message

SLUG = "stage-1"
SECRET, NEXT_SECRET = "s3cret-one", "s3cret-two"


def item(n: int, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": f"wire-{n}",
        "url": f"https://wire.example/{n}",
        "title": f"Wire {n}",
        "text": f"Flash {n}: the breakaway has 4 minutes.",
        "published_at": "2027-07-12T12:00:00Z",
        "author": {"name": "Agency", "handle": "@agency", "url": "https://wire.example/", "avatar": None},
        "media": [{"type": "image", "url": f"https://img.wire.example/{n}.jpg", "alt": "the breakaway"}],
    }
    fields.update(extra)
    return fields


@pytest.fixture
async def fil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningFil]:
    monkeypatch.setenv("WIRE_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: WIRE_SECRET\n        role: editorial\n"
        "      - id: unset\n        kind: push\n        secret_env: NOT_SET_ANYWHERE\n        role: editorial\n"
    )
    running = await start_fil(tmp_path / "sources.yaml", tmp_path / "data")
    yield running
    await running.stop()


async def post(
    fil: RunningFil,
    body: bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    source: str = "wire",
    signature: str | None = None,
) -> tuple[int, dict[str, Any]]:
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "X-Fil-Timestamp": str(ts),
        "X-Fil-Signature": signature or sign(secret, ts, body),
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fil.base}/api/ingest/{source}", data=body, headers=headers) as response:
            return response.status, await response.json()


def batch(*items: dict[str, Any]) -> bytes:
    return json.dumps({"items": list(items)}).encode()


async def items(fil: RunningFil) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fil.base}/api/events/{SLUG}/items") as response:
            return (await response.json())["items"]  # type: ignore[no-any-return]


async def test_a_signed_batch_reaches_readers_and_the_same_id_updates(fil: RunningFil) -> None:
    async with connect(f"{fil.ws_base}/api/events/{SLUG}/live") as ws:
        await next_message(ws, "hello")
        assert await post(fil, batch(item(1), item(2))) == (202, {"accepted": 2})
        first = [await next_message(ws, "upsert") for _ in range(2)]
        assert {m["item"]["title"] for m in first} == {"Wire 1", "Wire 2"}
        assert first[0]["item"]["source"] == {"id": "wire", "kind": "push", "label": "wire"}
        assert first[0]["item"]["media"][0]["alt"] == "the breakaway"
        # the same batch again changes nothing; a corrected item updates in place
        assert (await post(fil, batch(item(1), item(2))))[0] == 202
        assert (await post(fil, batch(item(2, text="Flash 2: the gap is now 5 minutes."))))[0] == 202
        update = await next_message(ws, "upsert")
        assert update["item"]["title"] == "Wire 2" and update["item"]["version"] == 2
        assert "5 minutes" in update["item"]["text"]
    assert len(await items(fil)) == 2


async def test_both_secrets_work_during_a_rotation(fil: RunningFil, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIRE_SECRET", f"{SECRET}, {NEXT_SECRET}")
    assert (await post(fil, batch(item(1)), secret=SECRET))[0] == 202
    assert (await post(fil, batch(item(2)), secret=NEXT_SECRET))[0] == 202
    monkeypatch.setenv("WIRE_SECRET", NEXT_SECRET)
    status, answer = await post(fil, batch(item(3)), secret=SECRET)
    assert status == 401 and "does not match" in answer["error"]


async def test_bad_stale_and_missing_signatures_get_401_and_nothing_is_taken(fil: RunningFil) -> None:
    body = batch(item(1))
    stale = int(time.time()) - 600
    for kwargs in (
        {"secret": "wrong"},
        {"timestamp": stale},  # a replay outside the window, correctly signed for its timestamp
        {"timestamp": int(time.time()) + 600},
        {"signature": "sha1=abc"},
        {"signature": "sha256="},
    ):
        status, answer = await post(fil, body, **kwargs)
        assert status == 401, kwargs
        assert "X-Fil" in answer["error"] or "match" in answer["error"]
    assert await items(fil) == []


async def test_a_malformed_item_names_its_field_and_the_batch_is_refused(fil: RunningFil) -> None:
    cases = {
        "items[1].url": batch(item(1), item(2, url="javascript:alert(1)")),
        "items[0].published_at": batch(item(1, published_at="yesterday")),
        "items[0].id": batch(item(1, id=42)),
        "items[2].text": batch(item(1), item(2), item(3, text=None)),
        "items[0].media[0].type": batch(item(1, media=[{"type": "gif", "url": "https://x.example/a.gif"}])),
        "items[0].kind": batch(item(1, kind="tweet")),
        "items:": json.dumps({"things": []}).encode(),
        "body:": b"not json",
    }
    for field, body in cases.items():
        status, answer = await post(fil, body)
        assert status == 400 and answer["error"].startswith(field), (field, answer)
    assert await items(fil) == []
    status, answer = await post(fil, batch(*[item(n) for n in range(101)]))
    assert status == 400 and "100" in answer["error"]


async def test_oversize_bodies_get_413(fil: RunningFil) -> None:
    huge = batch(item(1, text="x" * (1024 * 1024)))
    status, answer = await post(fil, huge)
    assert status == 413 and "larger" in answer["error"]


async def test_unknown_source_and_missing_secret(fil: RunningFil) -> None:
    assert (await post(fil, batch(item(1)), source="nope"))[0] == 404
    status, answer = await post(fil, batch(item(1)), source="unset")
    assert status == 503 and "NOT_SET_ANYWHERE" in answer["error"]


async def test_hostile_html_is_sanitized_and_status_is_visible(fil: RunningFil) -> None:
    hostile = item(
        1,
        text=None,
        html='<p onmouseover="x()">Hi<script>alert(1)</script><a href="javascript:alert(2)">x</a></p>',
        author={"name": "<img src=x onerror=alert(3)>Agency"},
    )
    assert (await post(fil, batch(hostile)))[0] == 202
    (stored,) = await items(fil)
    blob = json.dumps(stored)
    for bad in ("<script", "onmouseover", "javascript:", "onerror"):
        assert bad not in blob
    sources = {s["id"]: s for s in (await fil.sources())["sources"]}

    assert sources["wire"]["state"] == "ok" and sources["wire"]["items_seen"] == 1

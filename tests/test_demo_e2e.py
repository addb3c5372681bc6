"""The offline demo over the real path: replay upstream -> collectors -> store -> hub -> a live reader."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import connect

from tests.conftest import start_fil
from tests.test_live_e2e import WAIT, next_message

SLUG = "demo-tour-stage"


async def items(base: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/events/{SLUG}/items?limit=200") as response:
            return (await response.json())["items"]  # type: ignore[no-any-return]


async def test_the_demo_interleaves_articles_mastodon_and_bluesky_posts_and_keeps_growing(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text("events: []\n")
    fil = await start_fil(sources, tmp_path / "data", demo=True, demo_release_every=0.5, allow_private_hosts=False)
    try:
        first: list[dict[str, Any]] = []
        for _ in range(int(WAIT / 0.1)):
            first = await items(fil.base)
            if {"feed", "mastodon", "bluesky"} <= {i["source"]["kind"] for i in first}:
                break
            await asyncio.sleep(0.1)
        kinds = {i["source"]["kind"] for i in first}
        roles = {i["role"] for i in first}
        assert {"feed", "mastodon", "bluesky"} <= kinds, kinds
        assert {"editorial", "journalist", "athlete"} <= roles, roles
        social = [i for i in first if i["source"]["kind"] in ("mastodon", "bluesky")]
        assert all(i["author"]["name"] and i["author"]["handle"] and i["author"]["url"] for i in social)
        async with connect(f"{fil.ws_base}/api/events/{SLUG}/live?since=0") as ws:
            hello = await next_message(ws, "hello")
            seen: dict[str, int] = {}
            ops: list[str] = []
            # the timeline grows while we watch, and at least one edit and one delete happen
            while not ({"upsert", "remove"} <= set(ops) and any(v > 1 for v in seen.values())):
                message = json.loads(await asyncio.wait_for(ws.recv(), WAIT * 3))
                if message["seq"] <= hello["seq"]:
                    continue
                ops.append(message["type"])
                if message["type"] == "upsert":
                    seen[message["item"]["id"]] = message["item"]["version"]
        assert len(await items(fil.base)) > len(first) - ops.count("remove")
        # the demo's loopback upstream is trusted by the demo alone: production defaults stay
        assert fil.fil.settings.allow_private_hosts is False
        assert fil.fil.fetcher.trusted_origins and all(
            o.startswith("127.0.0.1:") for o in fil.fil.fetcher.trusted_origins
        )
    finally:
        await fil.stop()

"""The command line as an operator uses it: `check` and `inspect` in a real process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.upstreams import FakeUpstream, rss_document, upstream  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_check_accepts_the_shipped_sources_file() -> None:
    result = run("check")
    assert result.returncode == 0, result.stderr
    assert "sources.yaml: ok" in result.stderr


def test_check_names_file_line_and_key_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "events:\n"
        "  - slug: Stage_1\n"
        "    title: Stage\n"
        "    sources:\n"
        "      - id: desk\n"
        "        kind: feed\n"
        "        url: ftp://example.org/feed\n"
        "        role: editorial\n"
        "        interval: 5s\n"
        "        colour: red\n"
    )
    result = run("check", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert f"{bad}:2: events[0].slug:" in lines[0]
    assert any(line.startswith(f"{bad}:7: events[0].sources[0].url: not an http(s) URL") for line in lines)
    assert any(f"{bad}:9: events[0].sources[0].interval:" in line and "floor" in line for line in lines)
    assert any(f"{bad}:10: events[0].sources[0].colour: unknown key" in line for line in lines)


def test_check_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "nope.yaml" in result.stderr


def test_server_refuses_to_start_on_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "events:\n  - slug: x\n    title: X\n    sources: [{id: a, kind: feed, url: 'nope', role: editorial}]\n"
    )
    result = run(env={"CURATION_SOURCES": str(bad), "CURATION_STORE": f"sqlite:///{tmp_path}/fil.db"})
    assert result.returncode == 2
    assert f"{bad}:4: events[0].sources[0].url: not an http(s) URL" in result.stderr


def test_inspect_prints_one_json_line_per_item_and_goes_on_after_failures(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"this is not a feed at all")
    empty = tmp_path / "empty.xml"
    empty.write_bytes(rss_document([]))
    feed = FEEDS / "youtube_channel_tagesschau.xml"
    result = run("inspect", str(broken), str(feed), str(tmp_path / "missing.xml"), str(empty))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_input: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        by_input.setdefault(str(line["input"]), []).append(line)
    assert "error" in by_input[str(broken)][0]
    assert "error" in by_input[str(tmp_path / "missing.xml")][0]
    assert by_input[str(empty)] == [{"input": str(empty), "items": 0}]
    videos = by_input[str(feed)]
    assert len(videos) == 2 and all(v["url"] and v["title"] for v in videos)
    assert list(by_input) == [str(broken), str(feed), str(tmp_path / "missing.xml"), str(empty)]


async def arun(*args: str, env: dict[str, str]) -> str:
    """Like run(), without blocking the loop that serves the fake upstream."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "app.py", *args, cwd=ROOT, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
    return stdout.decode()


async def test_inspect_urls_obey_the_private_address_rule(upstream: FakeUpstream) -> None:  # noqa: F811
    upstream.add("/feed.xml", rss_document([{"title": "One", "link": "https://x.example/1", "guid": "1"}]))
    url = upstream.url("/feed.xml")
    refused = await arun("inspect", url, env={"CURATION_ALLOW_PRIVATE_HOSTS": ""})
    (line,) = [json.loads(x) for x in refused.splitlines()]
    assert line["input"] == url and "127.0.0.1" in line["error"]
    assert upstream.hits("/feed.xml") == 0
    allowed = await arun("inspect", url, env={"CURATION_ALLOW_PRIVATE_HOSTS": "1"})
    (line,) = [json.loads(x) for x in allowed.splitlines()]
    assert line["title"] == "One" and line["url"] == "https://x.example/1"


def test_inspect_reads_every_upstream_kind(tmp_path: Path) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    push = tmp_path / "push.json"
    push.write_text(
        json.dumps(
            {
                "items": [
                    {
                        "id": "w1",
                        "url": "https://wire.example/1",
                        "text": "Flash",
                        "published_at": "2027-07-12T12:00:00Z",
                    }
                ]
            }
        )
    )
    cases = {
        "mastodon": fixtures / "mastodon" / "account_statuses_limit5.json",
        "bluesky": fixtures / "bluesky" / "getPostThread_recordWithMedia.json",
        "jetstream": fixtures / "bluesky" / "jetstream_v1_posts.jsonl",
        "push": push,
    }
    for kind, path in cases.items():
        result = run("inspect", "--kind", kind, str(path))
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert lines and all("error" not in line and line.get("key") for line in lines), (kind, lines[:1])
    statuses = json.loads(cases["mastodon"].read_text())
    assert len(
        [json.loads(x) for x in run("inspect", "--kind", "mastodon", str(cases["mastodon"])).stdout.splitlines()]
    ) == len(statuses)
    wrong = run("inspect", "--kind", "mastodon", str(cases["jetstream"]))
    assert "error" in json.loads(wrong.stdout.splitlines()[0])

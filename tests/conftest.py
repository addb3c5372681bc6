"""Shared fixtures and helpers: sample data, a store per backend, a real Fil server on 127.0.0.1, an HTML tag reader."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import uvicorn

if TYPE_CHECKING:
    from curation.service import Fil

from curation.config import Settings
from curation.models import Author, Entry, Event, ItemKind, Moderation, Role, Source, SourceKind
from curation.store import Store, open_store
from tests.redis_server import RedisServer

T0 = datetime(2027, 7, 12, 12, 0, tzinfo=UTC)


def make_entry(
    key: str,
    *,
    title: str | None = None,
    text: str = "",
    url: str | None = None,
    published: datetime | None = T0,
    updated: datetime | None = None,
) -> Entry:
    title = title if title is not None else f"Title {key}"
    body = text or f"Body of {key}"
    return Entry(
        key=key,
        kind=ItemKind.ARTICLE,
        url=url if url is not None else f"https://news.example/{key}",
        title=title,
        text=body,
        html=f"<p>{body}</p>",
        content_hash=hashlib.sha256(f"{title}\0{body}".encode()).hexdigest(),
        author=Author(name="Desk"),
        published_at=published,
        updated_at=updated,
    )


def make_source(source_id: str = "desk", **overrides: object) -> Source:
    values: dict[str, object] = dict(
        id=source_id,
        kind=SourceKind.FEED,
        role=Role.EDITORIAL,
        label=source_id.title(),
        moderation=Moderation.AUTO,
        url=f"https://news.example/{source_id}.rss",
    )
    values.update(overrides)
    return Source(**values)  # type: ignore[arg-type]


def make_event(slug: str = "stage-1", sources: tuple[str, ...] = ("desk",), **overrides: object) -> Event:
    values: dict[str, object] = dict(slug=slug, title=f"Event {slug}", sources=sources)
    values.update(overrides)
    return Event(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole run; each test keeps its keys under its own prefix."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server with a key prefix of this test's own."""
    return f"{redis_server.url}?prefix=test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store on each backend."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = f"sqlite:///{tmp_path}/fil.db"
    backend = open_store(url, log_retention=50)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningFil:
    """A real Fil (uvicorn, Fil's websocket protocol) serving on 127.0.0.1 inside the test's loop."""

    base: str
    fil: Fil
    server: uvicorn.Server
    task: asyncio.Task[None] = field(repr=False)
    _token: str | None = field(default=None, repr=False)

    @property
    def ws_base(self) -> str:
        return self.base.replace("http://", "ws://", 1)

    async def token(self) -> str:
        """A bearer token of an editor made for the test (editor-only routes such as /api/sources)."""
        if self._token is None:
            from curation.auth import create_editor, create_token

            await create_editor(self.fil.store, "ops", "a long test password", "editor")  # type: ignore[arg-type]
            self._token = await create_token(self.fil.store, "ops")  # type: ignore[arg-type]
        return self._token

    async def sources(self) -> dict[str, Any]:
        """GET /api/sources as an editor."""
        headers = {"Authorization": f"Bearer {await self.token()}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{self.base}/api/sources") as response:
                assert response.status == 200, await response.text()
                return await response.json()  # type: ignore[no-any-return]

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)


async def start_fil(sources_path: Path, data: Path, **settings: object) -> RunningFil:
    from curation.server import uvicorn_config
    from curation.web import create_app

    port = free_port()
    values: dict[str, object] = dict(
        sources=str(sources_path),
        store=f"sqlite:///{data}/fil.db",
        port=port,
        allow_private_hosts=True,
        min_poll_interval=0.2,
        reload_interval=0.2,
        log_level="warning",
    )
    values.update(settings)
    settings_ = Settings(**values)  # type: ignore[arg-type]
    app = create_app(settings_)
    server = uvicorn.Server(uvicorn_config(settings_, app=app))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    assert server.started, "Fil did not start"
    # settings may name the port (a test that must know its public URL before starting passes port=)
    return RunningFil(base=f"http://127.0.0.1:{settings_.port}", fil=app.state.fil, server=server, task=task)


@pytest.fixture
def sources_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sources.yaml"
    path.write_text("events: []\n")
    yield path


def recent(seconds: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


class _StartTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    handle_startendtag = handle_starttag


def start_tags(html: str) -> list[tuple[str, dict[str, str]]]:
    """Every start tag in `html` with its attributes, as a browser-like parser sees them (sanitizer checks)."""
    parser = _StartTags()
    parser.feed(html)
    parser.close()
    return parser.tags

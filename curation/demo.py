"""The built-in demo: a replay upstream on loopback that releases a recorded live stage, entry by entry.

`make run` without internet points the real feed collector at it, so the demo goes through fetch, parse,
store and push exactly as production does. The script is data (demo_data/script.json); the formats are in
curation/demo_formats.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html import escape as _html
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from curation.demo_formats import FORMATS, Persona, Post, Site, Step, post_page, render_page, svg_avatar, svg_photo
from curation.errors import ConfigError
from curation.models import Event, EventStatus, Moderation, Order, Role, Source, SourceKind

SCRIPT_PATH = Path(__file__).parent / "demo_data" / "script.json"
EVENT_SLUG = "demo-tour-stage"
EVENT_TITLE = "Tour de France, stage 14 (demo)"
#: built in code, so exempt from CURATION_MIN_POLL_INTERVAL: the page must move within seconds
POLL_INTERVAL = 5.0
#: above every document's cap, so the first fetch shows the whole first batch
BACKFILL = 50
#: newest entries per document, as the real upstreams cap them (Mastodon 20 by default, bskyweb 30)
DOC_LIMITS = {"rss": 30, "mastodon": 20, "bluesky": 30, "jsonfeed": 20}
#: how far back a permalink is still found
PERMALINK_DEPTH = 200


@dataclass(frozen=True, slots=True)
class Script:
    """The recorded stage: who publishes, what, in which order, and the placeholder pictures."""

    personas: tuple[Persona, ...]
    steps: tuple[Step, ...]
    #: the first `initial` steps are released at once, dated `ago` minutes before the start
    initial: int
    #: image name -> (caption, hue)
    images: Mapping[str, tuple[str, int]]


def load_script(path: Path = SCRIPT_PATH) -> Script:
    """Read and check the recorded script.

    Raises:
        ConfigError: naming the file and the key that is wrong.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    personas = tuple(_persona(path, i, raw) for i, raw in enumerate(data["personas"]))
    images = {name: (str(raw["caption"]), int(raw["hue"])) for name, raw in data["images"].items()}
    keys = {p.key for p in personas}
    sources: dict[str, str] = {}
    steps: list[Step] = []
    for index, raw in enumerate(data["steps"]):
        step = _step(path, index, raw, sources)
        if step.source not in keys:
            raise ConfigError(f"unknown source {step.source!r}", path=str(path), key=f"steps[{index}].source")
        if step.image is not None and step.image not in images:
            raise ConfigError(f"unknown image {step.image!r}", path=str(path), key=f"steps[{index}].image")
        if step.edit_of is None:
            sources[step.id] = step.source
        steps.append(step)
    initial = int(data["initial"])
    for step in steps[:initial]:
        if step.ago is None or step.edit_of is not None:
            raise ConfigError(
                "the first batch needs new entries with `ago`", path=str(path), key=f"steps[{step.index}]"
            )
    return Script(personas=personas, steps=tuple(steps), initial=initial, images=images)


def _persona(path: Path, index: int, raw: Mapping[str, Any]) -> Persona:
    if raw["format"] not in FORMATS:
        raise ConfigError(f"unknown format {raw['format']!r}", path=str(path), key=f"personas[{index}].format")
    return Persona(
        key=str(raw["key"]),
        format=str(raw["format"]),
        role=Role(raw["role"]),
        label=str(raw["label"]),
        name=str(raw["name"]),
        bio=str(raw["bio"]),
        color=str(raw["color"]),
        handle=str(raw.get("handle", "")),
        path=str(raw.get("path", "")),
    )


def _step(path: Path, index: int, raw: Mapping[str, Any], sources: Mapping[str, str]) -> Step:
    edit_of = raw.get("edit")
    if edit_of is not None and edit_of not in sources:
        # an edit must follow its entry, so the replay meets the entry first within each cycle
        raise ConfigError(f"edit of unknown or later entry {edit_of!r}", path=str(path), key=f"steps[{index}].edit")
    ago = raw.get("ago")
    return Step(
        index=index,
        id=str(edit_of if edit_of is not None else raw["id"]),
        source=sources[edit_of] if edit_of is not None else str(raw["source"]),
        text=str(raw["text"]),
        title=raw.get("title"),
        edit_of=edit_of,
        ago=float(ago) if ago is not None else None,
        image=raw.get("image"),
        alt=raw.get("alt"),
        category=raw.get("category"),
        creator=raw.get("creator"),
        tags=tuple(raw.get("tags", ())),
    )


class Replay:
    """The release schedule, pure: which posts exist `elapsed` seconds after the start.

    Step `seq` of the endless replay (cycle = seq // len(steps)) is released at once for the first batch,
    then every `every` seconds; live posts are dated at their release, so the page looks live.
    """

    def __init__(self, script: Script, every: float, started: datetime) -> None:
        self.script = script
        self.every = every
        self.started = started
        # a run-unique prefix: a store kept across restarts meets new entries, not the old run's ids
        self.run = f"{int(started.timestamp()) % 100_000:05d}"

    def released(self, elapsed: float) -> int:
        """How many steps of the endless replay are out."""
        return self.script.initial + int(max(elapsed, 0.0) // self.every)

    def released_at(self, seq: int) -> datetime:
        return self.started + timedelta(seconds=max(0, seq - self.script.initial + 1) * self.every)

    def posts(self, persona: str, elapsed: float, limit: int) -> list[Post]:
        """The newest `limit` posts of one persona, newest first, edits applied."""
        if not any(step.source == persona for step in self.script.steps):
            return []
        size = len(self.script.steps)
        edits: dict[tuple[int, str], int] = {}
        found: list[Post] = []
        seq = self.released(elapsed) - 1
        while seq >= 0 and len(found) < limit:
            cycle, step = seq // size, self.script.steps[seq % size]
            if step.edit_of is not None:
                edits.setdefault((cycle, step.edit_of), seq)  # walking backwards: the first seen is the latest
            elif step.source == persona:
                found.append(self._post(seq, step, edits.get((cycle, step.id))))
            seq -= 1
        return found

    def _post(self, seq: int, step: Step, edit_seq: int | None) -> Post:
        cycle = seq // len(self.script.steps)
        released = self.released_at(seq)
        published = released
        if cycle == 0 and step.ago is not None and step.index < self.script.initial:
            published = self.started - timedelta(minutes=step.ago)
        edit = self.script.steps[edit_seq % len(self.script.steps)] if edit_seq is not None else None
        return Post(
            step=step,
            seq=seq,
            cycle=cycle,
            number=f"{self.run}{seq:04d}",
            published=published,
            changed=self.released_at(edit_seq) if edit_seq is not None else released,
            title=edit.title if edit is not None and edit.title is not None else step.title,
            text=edit.text if edit is not None else step.text,
            edited=edit is not None,
        )


class DemoUpstream:
    """A loopback HTTP server replaying the recorded stage in each source's real wire format.

    Usage: `base = await demo.start(); event, sources = demo.config()`; the fetcher must trust `demo.origin`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        release_every: float = 6.0,
        wall_clock: Callable[[], float] = time.time,
        script: Script | None = None,
    ) -> None:
        if release_every <= 0:
            raise ValueError(f"release_every must be positive, got {release_every}")
        self.script = script or load_script()
        self.release_every = release_every
        self._clock = clock
        self._wall_clock = wall_clock
        self._by_key = {p.key: p for p in self.script.personas}
        self._images: dict[str, bytes] = {n: svg_photo(n, c, h) for n, (c, h) in self.script.images.items()}
        self._images.update({p.avatar: svg_avatar(p) for p in self.script.personas})
        self._runner: web.AppRunner | None = None
        self._site: Site | None = None
        self._replay: Replay | None = None
        self._t0 = 0.0

    async def start(self) -> str:
        """Listen on 127.0.0.1 (a free port) and start the clock; returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("DemoUpstream is already started")
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        except BaseException:
            await runner.cleanup()
            raise
        host, port = runner.addresses[0][:2]
        self._runner = runner
        self._site = Site(base=f"http://{host}:{port}", images=self._images)
        self._t0 = self._clock()
        self._replay = Replay(self.script, self.release_every, datetime.fromtimestamp(self._wall_clock(), UTC))
        return self._site.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = self._replay = None

    @property
    def origin(self) -> str:
        """ "host:port" of the upstream, as the fetcher's trusted_origins holds it."""
        return urlsplit(self._started()[0].base).netloc

    def config(self) -> tuple[Event, list[Source]]:
        """The demo event and its feed sources, pointing at this upstream."""
        site, _ = self._started()
        sources = [
            Source(
                id=f"demo-{p.key}",
                kind=SourceKind.FEED,
                role=p.role,
                label=p.label,
                moderation=Moderation.AUTO,
                url=site.base + p.doc_path,
                interval=POLL_INTERVAL,
                backfill=BACKFILL,
            )
            for p in self.script.personas
        ]
        event = Event(
            slug=EVENT_SLUG,
            title=EVENT_TITLE,
            language="en",
            timezone=_race_timezone(),
            order=Order.NEWEST,
            status=EventStatus.LIVE,
            sources=tuple(s.id for s in sources),
        )
        return event, sources

    def _started(self) -> tuple[Site, Replay]:
        if self._site is None or self._replay is None:
            raise RuntimeError("DemoUpstream is not started: await start() first")
        return self._site, self._replay

    def _elapsed(self) -> float:
        return self._clock() - self._t0

    def _app(self) -> web.Application:
        app = web.Application()
        for persona in self.script.personas:
            app.router.add_get(persona.doc_path, self._document_handler(persona))
        app.router.add_get("/", self._index)
        app.router.add_get("/img/{name}.svg", self._image)
        app.router.add_get("/profile/{ident}/rss", self._bluesky_handle)
        app.router.add_get("/news/{number}/{slug}", self._permalink)
        app.router.add_get("/team/news/{number}/{slug}", self._permalink)
        app.router.add_get("/@{user}/{status}", self._permalink)
        return app

    def _document_handler(self, persona: Persona) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            site, replay = self._started()
            posts = replay.posts(persona.key, self._elapsed(), DOC_LIMITS[persona.format])
            fmt = FORMATS[persona.format]
            changed = max((p.changed for p in posts), default=replay.started)
            return _conditional(request, fmt.render(site, persona, posts), fmt.content_type, changed)

        return handler

    async def _bluesky_handle(self, request: web.Request) -> web.StreamResponse:
        """bsky.app answers a handle's feed with a 302 to the DID's; the DIDs' own routes are registered first."""
        ident = request.match_info["ident"]
        for persona in self.script.personas:
            if persona.format == "bluesky" and persona.handle == ident:
                raise web.HTTPFound(persona.doc_path)
        raise web.HTTPNotFound(text=f"account not found: {ident}")

    async def _image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = self._images.get(name)
        if body is None:
            raise web.HTTPNotFound(text=f"no demo image {name!r}")
        headers = {"Cache-Control": "public, max-age=86400"}
        return _conditional(request, body, "image/svg+xml", self._started()[1].started, headers)

    async def _permalink(self, request: web.Request) -> web.StreamResponse:
        site, replay = self._started()
        for persona in self.script.personas:
            link = FORMATS[persona.format].link
            for post in replay.posts(persona.key, self._elapsed(), PERMALINK_DEPTH):
                if urlsplit(link(site, persona, post)).path == request.path:
                    return web.Response(body=post_page(site, persona, post), content_type="text/html", charset="utf-8")
        raise web.HTTPNotFound(text=f"no demo post at {request.path}")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        rows = "".join(
            f'<li><a href="{p.doc_path}">{_html(p.label)}</a> ({_html(p.role)}, {_html(p.format)})</li>'
            for p in self.script.personas
        )
        body = f"<h1>{_html(EVENT_TITLE)}</h1><p>Fil's built-in replay upstream. Documents:</p><ul>{rows}</ul>"
        return web.Response(body=render_page(EVENT_TITLE, body), content_type="text/html", charset="utf-8")


def _race_timezone() -> str:
    """Race-local time when the machine has the zone database, else UTC (a slim image may lack tzdata)."""
    try:
        ZoneInfo("Europe/Paris")
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return "Europe/Paris"


def _conditional(
    request: web.Request,
    body: bytes,
    content_type: str,
    changed: datetime,
    extra: Mapping[str, str] | None = None,
) -> web.Response:
    """200 with validators, or 304 when the client's If-None-Match / If-Modified-Since still holds."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Last-Modified": format_datetime(changed.astimezone(UTC), usegmt=True), **(extra or {})}
    if _not_modified(request, etag, changed):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def _not_modified(request: web.Request, etag: str, changed: datetime) -> bool:
    match = request.headers.get("If-None-Match")
    if match is not None:  # RFC 9110 §13.1.3: If-None-Match wins, If-Modified-Since is then ignored
        tags = {tag.strip().removeprefix("W/") for tag in match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("If-Modified-Since")
    if not since:
        return False
    try:
        moment = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # HTTP dates have whole seconds: a change within the same second as the client's date counts as seen
    return int(changed.timestamp()) <= moment.timestamp()

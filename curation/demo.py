"""The built-in demo: a replay upstream on loopback that releases a recorded live stage, post by post.

`make run` without internet points the real collectors at it: the newsroom's RSS and the team's JSON Feed go
through the feed collector, the reporters through the Mastodon REST API and the riders through the Bluesky
AppView and Jetstream, all served here, so the demo goes through fetch, parse, store and push exactly as
production does. The script is data (demo_data/script.json); the wire shapes are in curation/demo_formats.py
(documents) and curation/demo_social.py (APIs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html import escape as _html
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler
from multidict import MultiMapping

from curation.demo_formats import (
    FORMATS,
    Persona,
    Post,
    Site,
    hashtags,
    mastodon_html,
    post_page,
    render_page,
    svg_avatar,
    svg_photo,
)
from curation.demo_replay import Replay, Script, load_script
from curation.demo_social import (
    POST_COLLECTION,
    account_id,
    at_uri,
    bluesky_image,
    dump,
    iso_us,
    jetstream_create,
    jetstream_delete,
    mastodon_account,
    mastodon_instance,
    mastodon_status,
    post_view,
    profile_detailed,
    status_id,
)
from curation.models import Event, EventStatus, Moderation, Order, Source, SourceKind

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
#: how many statuses / posts of one account the APIs can page through
HISTORY = 400
#: Mastodon's limit_param: default, and at most twice that
MASTODON_LIMIT = 20
#: app.bsky.feed.getAuthorFeed: default and maximum `limit`
APPVIEW_LIMIT, APPVIEW_MAX = 50, 100
#: Mastodon's default: 300 API requests per 5-minute window (rack-attack); the two reporters polled every 5 s
#: take about 120 of them
RATE_PERIOD = 300
RATE_LIMIT = 300
#: how often an open Jetstream socket checks the (injectable) clock for new releases, in seconds at most
STREAM_POLL = 0.5
#: accounts/:id/statuses keeps these in its Link header (Rails sorts query keys)
_LINK_KEEPS = ("limit", "only_media", "exclude_replies", "exclude_reblogs", "pinned", "tagged")
_AUTHOR_FEED_FILTERS = ("posts_with_replies", "posts_no_replies", "posts_with_media", "posts_and_author_threads")
_NOT_FOUND = {"error": "Record not found"}
_FALSY = {"", "0", "f", "false", "off", "n", "no"}
_NSID = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+)+(\.\*)?$")
_DID = re.compile(r"^did:[a-z]+:[A-Za-z0-9._:%-]+$")


@dataclass(slots=True)
class _Subscription:
    """One Jetstream client's filters (query parameters, then `options_update` messages)."""

    collections: tuple[str, ...]
    dids: frozenset[str]
    #: requireHello: nothing is sent before the first options_update
    paused: bool = False

    def wants(self, did: str, collection: str) -> bool:
        if self.dids and did not in self.dids:
            return False
        return not self.collections or any(
            collection == c or (c.endswith(".*") and collection.startswith(c[:-1])) for c in self.collections
        )


class DemoUpstream:
    """A loopback HTTP server replaying the recorded stage in each source's real wire format.

    One server, several path prefixes: the documents (RSS, JSON Feed, account RSS), the Mastodon REST API
    (`/api/`), the Bluesky AppView (`/xrpc/`) and Jetstream (`/subscribe`).
    Usage: `base = await demo.start(); event, sources = demo.config()`; the fetcher must trust `demo.origin`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        release_every: float = 6.0,
        wall_clock: Callable[[], float] = time.time,
        script: Script | None = None,
        rate_limit: int = RATE_LIMIT,
        stream_poll: float = STREAM_POLL,
    ) -> None:
        if release_every <= 0:
            raise ValueError(f"release_every must be positive, got {release_every}")
        self.script = script or load_script()
        self.release_every = release_every
        self.rate_limit = rate_limit
        self.stream_poll = stream_poll
        self._clock = clock
        self._wall_clock = wall_clock
        self._images: dict[str, bytes] = {n: svg_photo(n, c, h) for n, (c, h) in self.script.images.items()}
        self._images.update({p.avatar: svg_avatar(p) for p in self.script.personas})
        self._by_format: dict[str, list[Persona]] = {}
        for persona in self.script.personas:
            self._by_format.setdefault(persona.format, []).append(persona)
        self._usernames = {p.handle.lower(): p for p in self._by_format.get("mastodon", [])}
        self._account_ids = {account_id(p): p for p in self._by_format.get("mastodon", [])}
        self._handles = {p.handle.lower(): p for p in self._by_format.get("bluesky", [])}
        self._actors = {**self._handles, **{p.did: p for p in self._by_format.get("bluesky", [])}}
        self._by_key = {p.key: p for p in self.script.personas}
        self._runner: web.AppRunner | None = None
        self._site: Site | None = None
        self._replay: Replay | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._rate_window = -1
        self._rate_used = 0
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
        started = datetime.fromtimestamp(self._wall_clock(), UTC)
        self._replay = Replay(self.script, self.release_every, started, self._site)
        return self._site.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._close_sockets()
            await self._runner.cleanup()
        self._runner = self._site = self._replay = None

    @property
    def origin(self) -> str:
        """ "host:port" of the upstream, as the fetcher's trusted_origins holds it (HTTP and websocket alike)."""
        return urlsplit(self._started()[0].base).netloc

    def config(self) -> tuple[Event, list[Source]]:
        """The demo event and its sources, pointing at this upstream."""
        site, _ = self._started()
        sources = [self._source(site, p) for p in self.script.personas]
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

    def _source(self, site: Site, persona: Persona) -> Source:
        """Options as curation/sources.py fills them from sources.yaml (its defaults included)."""
        kind: SourceKind = SourceKind.FEED
        url: str | None = site.base + persona.doc_path
        options: dict[str, object] = {}
        if persona.format == "mastodon":
            kind, url = SourceKind.MASTODON, None
            options = {"instance": site.base, "account": persona.handle, "replies": False, "boosts": True}
        elif persona.format == "bluesky":
            kind, url = SourceKind.BLUESKY, None
            jetstream = "ws://" + site.host + "/subscribe"
            options = {"actor": persona.handle, "appview": site.base, "jetstream": jetstream}
        return Source(
            id=f"demo-{persona.key}",
            kind=kind,
            role=persona.role,
            label=persona.label,
            moderation=Moderation.AUTO,
            url=url,
            interval=POLL_INTERVAL,
            backfill=BACKFILL,
            options=options,
        )

    def _started(self) -> tuple[Site, Replay]:
        if self._site is None or self._replay is None:
            raise RuntimeError("DemoUpstream is not started: await start() first")
        return self._site, self._replay

    def _elapsed(self) -> float:
        return self._clock() - self._t0

    def _now(self) -> datetime:
        """The upstream's wall time: the start plus the (injectable) clock's elapsed time."""
        return self._started()[1].started + timedelta(seconds=self._elapsed())

    def _posts(self, persona: Persona, limit: int = HISTORY) -> list[Post]:
        return self._started()[1].posts(persona.key, self._elapsed(), limit)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._rate_limited])
        app.on_shutdown.append(lambda _: self._close_sockets())
        for persona in self.script.personas:
            app.router.add_get(persona.doc_path, self._document_handler(persona))
        app.router.add_get("/", self._index)
        app.router.add_get("/img/{name}.svg", self._image)
        app.router.add_get("/profile/{ident}/rss", self._bluesky_handle)
        app.router.add_get("/news/{number}/{slug}", self._permalink)
        app.router.add_get("/team/news/{number}/{slug}", self._permalink)
        app.router.add_get("/@{user}/{status}", self._permalink)
        app.router.add_get("/@{user}", self._profile_page)
        app.router.add_get("/tags/{tag}", self._tag_page)
        # Mastodon REST API
        app.router.add_get("/api/v1/accounts/lookup", self._mastodon_lookup)
        app.router.add_get("/api/v1/accounts/{id}", self._mastodon_account)
        app.router.add_get("/api/v1/accounts/{id}/statuses", self._mastodon_statuses)
        app.router.add_get("/api/v1/statuses/{id}", self._mastodon_status)
        app.router.add_get("/api/v2/instance", self._mastodon_instance)
        # Bluesky AppView (XRPC) and Jetstream
        app.router.add_get("/xrpc/com.atproto.identity.resolveHandle", self._resolve_handle)
        app.router.add_get("/xrpc/app.bsky.feed.getAuthorFeed", self._author_feed)
        app.router.add_get("/xrpc/app.bsky.feed.getPosts", self._get_posts)
        app.router.add_get("/xrpc/app.bsky.actor.getProfile", self._get_profile)
        app.router.add_get("/xrpc/app.bsky.actor.getProfiles", self._get_profiles)
        app.router.add_get("/xrpc/{nsid}", self._xrpc_unknown)
        app.router.add_get("/subscribe", self._jetstream)
        return app

    # -- documents -------------------------------------------------------------------------

    def _document_handler(self, persona: Persona) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            site, replay = self._started()
            posts = self._posts(persona, DOC_LIMITS[persona.format])
            fmt = FORMATS[persona.format]
            changed = max((p.changed for p in posts), default=replay.started)
            return _conditional(request, fmt.render(site, persona, posts), fmt.content_type, changed)

        return handler

    async def _bluesky_handle(self, request: web.Request) -> web.StreamResponse:
        """bsky.app answers a handle's feed with a 302 to the DID's; the DIDs' own routes are registered first."""
        persona = self._actors.get(request.match_info["ident"].lower())
        if persona is None:
            raise web.HTTPNotFound(text=f"account not found: {request.match_info['ident']}")
        raise web.HTTPFound(persona.doc_path)

    async def _image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = self._images.get(name)
        if body is None:
            raise web.HTTPNotFound(text=f"no demo image {name!r}")
        headers = {"Cache-Control": "public, max-age=86400"}
        return _conditional(request, body, "image/svg+xml", self._started()[1].started, headers)

    async def _permalink(self, request: web.Request) -> web.StreamResponse:
        site, _ = self._started()
        for persona in self.script.personas:
            link = FORMATS[persona.format].link
            for post in self._posts(persona, PERMALINK_DEPTH):
                if urlsplit(link(site, persona, post)).path == request.path:
                    return _page(post_page(site, persona, post))
        raise web.HTTPNotFound(text=f"no demo post at {request.path}")

    async def _profile_page(self, request: web.Request) -> web.StreamResponse:
        """A Mastodon account's web page (the account `url`), so author links open offline."""
        site, _ = self._started()
        persona = self._usernames.get(request.match_info["user"].lower())
        if persona is None:
            raise web.HTTPNotFound(text=f"no demo account {request.match_info['user']!r}")
        items = [
            f'<li><a href="{_html(FORMATS["mastodon"].link(site, persona, p))}">'
            f"{_html(format_datetime(p.published, usegmt=True))}</a>{mastodon_html(site, p.text)}</li>"
            for p in self._posts(persona, DOC_LIMITS["mastodon"])
        ]
        body = f"<h1>{_html(persona.name)} (@{_html(persona.handle)})</h1><p>{_html(persona.bio)}</p>"
        return _page(render_page(persona.name, body + f"<ul>{''.join(items)}</ul>"))

    async def _tag_page(self, request: web.Request) -> web.StreamResponse:
        """The instance's hashtag page, where status hashtag links point."""
        site, _ = self._started()
        tag = request.match_info["tag"]
        items = [
            f"<li><strong>{_html(persona.label)}</strong>{mastodon_html(site, post.text)}</li>"
            for persona in self._by_format.get("mastodon", [])
            for post in self._posts(persona, DOC_LIMITS["mastodon"])
            if tag.lower() in (t.lower() for t in hashtags(post.text))
        ]
        return _page(render_page(f"#{tag}", f"<h1>#{_html(tag)}</h1><ul>{''.join(items)}</ul>"))

    async def _index(self, request: web.Request) -> web.StreamResponse:
        site, _ = self._started()
        rows = "".join(
            f'<li><a href="{p.doc_path}">{_html(p.label)}</a> ({_html(p.role)}, {_html(p.format)})</li>'
            for p in self.script.personas
        )
        apis = (
            '<li><a href="/api/v2/instance">Mastodon REST API</a> (/api/v1/accounts/lookup?acct=...)</li>'
            "<li>Bluesky AppView: /xrpc/app.bsky.feed.getAuthorFeed?actor=...</li>"
            f"<li>Jetstream: ws://{_html(site.host)}/subscribe</li>"
        )
        body = f"<h1>{_html(EVENT_TITLE)}</h1><p>Fil's built-in replay upstream. Documents:</p><ul>{rows}</ul>"
        return _page(render_page(EVENT_TITLE, body + f"<p>APIs:</p><ul>{apis}</ul>"))

    # -- Mastodon REST API -----------------------------------------------------------------

    @web.middleware
    async def _rate_limited(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Mastodon's X-RateLimit-* headers on every /api/ answer, and 429 past the limit (per window, all IPs)."""
        if not request.path.startswith("/api/"):
            return await handler(request)
        now = self._now()
        window = int(now.timestamp()) // RATE_PERIOD
        if window != self._rate_window:
            self._rate_window, self._rate_used = window, 0
        self._rate_used += 1
        # rack-attack's reset keeps the request's sub-second part (rate_limit_headers.rb)
        reset = now + timedelta(seconds=RATE_PERIOD - int(now.timestamp()) % RATE_PERIOD)
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - self._rate_used, 0)),
            "X-RateLimit-Reset": iso_us(reset),
        }
        if self._rate_used > self.rate_limit:
            headers["Retry-After"] = str(max(int((reset - now).total_seconds()), 1))
            return _api_json(request, {"error": "Too many requests"}, status=429, headers=headers)
        response = await handler(request)
        response.headers.update(headers)
        return response

    async def _mastodon_lookup(self, request: web.Request) -> web.StreamResponse:
        site, _ = self._started()
        user, _, domain = request.query.get("acct", "").strip().removeprefix("@").partition("@")
        persona = self._usernames.get(user.lower())
        if persona is None or domain.lower() not in ("", site.host, urlsplit(site.base).hostname):
            return _api_json(request, _NOT_FOUND, status=404)
        return _api_json(request, mastodon_account(site, persona, self._posts(persona)))

    async def _mastodon_account(self, request: web.Request) -> web.StreamResponse:
        site, _ = self._started()
        persona = self._account_ids.get(request.match_info["id"])
        if persona is None:
            return _api_json(request, _NOT_FOUND, status=404)
        return _api_json(request, mastodon_account(site, persona, self._posts(persona)))

    async def _mastodon_statuses(self, request: web.Request) -> web.StreamResponse:
        """GET /api/v1/accounts/:id/statuses: newest first, max_id/since_id/min_id paging, Link next/prev."""
        site, _ = self._started()
        persona = self._account_ids.get(request.match_info["id"])
        if persona is None:
            return _api_json(request, _NOT_FOUND, status=404)
        query = request.query
        posts = self._posts(persona)
        account = mastodon_account(site, persona, posts)
        limit = _limit(query.get("limit"), MASTODON_LIMIT, 2 * MASTODON_LIMIT)
        # the demo has neither replies nor boosts, so exclude_replies / exclude_reblogs change nothing
        if _truthy(query.get("pinned")):
            posts = []
        if _truthy(query.get("only_media")):
            posts = [p for p in posts if p.step.image]
        if query.get("tagged"):
            tag = query["tagged"].lower()
            posts = [p for p in posts if tag in (t.lower() for t in hashtags(p.text))]
        page = _paginate(posts, limit, _id(query.get("max_id")), _id(query.get("since_id")), _id(query.get("min_id")))
        headers = {}
        link = _link_header(f"{site.base}/api/v1/accounts/{account['id']}/statuses", query, page, limit)
        if link:
            headers["Link"] = link
        statuses = [mastodon_status(site, persona, p, account) for p in page]
        return _api_json(request, statuses, headers=headers)

    async def _mastodon_status(self, request: web.Request) -> web.StreamResponse:
        """GET /api/v1/statuses/:id: the status as it reads now; 404 once deleted."""
        site, _ = self._started()
        wanted = request.match_info["id"]
        for persona in self._by_format.get("mastodon", []):
            posts = self._posts(persona)
            for post in posts:
                if status_id(post) == wanted:
                    account = mastodon_account(site, persona, posts)
                    return _api_json(request, mastodon_status(site, persona, post, account))
        return _api_json(request, _NOT_FOUND, status=404)

    async def _mastodon_instance(self, request: web.Request) -> web.StreamResponse:
        site, _ = self._started()
        reporters = self._by_format.get("mastodon", [])
        contact = mastodon_account(site, reporters[0], self._posts(reporters[0])) if reporters else None
        return _api_json(request, mastodon_instance(site, "Col & Cadence social (demo)", contact))

    # -- Bluesky AppView -------------------------------------------------------------------

    def _actor(self, value: str | None) -> Persona | None:
        return self._actors.get((value or "").strip().removeprefix("@").lower()) if value else None

    async def _resolve_handle(self, request: web.Request) -> web.StreamResponse:
        persona = self._handles.get(request.query.get("handle", "").strip().lower())
        if persona is None:
            return _xrpc_error("InvalidRequest", "Unable to resolve handle")
        return _xrpc({"did": persona.did})

    async def _author_feed(self, request: web.Request) -> web.StreamResponse:
        """app.bsky.feed.getAuthorFeed: the actor's posts, newest first, paged backwards by an opaque cursor."""
        site, _ = self._started()
        query = request.query
        persona = self._actor(query.get("actor"))
        if persona is None:
            return _xrpc_error("InvalidRequest", "Profile not found")
        feed_filter = query.get("filter", "posts_with_replies")
        if feed_filter not in (*_AUTHOR_FEED_FILTERS, "posts_with_video"):
            return _xrpc_error("InvalidRequest", f"Input/filter must be one of {', '.join(_AUTHOR_FEED_FILTERS)}")
        try:
            limit = int(query.get("limit", APPVIEW_LIMIT))
            before = datetime.fromisoformat(query["cursor"]) if query.get("cursor") else None
        except ValueError:
            return _xrpc_error("InvalidRequest", "Input/limit must be an integer; cursor must be a feed cursor")
        if before is not None and before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
        if not 1 <= limit <= APPVIEW_MAX:
            return _xrpc_error("InvalidRequest", f"Input/limit must be between 1 and {APPVIEW_MAX}")
        posts = self._posts(persona)
        if feed_filter == "posts_with_video":
            posts = []
        elif feed_filter == "posts_with_media":
            posts = [p for p in posts if bluesky_image(p) is not None]
        if before is not None:
            posts = [p for p in posts if p.published < before]
        page = posts[:limit]
        body: dict[str, Any] = {"feed": [{"post": post_view(site, persona, p)} for p in page]}
        if page:
            body["cursor"] = page[-1].published.astimezone(UTC).isoformat(timespec="milliseconds")
        return _xrpc(body)

    async def _get_posts(self, request: web.Request) -> web.StreamResponse:
        """app.bsky.feed.getPosts: the posts that still exist, in the order asked; deleted ones are left out."""
        site, _ = self._started()
        uris = request.query.getall("uris", [])
        if len(uris) > 25:
            return _xrpc_error("InvalidRequest", "Input/uris must not have more than 25 elements")
        found: dict[str, dict[str, Any]] = {}
        for persona in self._by_format.get("bluesky", []):
            if any(uri.startswith(f"at://{persona.did}/") for uri in uris):
                found.update({at_uri(persona, p): post_view(site, persona, p) for p in self._posts(persona)})
        return _xrpc({"posts": [found[uri] for uri in uris if uri in found]})

    async def _get_profile(self, request: web.Request) -> web.StreamResponse:
        site, _ = self._started()
        persona = self._actor(request.query.get("actor"))
        if persona is None:
            return _xrpc_error("InvalidRequest", "Profile not found")
        return _xrpc(profile_detailed(site, persona, len(self._posts(persona))))

    async def _get_profiles(self, request: web.Request) -> web.StreamResponse:
        """app.bsky.actor.getProfiles: unknown actors are skipped, as the AppView does."""
        site, _ = self._started()
        actors = request.query.getall("actors", [])
        if len(actors) > 25:
            return _xrpc_error("InvalidRequest", "Input/actors must not have more than 25 elements")
        personas = [p for p in (self._actor(a) for a in actors) if p is not None]
        profiles = [profile_detailed(site, p, len(self._posts(p))) for p in dict.fromkeys(personas)]
        return _xrpc({"profiles": profiles})

    async def _xrpc_unknown(self, request: web.Request) -> web.StreamResponse:
        return _xrpc_error("MethodNotImplemented", "Method Not Implemented", status=501)

    # -- Jetstream -------------------------------------------------------------------------

    async def _jetstream(self, request: web.Request) -> web.StreamResponse:
        """Jetstream v1 `/subscribe`: each rider post (and delete) as a commit event, live or replayed from `cursor`."""
        try:
            subscription, cursor = _subscription(request.query)
        except ValueError as e:
            raise web.HTTPBadRequest(text=f"invalid subscription: {e}") from None
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._serve_stream(ws, subscription, cursor)
        except ConnectionResetError:
            pass  # the client went away mid-frame
        finally:
            self._sockets.discard(ws)
            await ws.close()
        return ws

    async def _serve_stream(self, ws: web.WebSocketResponse, subscription: _Subscription, cursor: int | None) -> None:
        _, replay = self._started()
        out = replay.released(self._elapsed())
        # no cursor (or one in the future): live only; else everything that happened at or after it
        position = out if cursor is None else replay.first_at(cursor, out)
        reader = asyncio.create_task(_read_options(ws, subscription))
        try:
            while not reader.done() and not ws.closed:
                if not subscription.paused:
                    position = await self._send_commits(ws, subscription, position)
                await asyncio.wait({reader}, timeout=self._until_next_release())
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _send_commits(self, ws: web.WebSocketResponse, subscription: _Subscription, position: int) -> int:
        site, replay = self._started()
        out = replay.released(self._elapsed())
        for seq, operation, post in replay.commits(position, out):
            persona = self._by_key[post.step.source]
            if not subscription.wants(persona.did, POST_COLLECTION):
                continue
            if operation == "create":
                event = jetstream_create(site, persona, post, replay.time_us(seq))
            else:
                event = jetstream_delete(persona, post, replay.time_us(seq), seq)
            await ws.send_str(dump(event).decode("utf-8"))
        return max(position, out)

    def _until_next_release(self) -> float:
        _, replay = self._started()
        elapsed = self._elapsed()
        delay = replay.release_offset(replay.released(elapsed)) - elapsed
        return min(max(delay, 0.005), self.stream_poll)

    async def _close_sockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def _read_options(ws: web.WebSocketResponse, subscription: _Subscription) -> None:
    """Apply the client's `options_update` messages until the socket closes; an invalid one closes it."""
    async for message in ws:
        if message.type is not WSMsgType.TEXT:
            continue
        try:
            update = _options_update(message.data)
        except ValueError as e:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=f"invalid options_update: {e}"[:120].encode())
            return
        if update is not None:
            subscription.collections, subscription.dids = update
            subscription.paused = False


def _subscription(query: MultiMapping[str]) -> tuple[_Subscription, int | None]:
    """The query of `/subscribe` (wanted* repeat); ValueError names the parameter that is wrong."""
    collections = tuple(query.getall("wantedCollections", []))
    dids = frozenset(query.getall("wantedDids", []))
    _check_filters(collections, dids)
    cursor = query.get("cursor")
    if cursor is not None and not re.fullmatch(r"-?\d+", cursor):
        raise ValueError(f"cursor must be an integer of microseconds, got {cursor!r}")
    paused = query.get("requireHello", "").lower() == "true"
    return _Subscription(collections, dids, paused), int(cursor) if cursor is not None else None


def _check_filters(collections: Sequence[str], dids: frozenset[str] | Sequence[str]) -> None:
    if len(collections) > 100:
        raise ValueError("wantedCollections: at most 100")
    if len(dids) > 10_000:
        raise ValueError("wantedDids: at most 10000")
    for collection in collections:
        if not _NSID.match(collection):
            raise ValueError(f"wantedCollections: not an NSID or prefix: {collection!r}")
    for did in dids:
        if not _DID.match(did):
            raise ValueError(f"wantedDids: not a DID: {did!r}")


def _options_update(data: str) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """The new filters of an `options_update` message; None for other messages."""
    try:
        message = json.loads(data)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(message, dict) or message.get("type") != "options_update":
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise ValueError("payload must be an object")
    collections = payload.get("wantedCollections") or []
    dids = payload.get("wantedDids") or []
    size = payload.get("maxMessageSizeBytes", 0)
    if not _strings(collections) or not _strings(dids) or not isinstance(size, int):
        raise ValueError("wantedCollections / wantedDids must be lists of strings, maxMessageSizeBytes an integer")
    _check_filters(collections, dids)
    return tuple(collections), frozenset(dids)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _truthy(value: str | None) -> bool:
    """Rails' boolean cast, as Mastodon's truthy_param? reads flags."""
    return value is not None and value.strip().lower() not in _FALSY


def _limit(value: str | None, default: int, most: int) -> int:
    try:
        return max(1, min(abs(int(value)), most)) if value else default
    except ValueError:
        return default


def _id(value: str | None) -> str | None:
    """A status id bound; Mastodon ids are digit strings (anything else matches nothing and is ignored)."""
    return value if value and value.isdigit() else None


def _id_key(value: str) -> tuple[int, str]:
    """Mastodon ids sort by length, then lexically: never cast them to int."""
    return len(value), value


def _paginate(
    posts: Sequence[Post], limit: int, max_id: str | None, since_id: str | None, min_id: str | None
) -> list[Post]:
    """Paginable#to_a_paginated_by_id on newest-first posts."""

    def above(post: Post, bound: str | None) -> bool:
        return bound is None or _id_key(status_id(post)) > _id_key(bound)

    def below(post: Post, bound: str | None) -> bool:
        return bound is None or _id_key(status_id(post)) < _id_key(bound)

    if min_id is not None:
        # the `limit` statuses immediately above min_id (oldest first in SQL), handed back newest first
        return [p for p in posts if above(p, min_id) and below(p, max_id)][-limit:]
    return [p for p in posts if below(p, max_id) and above(p, since_id)][:limit]


def _link_header(url: str, query: Mapping[str, str], page: Sequence[Post], limit: int) -> str:
    """`<...&max_id=OLDEST>; rel="next", <...&min_id=NEWEST>; rel="prev"`, as Api::Pagination builds it."""
    kept = {key: query[key] for key in _LINK_KEEPS if key in query}
    links: list[tuple[dict[str, str], str]] = []
    if len(page) == limit:
        links.append(({**kept, "max_id": status_id(page[-1])}, "next"))
    if page:
        links.append(({**kept, "min_id": status_id(page[0])}, "prev"))
    return ", ".join(f'<{url}?{urlencode(sorted(params.items()))}>; rel="{rel}"' for params, rel in links)


def _api_json(
    request: web.Request, payload: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A Mastodon API answer: compact UTF-8 JSON, private/no-store, weak ETag honoured by If-None-Match."""
    body = dump(payload)
    etag = 'W/"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'
    common = {"Cache-Control": "private, no-store", "Vary": "Authorization, Origin", **(headers or {})}
    if status == 200:
        common["ETag"] = etag
        wanted = {tag.strip().removeprefix("W/") for tag in request.headers.get("If-None-Match", "").split(",")}
        if etag.removeprefix("W/") in wanted:
            return web.Response(status=304, headers=common)
    return web.Response(status=status, body=body, headers={**common, "Content-Type": "application/json; charset=utf-8"})


def _xrpc(payload: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dump(payload), headers={"Content-Type": "application/json; charset=utf-8"})


def _xrpc_error(error: str, message: str, status: int = 400) -> web.Response:
    return _xrpc({"error": error, "message": message}, status)


def _page(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/html", charset="utf-8")


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

"""A fake Mastodon instance on 127.0.0.1 for tests: the real fixture bytes and headers, paging, streaming.

    async with FakeMastodon() as fake:               # or the `mastodon` pytest fixture
        fake.post("mastodonpy_test", "<p>hi</p>")     # a new status, cloned from a fixture status
        status = fake.post("someone", "<p>#tdf</p>", tags=["tdf"])
        fake.edit(status, "<p>fixed</p>"); fake.delete(status)   # also pushed to stream subscribers
        await fake.drop_streams()

It starts with the account of account_lookup.json and its five statuses (account_statuses_limit5.json, served
byte for byte for the recorded request), the #hoot status of timeline_tag_hoot.json, and speaks the wire
format of UPSTREAMS.md §1 and §5: `Link` next/prev, `X-RateLimit-*` (counting down, then 429), 404 JSON for
unknown accounts and statuses, /api/v2/instance, and the streaming websocket that refuses a missing or wrong
token with HTTP 401 (Mastodon 4.2+).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest_asyncio
from aiohttp import WSCloseCode, WSMsgType, web

from tests.loopback import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "mastodon"
JSON = "application/json; charset=utf-8"
#: a user token: good for the API and for streaming
TOKEN = "fake-mastodon-user-token"
#: an app token (client credentials): good for the API, refused by streaming since Mastodon 4.2
APP_TOKEN = "fake-mastodon-app-token"
NOT_FOUND = b'{"error":"Record not found"}'


def fixture(name: str) -> bytes:
    """Bytes of tests/fixtures/mastodon/<name>."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture(name))


def split_array(body: bytes) -> list[bytes]:
    """The exact bytes of each element of a JSON array (so unchanged statuses are re-served byte for byte)."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()
    parts: list[bytes] = []
    index = text.index("[") + 1
    while True:
        while text[index] in " \r\n\t,":
            index += 1
        if text[index] == "]":
            return parts
        _, end = decoder.raw_decode(text, index)
        parts.append(text[index:end].encode("utf-8"))
        index = end


def compact(value: Any) -> bytes:
    """JSON the way Mastodon's serializer writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def iso(when: datetime, *, micro: bool = False) -> str:
    """Mastodon's timestamps: milliseconds and Z (X-RateLimit-Reset: microseconds)."""
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text if micro else text[:-3]) + "Z"


@dataclass
class FakeStatus:
    data: dict[str, Any]
    #: the bytes served for it; the fixture's own slice until the status changes
    raw: bytes
    deleted: bool = False

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def uri(self) -> str:
        return str(self.data["uri"])

    @property
    def account_id(self) -> str:
        return str(self.data["account"]["id"])

    @property
    def tags(self) -> set[str]:
        return {str(t["name"]).lower() for t in self.data.get("tags") or []}

    def set(self, **fields: Any) -> None:
        self.data.update(fields)
        self.raw = compact(self.data)


@dataclass
class RecordedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@dataclass
class StreamClient:
    ws: web.WebSocketResponse
    #: ("user",) or ("hashtag", tag in lower case)
    subscriptions: list[tuple[str, ...]] = field(default_factory=list)
    #: frames to send, in order (a sender task drains it)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    async def send_all(self) -> None:
        while True:
            text = await self.outbox.get()
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except ConnectionError:
                return


class FakeMastodon(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.token: str | None = TOKEN
        self.app_token: str | None = APP_TOKEN
        self.accounts: dict[str, dict[str, Any]] = {}
        self.account_raw: dict[str, bytes] = {}
        self.statuses: dict[str, FakeStatus] = {}
        self.requests: list[RecordedRequest] = []
        self.clients: list[StreamClient] = []
        #: every websocket handshake seen, with the status answered (101 when accepted)
        self.stream_attempts: list[int] = []
        #: X-RateLimit-*: requests left in the window (0 -> the next request gets 429), and when it resets
        self.rate_limit = 300
        self.remaining = 300
        self.reset_at = datetime.now(UTC) + timedelta(minutes=5)
        #: answer every API request 429, as rack-attack does (no Retry-After, X-RateLimit-* only)
        self.too_many = False
        #: answer the hashtag timeline with this status (401 login required, 422 disabled...)
        self.tag_refusal: int | None = None
        #: /api/v2/instance configuration.timelines_access (Mastodon 4.5), or None to leave it out
        self.timelines_access: dict[str, Any] | None = None
        #: new statuses, edits and deletes are pushed to stream subscribers (False: lost on the wire)
        self.broadcast = True
        #: refuse websocket handshakes with 503 (a streaming server that is down)
        self.streaming_down = False
        #: subscriptions made so far (reconnections count again)
        self.subscriptions_made = 0
        self._last_id = 0
        self._subscribed = asyncio.Condition()
        self._load_fixtures()

    # -- lifecycle -------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/accounts/lookup", self._lookup)
        app.router.add_get("/api/v1/accounts/{id}/statuses", self._account_statuses)
        app.router.add_get("/api/v1/timelines/tag/{tag}", self._tag_timeline)
        app.router.add_get("/api/v1/statuses/{id}", self._status)
        app.router.add_get("/api/v2/instance", self._instance)
        app.router.add_get("/api/v1/streaming/health", self._health)
        app.router.add_get("/api/v1/streaming", self._streaming)
        return app

    async def on_close(self) -> None:
        await self.drop_streams()

    @property
    def netloc(self) -> str:
        return self.origin

    # -- content ---------------------------------------------------------------------------------------

    def _load_fixtures(self) -> None:
        account = fixture_json("account_lookup.json")
        self.accounts[account["acct"]] = account
        self.account_raw[account["acct"]] = fixture("account_lookup.json")
        for name in ("account_statuses_limit5.json", "timeline_tag_hoot.json"):
            for raw in split_array(fixture(name)):
                self._keep(FakeStatus(json.loads(raw), raw))
        hoot = next(s for s in self.statuses.values() if "hoot" in s.tags)
        self.accounts.setdefault(hoot.data["account"]["acct"], hoot.data["account"])

    def _keep(self, status: FakeStatus) -> FakeStatus:
        self.statuses[status.id] = status
        self._last_id = max(self._last_id, int(status.id))
        return status

    def load(self, name: str, **fields: Any) -> FakeStatus:
        """Serve a fixture status (status_*.json) as it is, with `fields` changed."""
        raw = fixture(name)
        status = FakeStatus(json.loads(raw), raw)
        if fields:
            status.set(**fields)
        return self._keep(status)

    def account(self, acct: str, *, display_name: str | None = None, **fields: Any) -> dict[str, Any]:
        """The account `acct` (local to this instance); created from the fixture account when new."""
        if acct not in self.accounts:
            template = copy.deepcopy(fixture_json("account_lookup.json"))
            account_id = self._next_id()
            template.update(
                id=account_id,
                username=acct.split("@")[0],
                acct=acct,
                display_name=display_name if display_name is not None else acct.title(),
                url=f"{self.base_url}/@{acct}",
                uri=f"{self.base_url}/users/{acct}",
            )
            self.accounts[acct] = template
        if fields or display_name is not None:
            self.accounts[acct].update(fields)
            if display_name is not None:
                self.accounts[acct]["display_name"] = display_name
            self.account_raw.pop(acct, None)
        return self.accounts[acct]

    def _next_id(self) -> str:
        """A snowflake like Mastodon's: milliseconds in the high bits, a sequence below."""
        self._last_id = max(self._last_id + 1, (int(time.time() * 1000) << 16) + 1)
        return str(self._last_id)

    def post(
        self,
        acct: str,
        content: str = "<p>A new post</p>",
        *,
        tags: Iterable[str] = (),
        reply_to: FakeStatus | None = None,
        boost_of: FakeStatus | None = None,
        visibility: str = "public",
        broadcast: bool | None = None,
        **fields: Any,
    ) -> FakeStatus:
        """A new status by `acct`, cloned from the first fixture status with a new id, uri, url and date."""
        account = self.accounts.get(acct) or self.account(acct)
        data = copy.deepcopy(json.loads(split_array(fixture("account_statuses_limit5.json"))[0]))
        status_id = self._next_id()
        uri = f"{self.base_url}/users/{account['username']}/statuses/{status_id}"
        data.update(
            id=status_id,
            created_at=iso(datetime.now(UTC)),
            uri=uri,
            url=f"{self.base_url}/@{account['username']}/{status_id}",
            account=copy.deepcopy(account),
            content=content,
            visibility=visibility,
            sensitive=False,
            tags=[{"name": t, "url": f"{self.base_url}/tags/{t}"} for t in tags],
            in_reply_to_id=reply_to.id if reply_to else None,
            in_reply_to_account_id=reply_to.account_id if reply_to else None,
        )
        if boost_of is not None:
            data.update(reblog=copy.deepcopy(boost_of.data), content="", uri=f"{uri}/activity", url=None, tags=[])
        data.update(fields)
        status = self._keep(FakeStatus(data, compact(data)))
        if self.broadcast if broadcast is None else broadcast:
            self._push_status("update", status)
        return status

    def post_many(self, acct: str, count: int, *, prefix: str = "Post", **fields: Any) -> list[FakeStatus]:
        return [self.post(acct, f"<p>{prefix} {n}</p>", **fields) for n in range(1, count + 1)]

    def edit(self, status: FakeStatus, content: str, **fields: Any) -> FakeStatus:
        status.set(content=content, edited_at=iso(datetime.now(UTC)), **fields)
        if self.broadcast:
            self._push_status("status.update", status)
        return status

    def delete(self, status: FakeStatus) -> None:
        status.deleted = True
        if self.broadcast:
            self.push("delete", status.id, where=lambda sub: _sees(sub, status))

    # -- streaming -------------------------------------------------------------------------------------

    def push(self, event: str, payload: str | None, *, where: Any = None) -> int:
        """Send one frame to every subscription `where(sub)` accepts (all when None); returns how many."""
        sent = 0
        for client in list(self.clients):
            for sub in client.subscriptions:
                if where is not None and not where(sub):
                    continue
                frame: dict[str, Any] = {"stream": list(sub), "event": event}
                if payload is not None:
                    frame["payload"] = payload
                client.outbox.put_nowait(json.dumps(frame, separators=(",", ":")))
                sent += 1
        return sent

    def push_raw(self, text: str) -> None:
        """Send one frame exactly as given to every connected client."""
        for client in list(self.clients):
            client.outbox.put_nowait(text)

    def _push_status(self, event: str, status: FakeStatus) -> None:
        self.push(event, status.raw.decode("utf-8"), where=lambda sub: _sees(sub, status))

    async def drop_streams(self) -> None:
        """Close every streaming connection (the server going away)."""
        clients, self.clients = self.clients, []
        for client in clients:
            await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"restarting")

    async def wait_subscribed(self, count: int = 1, timeout: float = 20.0) -> None:
        """Until `count` subscriptions have been made in all (reconnections count again)."""

        async def enough() -> None:
            async with self._subscribed:
                await self._subscribed.wait_for(lambda: self.subscriptions_made >= count)

        await asyncio.wait_for(enough(), timeout)

    # -- what happened ---------------------------------------------------------------------------------

    def calls(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def statuses_path(self, acct: str = "mastodonpy_test") -> str:
        return f"/api/v1/accounts/{self.accounts[acct]['id']}/statuses"

    # -- HTTP ------------------------------------------------------------------------------------------

    def _record(self, request: web.Request) -> RecordedRequest:
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = RecordedRequest(request.path, dict(request.query), headers)
        self.requests.append(record)
        return record

    def _given(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        return given or request.query.get("access_token", "") or request.headers.get("Sec-WebSocket-Protocol", "")

    def _authorized(self, request: web.Request) -> bool:
        """A user token: it may read followers-only posts (its user follows everyone here) and stream."""
        return self.token is not None and self._given(request) == self.token

    def _bad_token(self, request: web.Request, record: RecordedRequest) -> web.Response | None:
        """authorize_if_got_token!: no token is fine for public data, an unknown one is 401."""
        given = self._given(request)
        if not given or given in (self.token, self.app_token):
            return None
        record.status = 401
        body = b'{"error":"The access token is invalid"}'
        return web.Response(status=401, body=body, headers={"Content-Type": JSON})

    def _answer(
        self, record: RecordedRequest, body: bytes, *, status: int = 200, link: str | None = None
    ) -> web.Response:
        """An API answer with the headers Mastodon sends; counts against the rate limit."""
        if self.too_many or self.remaining <= 0:
            return self._too_many(record)
        self.remaining -= 1
        headers = {
            "Content-Type": JSON,
            "Cache-Control": "private, no-store",
            "Vary": "Authorization, Origin",
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": iso(self.reset_at, micro=True),
        }
        if status == 200:
            headers["ETag"] = 'W/"' + hashlib.md5(body).hexdigest() + '"'
        if link:
            headers["Link"] = link
        record.status = status
        return web.Response(status=status, body=body, headers=headers)

    def _too_many(self, record: RecordedRequest) -> web.Response:
        # rack-attack's throttled_responder: no Retry-After, the window in X-RateLimit-*
        record.status = 429
        headers = {
            "Content-Type": JSON,
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": iso(self.reset_at, micro=True),
        }
        return web.Response(status=429, body=b'{"error":"Too many requests"}', headers=headers)

    async def _lookup(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if (refused := self._bad_token(request, record)) is not None:
            return refused
        acct = request.query.get("acct", "").removeprefix("@")
        if acct.endswith(f"@{self.host}"):
            acct = acct.rsplit("@", 1)[0]
        account = self.accounts.get(acct)
        if account is None:
            return self._answer(record, fixture("account_lookup_404.json"), status=404)
        return self._answer(record, self.account_raw.get(acct) or compact(account))

    async def _account_statuses(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if (refused := self._bad_token(request, record)) is not None:
            return refused
        account_id = request.match_info["id"]
        if not any(a["id"] == account_id for a in self.accounts.values()):
            return self._answer(record, NOT_FOUND, status=404)
        exclude_replies = request.query.get("exclude_replies") in ("true", "1")
        exclude_reblogs = request.query.get("exclude_reblogs") in ("true", "1")
        readable = {"public", "unlisted"} | ({"private"} if self._authorized(request) else set())

        def listed(status: FakeStatus) -> bool:
            data = status.data
            if status.account_id != account_id or data["visibility"] not in readable:
                return False
            if exclude_reblogs and data.get("reblog"):
                return False
            # Status.without_replies: a reply to oneself (a thread) stays
            reply = data.get("in_reply_to_id") and data.get("in_reply_to_account_id") != account_id
            return not (exclude_replies and reply)

        return self._list(request, record, listed)

    async def _tag_timeline(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if (refused := self._bad_token(request, record)) is not None:
            return refused
        if self.tag_refusal is not None:
            message = b'{"error":"This method requires an authenticated user"}'
            return self._answer(record, message, status=self.tag_refusal)
        tag = request.match_info["tag"].lower()

        def listed(status: FakeStatus) -> bool:
            # hashtag timelines hold public statuses only, never boosts
            return tag in status.tags and status.data["visibility"] == "public" and not status.data.get("reblog")

        return self._list(request, record, listed)

    def _list(self, request: web.Request, record: RecordedRequest, listed: Any) -> web.Response:
        """min_id / since_id / max_id / limit as Mastodon's paginate_by_id does; newest first either way."""
        query = request.query
        try:
            limit = max(1, min(40, int(query.get("limit", "20"))))
        except ValueError:
            limit = 20
        found = sorted((s for s in self.statuses.values() if not s.deleted and listed(s)), key=lambda s: int(s.id))
        if "max_id" in query:
            found = [s for s in found if int(s.id) < int(query["max_id"])]
        if "since_id" in query:
            found = [s for s in found if int(s.id) > int(query["since_id"])]
        if "min_id" in query:
            # the `limit` statuses just after min_id, then newest first like every page
            found = [s for s in found if int(s.id) > int(query["min_id"])][:limit]
        page = list(reversed(found))[:limit]
        body = b"[" + b",".join(s.raw for s in page) + b"]"
        return self._answer(record, body, link=self._link(request, page))

    def _link(self, request: web.Request, page: list[FakeStatus]) -> str | None:
        """`<…max_id=OLDEST>; rel="next", <…min_id=NEWEST>; rel="prev"`, other parameters kept; none when empty."""
        if not page:
            return None
        kept = [(k, v) for k, v in request.query.items() if k not in ("max_id", "min_id", "since_id")]
        base = f"{self.base_url}{request.path}"
        older = urlencode([*kept, ("max_id", page[-1].id)])
        newer = urlencode([*kept, ("min_id", page[0].id)])
        return f'<{base}?{older}>; rel="next", <{base}?{newer}>; rel="prev"'

    async def _status(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if (refused := self._bad_token(request, record)) is not None:
            return refused
        status = self.statuses.get(request.match_info["id"])
        readable = {"public", "unlisted"} | ({"private"} if self._authorized(request) else set())
        if status is None or status.deleted or status.data["visibility"] not in readable:
            return self._answer(record, NOT_FOUND, status=404)
        return self._answer(record, status.raw)

    async def _instance(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if (refused := self._bad_token(request, record)) is not None:
            return refused
        configuration: dict[str, Any] = {
            "urls": {"streaming": f"ws://{self.netloc}", "status": None},
            "statuses": {"max_characters": 500, "max_media_attachments": 4},
        }
        if self.timelines_access is not None:
            configuration["timelines_access"] = self.timelines_access
        body = {
            "domain": self.netloc,
            "title": "Fake Mastodon",
            "version": "4.5.0",
            "source_url": "https://github.com/mastodon/mastodon",
            "configuration": configuration,
        }
        return self._answer(record, compact(body))

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _streaming(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request)
        if self.streaming_down:
            record.status = 503
            self.stream_attempts.append(503)
            return web.Response(status=503, text="streaming is down")
        if not self._authorized(request):
            # 4.2+: every stream needs a user token
            record.status = 401
            self.stream_attempts.append(401)
            return web.Response(status=401, body=b'{"error":"Missing access token"}', headers={"Content-Type": JSON})
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        record.status = 101
        self.stream_attempts.append(101)
        client = StreamClient(ws)
        self.clients.append(client)
        sender = asyncio.ensure_future(client.send_all())
        if "stream" in request.query:
            await self._subscribe(client, dict(request.query))
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    command = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(command, dict) and command.get("type") == "subscribe":
                    await self._subscribe(client, command)
                elif isinstance(command, dict) and command.get("type") == "unsubscribe":
                    client.subscriptions = [s for s in client.subscriptions if s[0] != command.get("stream")]
        finally:
            sender.cancel()
            if client in self.clients:
                self.clients.remove(client)
        return ws

    async def _subscribe(self, client: StreamClient, command: Mapping[str, Any]) -> None:
        stream = command.get("stream")
        if stream == "user":
            client.subscriptions.append(("user",))
        elif stream in ("hashtag", "hashtag:local") and isinstance(command.get("tag"), str):
            client.subscriptions.append(("hashtag", command["tag"].lower()))
        else:
            client.outbox.put_nowait('{"error":"Unknown stream type","status":400}')
            return
        async with self._subscribed:
            self.subscriptions_made += 1
            self._subscribed.notify_all()


def _sees(sub: tuple[str, ...], status: FakeStatus) -> bool:
    """Whether a subscription gets this status: the user stream (its user follows everyone here) or its tag."""
    if sub[0] == "user":
        return True
    return sub[0] == "hashtag" and sub[1] in status.tags and status.data["visibility"] == "public"


@pytest_asyncio.fixture
async def mastodon() -> AsyncIterator[FakeMastodon]:
    async with FakeMastodon() as fake:
        yield fake

"""A fake Bluesky on 127.0.0.1 for tests: AppView XRPC, a PDS login and a Jetstream websocket (aiohttp.web).

    async with FakeBluesky() as bsky:
        rider = bsky.add_account("rider.test", display_name="Rider")
        bsky.add_post(rider, "hello")                         # what getAuthorFeed answers
        await bsky.push(bsky.post_event(rider, "hi"))         # a Jetstream event, to every matching socket
        bsky.drop()                                           # every Jetstream socket closes

Posts are clones of the real postView in fixtures/bluesky/getPostThread_recordWithMedia.json (new uri, cid, text,
dates); Jetstream lines are sent byte for byte as given (the fixture captures, or lines built in their key order).
Every request is recorded in `requests`; every Jetstream socket in `sockets`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback import LoopbackServer

FIXTURES = Path(__file__).parent / "fixtures" / "bluesky"
JSON = "application/json; charset=utf-8"
POST = "app.bsky.feed.post"
# the template's own account (its embed's images and quoted post live there)
TEMPLATE_DID = "did:plc:kvwvcn5iqfooopmyzvb4qzba"
# bsky.app's DID, as resolveHandle.json answers it
BSKY_APP_DID = "did:plc:z72i7hdynmk6r22z27h6tvur"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def template_post() -> dict[str, Any]:
    """The fixture's postView (a recordWithMedia post of test.marshal.dev)."""
    return json.loads(fixture("getPostThread_recordWithMedia.json"))["thread"]["post"]  # type: ignore[no-any-return]


def jetstream_lines(name: str) -> list[str]:
    """A Jetstream capture's lines, exactly as sent (without the newline)."""
    return fixture(name).decode("utf-8").splitlines()


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def token(kind: str, serial: int, lifetime: float) -> str:
    """A JWT-shaped token (unsigned) whose `exp` the client may read."""

    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"scope": kind, "jti": f"{kind}-{serial}", "exp": int(time.time() + lifetime)}
    return f"{part({'typ': 'at+jwt', 'alg': 'ES256K'})}.{part(claims)}.c2ln"


@dataclass
class Account:
    did: str
    handle: str
    display_name: str | None = None
    avatar: str | None = None
    labels: list[str] = field(default_factory=list)
    #: feedViewPosts, newest first
    feed: list[dict[str, Any]] = field(default_factory=list)

    def profile(self) -> dict[str, Any]:
        view: dict[str, Any] = {"did": self.did, "handle": self.handle}
        if self.display_name is not None:
            view["displayName"] = self.display_name
        if self.avatar is not None:
            view["avatar"] = self.avatar
        view["labels"] = [
            {
                "src": self.did,
                "uri": f"at://{self.did}/app.bsky.actor.profile/self",
                "val": v,
                "cts": "2024-01-01T00:00:00.000Z",
            }
            for v in self.labels
        ]
        view["createdAt"] = "2023-04-26T19:05:34.249Z"
        return view


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def params(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


@dataclass
class Socket:
    """One Jetstream client connection as the fake saw it."""

    query: list[tuple[str, str]]
    ws: web.WebSocketResponse
    dids: set[str]
    collections: set[str]
    cursor: int | None
    hello: bool
    #: the options_update payloads the client sent
    updates: list[dict[str, Any]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    closed: bool = False
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)

    def wants(self, line: str) -> bool:
        try:
            event = json.loads(line)
            did, kind = event["did"], event["kind"]
        except (ValueError, KeyError, TypeError):
            return True  # garbage goes to everyone
        if self.dids and did not in self.dids:
            return False
        if kind == "commit" and self.collections:
            collection = event.get("commit", {}).get("collection", "")
            return any(
                collection == c or (c.endswith(".*") and collection.startswith(c[:-1])) for c in self.collections
            )
        return True


class FakeBluesky(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RecordedRequest] = []
        self.accounts: dict[str, Account] = {}
        self.posts: dict[str, dict[str, Any]] = {}
        #: identifier -> app password accepted by createSession
        self.logins: dict[str, str] = {}
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.expired: set[str] = set()
        #: answer every AppView request with 429 while set
        self.rate_limited = False
        #: DIDs whose getAuthorFeed answers BlockedActor
        self.blocked: set[str] = set()
        #: Jetstream: every event line pushed (time_us, line), replayed from a client's cursor
        self.log: list[tuple[int, str]] = []
        self.sockets: list[Socket] = []
        self._serial = itertools.count(1)
        # posts made in a row get strictly later times, as on the real AppView (ties would reorder searches)
        self._last_indexed = datetime.min.replace(tzinfo=UTC)
        self._clock = itertools.count(1)
        self._senders: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/subscribe", self._subscribe)
        app.router.add_route("*", "/xrpc/{method}", self._xrpc)
        return app

    async def on_close(self) -> None:
        await self.drop_and_wait()
        for task in list(self._senders):
            task.cancel()

    @property
    def base(self) -> str:
        return self.base_url

    @property
    def jetstream_url(self) -> str:
        return f"ws://{self.origin}/subscribe"

    # -- accounts and posts ----------------------------------------------------------------------------

    def add_account(
        self,
        handle: str,
        did: str | None = None,
        *,
        display_name: str | None = "Rider",
        avatar: str | None = None,
        labels: Iterable[str] = (),
    ) -> Account:
        did = did or f"did:plc:fake{next(self._serial):020d}"
        avatar = avatar or f"https://cdn.bsky.app/img/avatar/plain/{did}/bafkreiavatar{len(self.accounts):08d}@jpeg"
        account = Account(did=did, handle=handle, display_name=display_name, avatar=avatar, labels=list(labels))
        self.accounts[did] = account
        return account

    def account(self, actor: str) -> Account | None:
        return next((a for a in self.accounts.values() if actor in (a.did, a.handle)), None)

    def post_view(
        self,
        account: Account,
        text: str,
        *,
        rkey: str | None = None,
        facets: list[Any] | None = None,
        embed: dict[str, Any] | None = None,
        embed_view: dict[str, Any] | None = None,
        keep_template_embed: bool = False,
        reply: dict[str, Any] | None = None,
        labels: list[str] | None = None,
        created_at: datetime | None = None,
        indexed_at: datetime | None = None,
    ) -> dict[str, Any]:
        """A postView cloned from the fixture: new uri, cid, author, text and dates (and embed, when given)."""
        view = template_post()
        serial = next(self._serial)
        rkey = rkey or f"3kfake{serial:07d}"
        if indexed_at is None:
            indexed_at = max(datetime.now(UTC), self._last_indexed + timedelta(milliseconds=1))
            self._last_indexed = indexed_at
        indexed = indexed_at
        view["uri"] = f"at://{account.did}/{POST}/{rkey}"
        view["cid"] = f"bafyreifake{serial:010d}"
        view["author"] = {**view["author"], **account.profile()}
        record = view["record"]
        record["text"] = text
        record["createdAt"] = iso(created_at or indexed)
        if not keep_template_embed:
            record.pop("embed", None)
            view.pop("embed", None)
        if embed is not None:
            record["embed"] = embed
        if embed_view is not None:
            view["embed"] = embed_view
        if facets is not None:
            record["facets"] = facets
        if reply is not None:
            record["reply"] = reply
        if labels:
            record["labels"] = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": v} for v in labels]}
        view["indexedAt"] = iso(indexed)
        return view

    def add_post(self, account: Account, text: str, **options: Any) -> dict[str, Any]:
        """A new post at the top of the account's feed (and in getPosts / searchPosts)."""
        view = self.post_view(account, text, **options)
        account.feed.insert(0, {"post": view})
        self.posts[view["uri"]] = view
        return view

    def add_repost(self, account: Account, original: dict[str, Any]) -> None:
        """`account` reposts someone's post: the original appears in its feed with reason#reasonRepost."""
        reason = {
            "$type": "app.bsky.feed.defs#reasonRepost",
            "by": {"did": account.did, "handle": account.handle},
            "indexedAt": iso(datetime.now(UTC)),
        }
        account.feed.insert(0, {"post": original, "reason": reason})

    def add_pin(self, account: Account, post: dict[str, Any]) -> None:
        """A pinned post, sent first only when the client asks for includePins (as the AppView does)."""
        account.feed.insert(0, {"post": post, "reason": {"$type": "app.bsky.feed.defs#reasonPin"}, "pin": True})

    def remove_post(self, uri: str) -> None:
        self.posts.pop(uri, None)
        for account in self.accounts.values():
            account.feed = [item for item in account.feed if item["post"]["uri"] != uri or "reason" in item]

    # -- sessions --------------------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every access token issued so far now answers 400 ExpiredToken."""
        self.expired |= self.access_tokens

    def _issue(self, identifier: str, *, access_lifetime: float = 7200) -> dict[str, Any]:
        account = self.account(identifier)
        serial = next(self._serial)
        access, refresh = token("access", serial, access_lifetime), token("refresh", serial, 90 * 86400)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        did = account.did if account else "did:plc:searcher"
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": account.handle if account else identifier,
            "did": did,
            "didDoc": {
                "@context": ["https://www.w3.org/ns/did/v1"],
                "id": did,
                "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": self.base}],
            },
            "active": True,
        }

    # -- Jetstream -------------------------------------------------------------------------------------

    def now_us(self) -> int:
        # strictly increasing even when two events are built within the same microsecond
        return time.time_ns() // 1000 + next(self._clock)

    def post_event(
        self,
        account: Account | str,
        text: str,
        *,
        rkey: str | None = None,
        time_us: int | None = None,
        operation: str = "create",
        facets: list[Any] | None = None,
        embed: dict[str, Any] | None = None,
        reply: dict[str, Any] | None = None,
        labels: list[str] | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """A Jetstream commit line for a post, with the keys in the order the real server writes them."""
        did = account if isinstance(account, str) else account.did
        serial = next(self._serial)
        when = time_us or self.now_us()
        record: dict[str, Any] = {
            "$type": POST,
            "createdAt": iso(created_at or datetime.fromtimestamp(when / 1e6, UTC)),
        }
        if embed is not None:
            record["embed"] = embed
        if facets is not None:
            record["facets"] = facets
        if labels:
            record["labels"] = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": v} for v in labels]}
        record["langs"] = ["en"]
        if reply is not None:
            record["reply"] = reply
        record["text"] = text
        commit = {
            "rev": f"3mrev{serial:09d}",
            "operation": operation,
            "collection": POST,
            "rkey": rkey or f"3mfake{serial:07d}",
            "record": record,
            "cid": f"bafyreifake{serial:010d}",
        }
        event = {"did": did, "time_us": when, "kind": "commit", "commit": commit}
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)

    def delete_event(self, account: Account | str, rkey: str, *, time_us: int | None = None) -> str:
        did = account if isinstance(account, str) else account.did
        commit = {"rev": f"3mrev{next(self._serial):09d}", "operation": "delete", "collection": POST, "rkey": rkey}
        event = {"did": did, "time_us": time_us or self.now_us(), "kind": "commit", "commit": commit}
        return json.dumps(event, separators=(",", ":"))

    def record(self, line: str) -> None:
        """Log an event without sending it (it happened while nobody listened; a cursor replays it)."""
        self.log.append((_time_us(line), line))

    async def push(self, *lines: str) -> None:
        """Log each line and send it to every open socket whose filter matches, in order."""
        for line in lines:
            self.record(line)
            for socket in self.sockets:
                if not socket.closed:
                    socket.queue.put_nowait(line)
        await self.flush()

    async def push_raw(self, text: str) -> None:
        """A frame that is not logged (garbage) to every open socket."""
        for socket in self.sockets:
            if not socket.closed:
                socket.queue.put_nowait(text)
        await self.flush()

    async def flush(self) -> None:
        """Wait until every socket's queue was written out."""
        for _ in range(500):
            if all(s.closed or s.queue.empty() for s in self.sockets):
                return
            await asyncio.sleep(0.01)

    def drop(self) -> None:
        """Close every Jetstream socket from the server side (as a restart or a network cut would)."""
        for socket in self.sockets:
            if not socket.closed:
                socket.closed = True
                socket.queue.put_nowait(None)

    async def drop_and_wait(self) -> None:
        self.drop()
        for _ in range(200):
            if all(s.ws.closed for s in self.sockets):
                return
            await asyncio.sleep(0.01)

    @property
    def open_sockets(self) -> list[Socket]:
        return [s for s in self.sockets if not s.closed]

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        self._record(request, b"")
        query = list(request.query.items())
        cursor = request.query.get("cursor")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        socket = Socket(
            query=query,
            ws=ws,
            dids={v for k, v in query if k == "wantedDids"},
            collections={v for k, v in query if k == "wantedCollections"},
            cursor=int(cursor) if cursor else None,
            hello=request.query.get("requireHello") == "true",
        )
        # the replay and the live registration happen with no await between them: nothing is lost or doubled
        if socket.cursor is not None:
            for time_us, line in list(self.log):
                if time_us >= socket.cursor:
                    socket.queue.put_nowait(line)
        self.sockets.append(socket)
        hello = asyncio.Event()
        if not socket.hello:
            hello.set()
        sender = asyncio.create_task(self._send(socket, hello))
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if data.get("type") == "options_update":
                    payload = data["payload"]
                    socket.updates.append(payload)
                    socket.dids = set(payload.get("wantedDids") or [])
                    socket.collections = set(payload.get("wantedCollections") or [])
                    hello.set()
        finally:
            if not socket.closed:
                socket.closed = True
                socket.queue.put_nowait(None)
            await sender
        return ws

    async def _send(self, socket: Socket, hello: asyncio.Event) -> None:
        await hello.wait()
        while True:
            line = await socket.queue.get()
            if line is None or socket.ws.closed:
                break
            if socket.wants(line):
                await socket.ws.send_str(line)
                socket.sent.append(line)
        if not socket.ws.closed:
            await socket.ws.close(code=1001, message=b"server going away")

    # -- XRPC ------------------------------------------------------------------------------------------

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        self.requests.append(recorded)
        return recorded

    def calls(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == f"/xrpc/{method}"]

    async def _xrpc(self, request: web.Request) -> web.Response:
        recorded = self._record(request, await request.read())
        method = request.match_info["method"]
        if self.rate_limited:
            reset = int(time.time()) + 30
            headers = {"RateLimit-Limit": "3000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset),
                       "RateLimit-Policy": "3000;w=300", "Retry-After": "30"}  # fmt: skip
            return _error(429, "RateLimitExceeded", "Rate Limit Exceeded", headers=headers)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return _error(501, "MethodNotImplemented", f"Method Not Implemented: {method}")
        response: web.Response = handler(recorded)
        return response

    def _app_bsky_feed_getAuthorFeed(self, request: RecordedRequest) -> web.Response:
        actor = request.param("actor") or ""
        account = self.account(actor)
        if account is None:
            return _error(400, "InvalidRequest", "Profile not found")
        if account.did in self.blocked:
            return _error(400, "BlockedActor", "Requester has blocked actor")
        items = [i for i in account.feed if request.param("includePins") == "true" or not i.get("pin")]
        if request.param("filter") == "posts_no_replies":
            items = [i for i in items if "reply" not in i["post"]["record"] or "reason" in i]
        offset = int(request.param("cursor") or 0)
        limit = int(request.param("limit") or 50)
        page = [{k: v for k, v in item.items() if k != "pin"} for item in items[offset : offset + limit]]
        body: dict[str, Any] = {"feed": page}
        if offset + limit < len(items):
            body["cursor"] = str(offset + limit)
        return _json(body)

    def _com_atproto_identity_resolveHandle(self, request: RecordedRequest) -> web.Response:
        handle = request.param("handle") or ""
        if handle == "bsky.app":
            return web.Response(body=fixture("resolveHandle.json"), content_type="application/json", charset="utf-8")
        account = self.account(handle)
        if account is None or handle.startswith("did:"):
            return _error(400, "InvalidRequest", "Unable to resolve handle")
        return _json({"did": account.did})

    def _app_bsky_actor_getProfiles(self, request: RecordedRequest) -> web.Response:
        found = [self.account(actor) for actor in request.params("actors")]
        return _json({"profiles": [a.profile() for a in found if a is not None]})

    def _app_bsky_feed_getPosts(self, request: RecordedRequest) -> web.Response:
        return _json({"posts": [self.posts[u] for u in request.params("uris") if u in self.posts]})

    def _app_bsky_feed_searchPosts(self, request: RecordedRequest) -> web.Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            # public.api.bsky.app since 2025: search is for logged-in users only
            return _error(403, "Forbidden", "Forbidden")
        bearer = auth.removeprefix("Bearer ")
        if bearer in self.expired:
            return _error(400, "ExpiredToken", "Token has expired")
        if bearer not in self.access_tokens:
            return _error(401, "InvalidToken", "Token could not be verified")
        q = (request.param("q") or "").lower()
        tag = q.removeprefix("#")
        hits = [
            p
            for p in self.posts.values()
            if q in p["record"].get("text", "").lower()
            or any(
                f.get("tag", "").lower() == tag for facet in p["record"].get("facets", []) for f in facet["features"]
            )
        ]
        hits.sort(key=lambda p: p["indexedAt"], reverse=True)
        limit = int(request.param("limit") or 25)
        return _json({"posts": hits[:limit], "hitsTotal": len(hits)})

    def _com_atproto_server_createSession(self, request: RecordedRequest) -> web.Response:
        try:
            data = json.loads(request.body)
        except ValueError:
            return _error(400, "InvalidRequest", "Invalid JSON")
        if self.logins.get(data.get("identifier")) != data.get("password"):
            return _error(401, "AuthenticationRequired", "Invalid identifier or password")
        return _json(self._issue(data["identifier"]))

    def _com_atproto_server_refreshSession(self, request: RecordedRequest) -> web.Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.refresh_tokens:
            return _error(400, "ExpiredToken", "Token has been revoked")
        self.refresh_tokens.discard(bearer)
        return _json(self._issue(next(iter(self.logins), "searcher")))


def _time_us(line: str) -> int:
    try:
        return int(json.loads(line)["time_us"])
    except (ValueError, KeyError, TypeError):
        return 0


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    headers = {"RateLimit-Limit": "3000", "RateLimit-Remaining": "2999", "RateLimit-Policy": "3000;w=300"}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8", headers=headers)


def _error(status: int, error: str, message: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    text = json.dumps({"error": error, "message": message}, separators=(",", ":"))
    return web.Response(text=text, status=status, content_type="application/json", charset="utf-8", headers=headers)


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)

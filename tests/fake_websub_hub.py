"""A fake WebSub hub on loopback for tests: takes (un)subscribe requests, verifies intent, then delivers.

    async with FakeHub() as hub:                       # or the `hub` pytest fixture
        ... a feed advertises hub.url (Link header or <link rel="hub">) ...
        await wait_for(lambda: hub.subscription(topic) is not None)
        statuses = await hub.publish(topic, body)              # signed with the subscriber's hub.secret
        statuses = await hub.publish(topic, body, signature="bad")   # or "none"
        await hub.deny(topic, reason="quota")

It speaks WebSub as a hub does (W3C Recommendation §5-§7): subscription requests are form-encoded POSTs
answered 202, then the hub GETs the callback with hub.mode, hub.topic, hub.challenge (and hub.lease_seconds)
and holds the subscription only when the exact challenge comes back with a 2xx. The HMAC is computed here
with hashlib, independently of Fil's own code, so a bug there cannot hide itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest_asyncio
from aiohttp import web
from yarl import URL

from tests.loopback import LoopbackServer

ATOM = "application/atom+xml; charset=utf-8"
DEFAULT_LEASE = 864000  # what a hub grants when asked for nothing (Google's hub: 10 days)


@dataclass
class HubRequest:
    """One (un)subscription request as the hub received it."""

    mode: str
    callback: str
    topic: str
    lease_seconds: int | None
    secret: str | None
    #: event-loop time of arrival
    at: float


@dataclass
class Verification:
    """One verification-of-intent GET the hub made, and what the subscriber answered."""

    mode: str
    callback: str
    topic: str
    challenge: str
    lease_seconds: int | None
    status: int
    body: str
    content_type: str
    #: 2xx and the exact challenge echoed
    confirmed: bool
    at: float


@dataclass
class Subscription:
    callback: str
    topic: str
    secret: str | None
    lease_seconds: int
    verified_at: float
    expires_at: float


@dataclass
class Delivery:
    callback: str
    topic: str
    status: int
    #: event-loop times when the POST started and when its answer came
    sent_at: float
    answered_at: float


@dataclass
class FakeHub(LoopbackServer):
    """An aiohttp server on `host` and a free port; its hub endpoint is `url`."""

    host: str = "127.0.0.1"
    #: the lease the hub grants whatever was asked (None: the requested one, else DEFAULT_LEASE)
    lease_seconds: int | None = None
    #: verify intent before answering the subscription request (some hubs do it synchronously)
    verify_first: bool = False
    #: status answered to subscription requests (202 Accepted normally)
    answer_status: int = 202
    #: False: accept requests but never verify them (a hub that lost the request)
    verify: bool = True
    port: int = 0
    requests: list[HubRequest] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    subscriptions: dict[tuple[str, str], Subscription] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hub", self._handle)
        return app

    async def start(self) -> None:
        await super().start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def on_close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def url(self) -> str:
        return f"{self.base_url}/hub"

    # -- what happened -----------------------------------------------------------------------------------

    def subscription(self, topic: str) -> Subscription | None:
        """The live (verified, unexpired) subscription to `topic`, if any."""
        now = asyncio.get_running_loop().time()
        for (_, sub_topic), sub in self.subscriptions.items():
            if sub_topic == topic and sub.expires_at > now:
                return sub
        return None

    def requests_of(self, mode: str) -> list[HubRequest]:
        return [r for r in self.requests if r.mode == mode]

    def verifications_of(self, mode: str) -> list[Verification]:
        return [v for v in self.verifications if v.mode == mode]

    # -- the hub endpoint --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        mode, callback, topic = (fields.get(k, "") for k in ("hub.mode", "hub.callback", "hub.topic"))
        if mode not in ("subscribe", "unsubscribe") or not callback or not topic:
            return web.Response(status=400, text="hub.mode, hub.callback and hub.topic are required")
        lease = fields.get("hub.lease_seconds", "")
        secret = fields.get("hub.secret")
        if secret is not None and len(secret.encode()) >= 200:
            return web.Response(status=400, text="hub.secret must be less than 200 bytes")
        entry = HubRequest(
            mode, callback, topic, int(lease) if lease.isdigit() else None, secret, asyncio.get_running_loop().time()
        )
        self.requests.append(entry)
        if self.answer_status != 202:
            return web.Response(status=self.answer_status, text="refused by the fake hub")
        if not self.verify:
            return web.Response(status=202)
        if self.verify_first:
            await self._verify(entry)
        else:
            task = asyncio.create_task(self._verify(entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=202)

    async def _verify(self, entry: HubRequest) -> None:
        assert self._session is not None
        challenge = secrets.token_urlsafe(24)
        params = {"hub.mode": entry.mode, "hub.topic": entry.topic, "hub.challenge": challenge}
        granted = self.lease_seconds or entry.lease_seconds or DEFAULT_LEASE
        if entry.mode == "subscribe":
            params["hub.lease_seconds"] = str(granted)
        status, body, content_type = 0, "", ""
        try:
            async with self._session.get(URL(entry.callback).extend_query(params)) as response:
                status, body, content_type = response.status, await response.text(), response.content_type
        except aiohttp.ClientError as e:
            body = f"{type(e).__name__}: {e}"
        confirmed = 200 <= status < 300 and body == challenge
        now = asyncio.get_running_loop().time()
        self.verifications.append(
            Verification(
                entry.mode,
                entry.callback,
                entry.topic,
                challenge,
                granted if entry.mode == "subscribe" else None,
                status,
                body,
                content_type,
                confirmed,
                now,
            )
        )
        key = (entry.callback, entry.topic)
        if confirmed and entry.mode == "subscribe":
            self.subscriptions[key] = Subscription(
                entry.callback, entry.topic, entry.secret, granted, now, now + granted
            )
        elif confirmed:
            self.subscriptions.pop(key, None)

    # -- acting as the hub -------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        content_type: str = ATOM,
        signature: str = "valid",
        algorithm: str = "sha256",
    ) -> list[int]:
        """Deliver `body` to every live subscriber of `topic`; returns the statuses they answered.

        signature: "valid" (HMAC with the subscriber's secret), "bad" (HMAC with another secret) or "none".
        """
        assert self._session is not None
        now = asyncio.get_running_loop().time()
        subs = [s for (_, t), s in self.subscriptions.items() if t == topic and s.expires_at > now]
        assert subs, f"nobody is subscribed to {topic}; subscriptions: {list(self.subscriptions)}"
        statuses = []
        for sub in subs:
            statuses.append(await self._deliver(sub, body, content_type, signature, algorithm))
        return statuses

    async def _deliver(self, sub: Subscription, body: bytes, content_type: str, signature: str, algorithm: str) -> int:
        assert self._session is not None
        headers = {"Content-Type": content_type, "Link": f'<{self.url}>; rel="hub", <{sub.topic}>; rel="self"'}
        if signature != "none":
            key = (sub.secret or "") if signature == "valid" else "not-the-secret"
            digest = hmac.new(key.encode(), body, getattr(hashlib, algorithm)).hexdigest()
            headers["X-Hub-Signature"] = f"{algorithm}={digest}"
        loop = asyncio.get_running_loop()
        sent = loop.time()
        async with self._session.post(sub.callback, data=body, headers=headers) as response:
            await response.read()
            status = response.status
        self.deliveries.append(Delivery(sub.callback, sub.topic, status, sent, loop.time()))
        return status

    async def deny(self, topic: str, reason: str) -> int:
        """Tell the subscriber of `topic` its subscription is denied (§5.2); returns the status answered."""
        assert self._session is not None
        callbacks = [c for (c, t) in self.subscriptions if t == topic] or [r.callback for r in self.requests]
        assert callbacks, f"no subscriber for {topic}"
        params = {"hub.mode": "denied", "hub.topic": topic, "hub.reason": reason}
        async with self._session.get(URL(callbacks[-1]).extend_query(params)) as response:
            await response.read()
            status = response.status
        self.subscriptions = {k: v for k, v in self.subscriptions.items() if k[1] != topic}
        return status


@pytest_asyncio.fixture
async def hub() -> AsyncIterator[FakeHub]:
    """A running FakeHub on 127.0.0.1, closed after the test."""
    async with FakeHub() as server:
        yield server

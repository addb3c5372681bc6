"""Editor and ingest abuse (issue 7 §5): guessing passwords, fixing sessions, forging requests, replaying
pushes, and editors reaching for admin actions. Each test fills a gap left by test_auth.py,
test_editor_api.py and test_push.py, over real HTTP against a real server.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from curation.auth import COOKIE_NAME, Auth, create_editor, create_token, sign_session
from curation.collectors.push import MAX_SKEW, sign
from curation.ratelimit import Limiter, LoginLimiter
from curation.store.accounts import accounts_of
from curation.store.redis_limits import RedisLoginLimiter
from tests.conftest import RunningFil, start_fil
from tests.redis_server import RedisServer
from tests.upstreams import FakeUpstream, upstream  # noqa: F401 - fixture

SLUG = "stage-1"
SECRET = "abuse-wire-secret"
PASSWORD = "correct horse battery"
FIXTURES = Path(__file__).parent / "fixtures"
YOUTUBE = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"

# -- the login limiter, in memory and in Redis: the same allowance ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Limits:
    """A limiter with account_limit=3, address_limit=5, and a way to let its lockout pass."""

    limiter: Limiter
    pass_lockout: Callable[[], Awaitable[None]]
    lockout: float
    #: a second limiter sharing the counts (another process on the same Redis), or None
    other: Limiter | None = None


@pytest.fixture(params=["memory", "redis"])
async def limits(request: pytest.FixtureRequest) -> AsyncIterator[Limits]:
    if request.param == "memory":
        clock = Clock()

        async def advance() -> None:
            clock.now += 60.1

        yield Limits(LoginLimiter(account_limit=3, address_limit=5, window=300, lockout=60, clock=clock), advance, 60)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = Redis.from_url(server.url)
    prefix = f"test-{request.node.name}-{time.monotonic_ns()}:"

    def make() -> RedisLoginLimiter:
        return RedisLoginLimiter(lambda: client, prefix, account_limit=3, address_limit=5, window=300, lockout=0.4)

    async def wait_out() -> None:
        await asyncio.sleep(0.45)  # Redis expires the lock by its own clock

    try:
        yield Limits(make(), wait_out, 0.4, other=make())
    finally:
        await client.aclose()


async def test_the_limiter_locks_an_account_from_everywhere_and_an_address_for_every_account(limits: Limits) -> None:
    limiter = limits.limiter
    a, b = "203.0.113.5", "198.51.100.7"
    for _ in range(2):
        await limiter.fail(["account:alice", f"address:{a}"])
    assert await limiter.check(["account:alice", f"address:{a}"]) == 0
    await limiter.fail(["account:alice", f"address:{a}"])  # the account's third failure locks it
    for keys in (["account:alice", f"address:{a}"], ["account:alice", f"address:{b}"], ["account:alice"]):
        assert 0 < await limiter.check(keys) <= limits.lockout, keys
    assert await limiter.check(["account:bruno", f"address:{a}"]) == 0  # the address has 3 of its 5
    # a right password during the lockout changes nothing
    await limiter.clear("alice")
    assert await limiter.check(["account:alice"]) > 0
    # two more failures from the address, on other accounts: now every account is locked from it
    await limiter.fail(["account:carla", f"address:{a}"])
    await limiter.fail(["account:dario", f"address:{a}"])
    assert await limiter.check(["account:erin", f"address:{a}"]) > 0
    assert await limiter.check(["account:erin", f"address:{b}"]) == 0
    if limits.other is not None:  # another process on the same Redis sees the same locks
        assert await limits.other.check(["account:alice", f"address:{b}"]) > 0
        assert await limits.other.check(["account:erin", f"address:{a}"]) > 0
    await limits.pass_lockout()
    assert await limiter.check(["account:alice", f"address:{a}"]) == 0


async def test_a_right_password_clears_the_account_count_but_not_the_address_count(limits: Limits) -> None:
    limiter, a = limits.limiter, "203.0.113.5"
    for _ in range(2):
        await limiter.fail(["account:alice", f"address:{a}"])
    await limiter.clear("alice")
    for _ in range(2):
        await limiter.fail(["account:alice", f"address:{a}"])
    assert await limiter.check(["account:alice"]) == 0  # 2 since the success, not 4
    await limiter.fail(["account:bruno", f"address:{a}"])  # the address's fifth
    assert await limiter.check(["account:zoe", f"address:{a}"]) > 0


# -- a real server with editors ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def session(self) -> str:
        [header] = [c for c in self.cookies if c.startswith(f"{COOKIE_NAME}=")]
        return header.split(";", 1)[0].split("=", 1)[1]


@dataclass
class Desk:
    """A running Fil and an HTTP client that sends exactly the cookie and headers a test gives it."""

    fil: RunningFil
    session: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        path: str,
        *,
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        sent = dict(headers or {})
        if cookie is not None:
            sent["Cookie"] = f"{COOKIE_NAME}={cookie}"
        options: dict[str, Any] = {"data": form} if form is not None else {"json": body} if body is not None else {}
        async with self.session.request(
            method, self.fil.base + path, headers=sent, allow_redirects=False, **options
        ) as response:
            return Reply(
                response.status,
                dict(response.headers),
                response.headers.getall("Set-Cookie", []),
                await response.text(),
            )

    async def add_editor(self, name: str, role: str = "editor") -> None:
        await create_editor(accounts_of(self.fil.fil.store), name, PASSWORD, role)  # type: ignore[arg-type]
        self.tokens[name] = await create_token(accounts_of(self.fil.fil.store), name)

    async def login(self, name: str, password: str = PASSWORD, **options: Any) -> Reply:
        return await self.request("POST", "/editor/login", form={"name": name, "password": password}, **options)

    async def session_of(self, name: str, *, address: str = "192.0.2.1") -> tuple[str, str]:
        """A fresh desk session of `name`: its cookie value and its CSRF token (read from the desk page)."""
        reply = await self.login(name, headers={"X-Forwarded-For": address})
        assert reply.status == 303, reply.text
        cookie = reply.session()
        page = await self.request("GET", "/editor/", cookie=cookie)
        found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert page.status == 200 and found is not None
        return cookie, found.group(1)

    async def items(self) -> list[dict[str, Any]]:
        return (await self.request("GET", f"/api/events/{SLUG}/items")).json()["items"]  # type: ignore[no-any-return]

    async def push(self, body: bytes, *, ts: int | None = None) -> Reply:
        stamp = int(time.time()) if ts is None else ts
        headers = {"X-Fil-Timestamp": str(stamp), "X-Fil-Signature": sign(SECRET, stamp, body)}
        return await self.push_as_sent(body, headers)

    async def push_as_sent(self, body: bytes, headers: dict[str, str]) -> Reply:
        async with self.session.post(f"{self.fil.base}/api/ingest/wire", data=body, headers=headers) as response:
            return Reply(response.status, dict(response.headers), [], await response.text())


@pytest.fixture
async def desk(
    tmp_path: Path,
    upstream: FakeUpstream,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Desk]:
    monkeypatch.setenv("ABUSE_WIRE_SECRET", SECRET)
    (tmp_path / "sources.yaml").write_text(
        f"events:\n  - slug: {SLUG}\n    title: Stage 1\n    sources:\n"
        "      - id: wire\n        kind: push\n        secret_env: ABUSE_WIRE_SECRET\n        role: editorial\n"
    )
    upstream.add(
        "/youtube/oembed", (FIXTURES / "oembed" / "youtube_video.json").read_bytes(), content_type="application/json"
    )
    fil = await start_fil(
        tmp_path / "sources.yaml",
        tmp_path / "data",
        trusted_proxies=("127.0.0.1",),  # X-Forwarded-For names the guesser's address
        youtube_oembed=upstream.url("/youtube/oembed"),
    )
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            desk = Desk(fil, session)
            await desk.add_editor("alice")
            await desk.add_editor("chief", "admin")
            yield desk
    finally:
        await fil.stop()


def wire_batch(*numbers: int, text: str = "Flash") -> bytes:
    items = [
        {
            "id": f"w{n}",
            "url": f"https://wire.example/{n}",
            "text": f"{text} {n}",
            "published_at": "2027-07-12T12:00:00Z",
        }
        for n in numbers
    ]
    return json.dumps({"items": items}).encode()


# -- login brute force: slowed, then locked -----------------------------------------------------------------


async def test_failed_logins_are_slowed_more_and_more_then_locked(desk: Desk) -> None:
    auth: Auth = desk.fil.fil.auth
    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)

    auth.sleep = record
    guesser = {"X-Forwarded-For": "203.0.113.5"}
    for _ in range(5):
        assert (await desk.login("alice", "not the password", headers=guesser)).status == 401
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.8]  # each wrong guess answers later than the one before
    locked = await desk.login("alice", PASSWORD, headers=guesser)
    assert locked.status == 429 and locked.cookies == [] and int(locked.headers["Retry-After"]) > 0
    assert len(pauses) == 5  # a locked account is refused at once: nothing is checked, nothing to wait for

    # a person who mistypes once, then gets it right, starts afresh next time
    pauses.clear()
    office = {"X-Forwarded-For": "198.51.100.7"}
    assert (await desk.login("chief", "mistyped password", headers=office)).status == 401
    assert (await desk.login("chief", PASSWORD, headers=office)).status == 303
    assert (await desk.login("chief", "mistyped again!", headers={"X-Forwarded-For": "192.0.2.44"})).status == 401
    assert pauses == [0.05, 0.05]


async def test_one_address_guessing_many_accounts_is_slowed_then_locked(desk: Desk) -> None:
    auth: Auth = desk.fil.fil.auth
    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)

    auth.sleep = record
    auth.limiter = LoginLimiter(account_limit=5, address_limit=8)  # the default 20, made small for the test
    sprayer = {"X-Forwarded-For": "203.0.113.9"}
    for n in range(8):
        assert (await desk.login(f"user{n}", "password123!", headers=sprayer)).status == 401
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]  # per address, up to the longest pause
    assert (await desk.login("alice", PASSWORD, headers=sprayer)).status == 429  # the address is locked
    assert (await desk.login("alice", PASSWORD, headers={"X-Forwarded-For": "198.51.100.7"})).status == 303


async def test_the_pause_of_a_failed_login_does_not_hold_up_anyone_else(desk: Desk) -> None:
    auth: Auth = desk.fil.fil.auth
    release, pausing = asyncio.Event(), asyncio.Event()

    async def held(seconds: float) -> None:
        pausing.set()
        await release.wait()  # a pause as long as the test wants, and not one second of sleep

    auth.sleep = held
    guess = asyncio.create_task(desk.login("alice", "not the password", headers={"X-Forwarded-For": "203.0.113.5"}))
    await asyncio.wait_for(pausing.wait(), 20)
    # while the guess waits: the server answers, and other editors log in
    assert (await desk.request("GET", "/healthz")).status == 200
    assert (await desk.login("chief", PASSWORD, headers={"X-Forwarded-For": "198.51.100.7"})).status == 303
    assert not guess.done()
    release.set()
    assert (await asyncio.wait_for(guess, 20)).status == 401


# -- session fixation ----------------------------------------------------------------------------------------


async def test_a_session_id_presented_before_login_is_never_the_one_after(desk: Desk) -> None:
    key = desk.fil.fil.auth.key
    # an id the attacker chose, even correctly signed (a leaked key would allow it): ignored, a fresh one issued
    planted = sign_session("attacker-chosen-session-id", key)
    reply = await desk.login("alice", cookie=planted)
    assert reply.status == 303
    issued = reply.session()
    assert issued != planted and not issued.startswith("attacker-chosen-session-id.")
    assert (await desk.request("GET", "/api/sources", cookie=planted)).status == 401  # still worth nothing
    assert (await desk.request("GET", "/api/sources", cookie=issued)).status == 200

    # the attacker's own live session, planted in alice's browser, stays the attacker's: alice gets a new one
    await desk.add_editor("mallory")
    mallory, _ = await desk.session_of("mallory")
    reply = await desk.login("alice", cookie=mallory)
    assert reply.status == 303 and reply.session() != mallory
    page = await desk.request("GET", "/editor/", cookie=mallory)
    assert page.status == 200 and "mallory" in page.text and "alice" not in page.text
    # and two logins are two sessions
    assert (await desk.login("alice")).session() != (await desk.login("alice")).session()


async def test_a_password_reset_or_a_disabled_account_ends_every_session(desk: Desk) -> None:
    laptop, _ = await desk.session_of("alice")
    phone, _ = await desk.session_of("alice", address="192.0.2.2")
    admin = {"Authorization": f"Bearer {desk.tokens['chief']}"}
    reset = await desk.request(
        "PUT", "/api/editors/alice", headers=admin, body={"password": "a brand new password", "role": "editor"}
    )
    assert reset.status == 200 and reset.json()["created"] is False
    for cookie in (laptop, phone):
        assert (await desk.request("GET", "/editor/", cookie=cookie)).status == 303  # back to the login
    assert (await desk.login("alice")).status == 401  # the old password is gone too
    assert (await desk.login("alice", "a brand new password")).status == 303

    session, _ = await desk.session_of("chief")
    disabled = await desk.request("POST", "/api/editors/alice/disabled", headers=admin, body={"disabled": True})
    assert disabled.status == 200
    fresh = (await desk.login("alice", "a brand new password")).status
    assert fresh == 401
    # enabled again: the sessions from before stay ended (they were deleted, not suspended)
    await desk.request("POST", "/api/editors/alice/disabled", headers=admin, body={"disabled": False})
    for cookie in (laptop, phone):
        assert (await desk.request("GET", "/api/sources", cookie=cookie)).status == 401
    assert (await desk.request("GET", "/editor/", cookie=session)).status == 200  # the admin's own session lives on


# -- CSRF on every state-changing desk route ------------------------------------------------------------------


@dataclass
class Case:
    path: str
    body: Any
    expected: int


#: the state-changing routes a desk session does not use, each guarded otherwise
NOT_DESK = {
    ("POST", "/api/ingest/{source_id}"),  # signed with the source's secret (test_push.py, the replay test below)
    ("POST", "/websub/{source_id}"),  # signed by the hub (test_websub.py)
    ("POST", "/editor/login"),  # no session yet: the Origin check (the test below)
}


def app_routes(fil: RunningFil) -> list[Route]:
    app: Any = fil.server.config.app
    while not isinstance(app, Starlette):
        app = app.app
    return [route for route in app.routes if isinstance(route, Route)]


def state_changing_routes(fil: RunningFil) -> set[tuple[str, str]]:
    """(method, path) of every route that changes something, but for those of NOT_DESK."""
    every = {(method, r.path) for r in app_routes(fil) for method in (r.methods or set()) - {"GET", "HEAD"}}
    assert NOT_DESK <= every
    return every - NOT_DESK


async def test_every_state_changing_desk_route_needs_the_sessions_csrf_token(desk: Desk) -> None:
    assert (await desk.push(wire_batch(1))).status == 202
    [item] = await desk.items()
    cookie, csrf = await desk.session_of("chief")  # an admin: the role lets every route through, CSRF alone decides
    _, alices_csrf = await desk.session_of("alice")
    post_id: list[str] = []
    cases: dict[tuple[str, str], Callable[[], Case]] = {
        ("POST", "/api/events"): lambda: Case("/api/events", {"slug": "csrf-night", "title": "Night"}, 201),
        ("PATCH", "/api/events/{slug}"): lambda: Case(f"/api/events/{SLUG}", {"title": "Stage 1 (edited)"}, 200),
        ("PUT", "/api/editors/{name}"): lambda: Case(
            "/api/editors/newbie", {"password": "a long enough one", "role": "editor"}, 201
        ),
        ("POST", "/api/editors/{name}/disabled"): lambda: Case("/api/editors/newbie/disabled", {"disabled": True}, 200),
        ("POST", "/api/events/{slug}/items/{item_id}/actions"): lambda: Case(
            f"/api/events/{SLUG}/items/{item['id']}/actions", {"action": "pin"}, 200
        ),
        ("POST", "/api/events/{slug}/sources/{source_id}/actions"): lambda: Case(
            f"/api/events/{SLUG}/sources/wire/actions", {"action": "approve"}, 200
        ),
        ("POST", "/api/events/{slug}/sources"): lambda: Case(
            f"/api/events/{SLUG}/sources",
            {"id": "csrf-feed", "kind": "feed", "url": "http://127.0.0.1:9/x.xml", "role": "editorial"},
            201,
        ),
        ("DELETE", "/api/events/{slug}/sources/{source_id}"): lambda: Case(
            f"/api/events/{SLUG}/sources/csrf-feed", None, 200
        ),
        ("POST", "/api/events/{slug}/posts"): lambda: Case(f"/api/events/{SLUG}/posts", {"text": "Checked post"}, 201),
        ("PATCH", "/api/events/{slug}/posts/{item_id}"): lambda: Case(
            f"/api/events/{SLUG}/posts/{post_id[0] if post_id else 'none'}", {"text": "Checked post, corrected"}, 200
        ),
        ("POST", "/api/events/{slug}/paste"): lambda: Case(f"/api/events/{SLUG}/paste", {"url": YOUTUBE}, 201),
        ("PUT", "/api/events/{slug}/header"): lambda: Case(
            f"/api/events/{SLUG}/header", {"summary": "Breakaway of 4"}, 200
        ),
        ("POST", "/api/events/{slug}/sources/{source_id}/mute"): lambda: Case(
            f"/api/events/{SLUG}/sources/wire/mute", {"minutes": 5}, 200
        ),
        ("POST", "/editor/logout"): lambda: Case("/editor/logout", None, 303),  # last: it ends the session
    }
    # a new state-changing route fails here until it is added above
    assert state_changing_routes(desk.fil) == set(cases)

    for (method, pattern), make in cases.items():
        forged = make()
        for headers in ({}, {"X-CSRF-Token": alices_csrf}, {"X-CSRF-Token": ""}):
            refused = await desk.request(method, forged.path, cookie=cookie, headers=headers, body=forged.body)
            assert refused.status == 403 and "CSRF" in refused.text, (method, pattern, headers, refused.status)
    # nothing of the above happened
    audit = await desk.request("GET", f"/api/events/{SLUG}/audit", cookie=cookie)
    assert audit.status == 200 and audit.json()["entries"] == []
    assert [e["slug"] for e in (await desk.request("GET", "/api/events")).json()["events"]] == [SLUG]
    assert (await desk.items())[0]["pinned"] is False

    for (method, pattern), make in cases.items():
        case = make()
        accepted = await desk.request(method, case.path, cookie=cookie, headers={"X-CSRF-Token": csrf}, body=case.body)
        assert accepted.status == case.expected, (method, pattern, accepted.status, accepted.text[:300])
        if pattern == "/api/events/{slug}/posts":
            post_id.append(accepted.json()["item"]["id"])
    assert (await desk.request("GET", "/editor/", cookie=cookie)).status == 303  # logged out, with the token


async def test_a_desk_websocket_from_another_site_is_refused(desk: Desk) -> None:
    cookie, _ = await desk.session_of("alice")
    path = f"{desk.fil.ws_base}/api/events/{SLUG}/desk/live"
    headers = {"Cookie": f"{COOKIE_NAME}={cookie}"}
    async with connect(path, additional_headers=headers, origin="https://evil.example") as ws:  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    async with connect(path, additional_headers=headers, origin=desk.fil.base) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "hello"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Origin": "http://127.0.0.1.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},  # no Origin, but the browser says where the form came from
    ],
)
async def test_a_login_form_posted_from_another_site_is_refused(desk: Desk, headers: dict[str, str]) -> None:
    reply = await desk.login("alice", headers=headers)
    assert reply.status == 403 and reply.cookies == [] and "another site" in reply.text


# -- replayed signed pushes ---------------------------------------------------------------------------------


async def test_a_captured_push_replayed_inside_the_window_changes_nothing_and_outside_it_is_refused(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = wire_batch(1, 2, text="Gap: 4 minutes")
    stamp = int(time.time())
    captured = {"X-Fil-Timestamp": str(stamp), "X-Fil-Signature": sign(SECRET, stamp, body)}
    assert (await desk.push_as_sent(body, captured)).json() == {"accepted": 2}
    # the agency corrects item 1 a moment later
    assert (await desk.push(wire_batch(1, text="Gap: 5 minutes (corrected)"))).status == 202
    before = (await desk.request("GET", f"/api/events/{SLUG}/items")).json()
    assert sorted(i["text"] for i in before["items"]) == ["Gap: 4 minutes 2", "Gap: 5 minutes (corrected) 1"]

    # inside the window the signature still holds: the replay is answered, and changes nothing (not even
    # item 1, whose text the captured batch would otherwise put back)
    replay = await desk.push_as_sent(body, captured)
    assert replay.status == 202 and replay.json() == {"accepted": 0, "replayed": True}
    after = (await desk.request("GET", f"/api/events/{SLUG}/items")).json()
    assert after == before

    # the same captured request once the server's clock has moved past the window: refused, nothing taken
    import curation.web.ingest

    later = stamp + MAX_SKEW + 1
    monkeypatch.setattr(curation.web.ingest, "time", types.SimpleNamespace(time=lambda: later))
    refused = await desk.push_as_sent(body, captured)
    assert refused.status == 401 and "X-Fil-Timestamp" in refused.json()["error"]
    assert (await desk.push(wire_batch(3), ts=stamp)).status == 401  # any body, signed for that old time
    assert (await desk.request("GET", f"/api/events/{SLUG}/items")).json() == after


async def test_a_push_the_store_did_not_take_is_taken_when_sent_again_as_it_was(desk: Desk) -> None:
    """Only what was stored counts as seen: a batch refused with 503 is not mistaken for a replay."""
    from curation.errors import StoreError

    store = vars(desk.fil.fil.store)["_inner"]  # the SQLite store, under the timing wrapper of curation/metrics.py

    async def away(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("redis://127.0.0.1:6379/0: Connection refused")

    body = wire_batch(7)
    stamp = int(time.time())
    signed = {"X-Fil-Timestamp": str(stamp), "X-Fil-Signature": sign(SECRET, stamp, body)}
    store.ingest = away  # the store goes away for exactly this request
    try:
        refused = await desk.push_as_sent(body, signed)
    finally:
        del store.ingest
    assert refused.status == 503 and "send it again" in refused.json()["error"]
    assert (await desk.push_as_sent(body, signed)).json() == {"accepted": 1}
    assert [i["text"] for i in await desk.items()] == ["Flash 7"]


# -- editors cannot reach admin actions -----------------------------------------------------------------------

#: every route of curation/web/admin_api.py, with a body that an admin would get a 2xx for
ADMIN_ROUTES = {
    ("POST", "/api/events"): ("/api/events", {"slug": "coup", "title": "Taken over"}),
    ("PATCH", "/api/events/{slug}"): (f"/api/events/{SLUG}", {"status": "closed"}),
    ("GET", "/api/editors"): ("/api/editors", None),
    ("PUT", "/api/editors/{name}"): ("/api/editors/alice", {"password": "mine now, all mine", "role": "admin"}),
    ("POST", "/api/editors/{name}/disabled"): ("/api/editors/chief/disabled", {"disabled": True}),
}


async def test_every_admin_route_refuses_an_editor_session_and_an_editor_token(desk: Desk) -> None:
    admin_routes = {
        (method, route.path)
        for route in app_routes(desk.fil)
        if getattr(route.endpoint, "__module__", "") == "curation.web.admin_api"
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert admin_routes == set(ADMIN_ROUTES), "a new admin route: add it to ADMIN_ROUTES"
    cookie, csrf = await desk.session_of("alice")
    token = {"Authorization": f"Bearer {desk.tokens['alice']}"}
    for (method, pattern), (path, body) in ADMIN_ROUTES.items():
        for credentials in ({"cookie": cookie, "headers": {"X-CSRF-Token": csrf}}, {"headers": token}):
            reply = await desk.request(method, path, body=body, **credentials)
            assert reply.status == 403 and "admin role" in reply.json()["error"], (method, pattern, reply.status)
    # nothing changed: no event made or closed, alice no admin, chief not disabled
    events = (await desk.request("GET", "/api/events")).json()["events"]
    assert [(e["slug"], e["status"]) for e in events] == [(SLUG, "live")]
    listing = await desk.request("GET", "/api/editors", headers={"Authorization": f"Bearer {desk.tokens['chief']}"})
    assert {e["name"]: (e["role"], e["disabled"]) for e in listing.json()["editors"]} == {
        "alice": ("editor", False),
        "chief": ("admin", False),
    }
    assert (await desk.login("alice", "mine now, all mine")).status == 401

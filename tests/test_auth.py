"""Editor accounts as editors and scripts meet them: passwords, the CLI, login and logout over real HTTP,
cookie flags, login throttling, CSRF, tampered cookies, the kept signing key, bearer tokens."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import Morsel, SimpleCookie
from pathlib import Path

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from curation.auth import (
    COOKIE_NAME,
    create_editor,
    create_token,
    hash_password,
    load_secret_key,
    safe_next,
    sign_session,
    token_hash,
    unsign_session,
    verify_password,
)
from curation.config import Settings
from curation.models import utcnow
from curation.ratelimit import LoginLimiter
from curation.store import open_store
from curation.store.accounts import accounts_of
from tests.conftest import RunningFil, start_fil

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"

# -- passwords, signatures, redirects (pure) ----------------------------------------------------


def test_password_hash_verifies_the_right_password_only() -> None:
    encoded = hash_password(PASSWORD)
    assert re.fullmatch(r"scrypt\$32768\$8\$1\$[\w-]{22}\$[\w-]{43}", encoded)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + " ", encoded)
    assert not verify_password("", encoded)


def test_each_hash_has_its_own_salt() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)


@pytest.mark.parametrize(
    "encoded",
    ["", "plain", "bcrypt$12$8$1$c2FsdA$aGFzaA", "scrypt$1000$8$1$c2FsdA$aGFzaA", "scrypt$16384$8$1$!!$??"],
)
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert verify_password(PASSWORD, encoded) is False


def test_session_cookie_signature() -> None:
    key = b"k" * 32
    value = sign_session("session-1", key)
    assert unsign_session(value, key) == "session-1"
    assert unsign_session(value, b"o" * 32) is None  # another server's key
    assert unsign_session("session-2" + value[len("session-1") :], key) is None  # another id, same signature
    assert unsign_session("session-1", key) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/editor/events/stage-1?tab=queue", "/editor/events/stage-1?tab=queue"),
        ("//evil.example/", "/editor/"),
        ("/\\evil.example/", "/editor/"),
        ("https://evil.example/", "/editor/"),
        ("javascript:alert(1)", "/editor/"),
        ("/editor/\r\nSet-Cookie: x=1", "/editor/"),
        (None, "/editor/"),
    ],
)
def test_only_local_paths_are_followed_after_login(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_secret_key_is_made_once_with_owner_only_permissions(tmp_path: Path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path}/data/fil.db")
    key = load_secret_key(settings)
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(settings) == key and len(key) >= 32


def test_a_short_configured_secret_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CURATION_SECRET_KEY"):
        load_secret_key(Settings(store=f"sqlite:///{tmp_path}/fil.db", secret_key="hunter2"))
    assert load_secret_key(Settings(store=f"sqlite:///{tmp_path}/fil.db", secret_key="s" * 40)) == b"s" * 40
    assert not (tmp_path / "secret_key").exists()


# -- the limiter (injectable clock) -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_locks_an_account_after_five_failures_for_the_lockout() -> None:
    clock = Clock()
    limiter = LoginLimiter(account_limit=5, address_limit=20, window=300, lockout=600, clock=clock)
    keys = limiter.keys("Alice", "203.0.113.5")
    for _ in range(4):
        limiter.failed(keys)
        assert limiter.retry_after(keys) == 0
    limiter.failed(keys)
    assert limiter.retry_after(limiter.keys("alice", "198.51.100.7")) == 600  # the account, from anywhere
    clock.now += 599
    assert limiter.retry_after(keys) == 1
    clock.now += 1
    assert limiter.retry_after(keys) == 0


def test_limiter_forgets_failures_outside_the_window_and_after_a_success() -> None:
    clock = Clock()
    limiter = LoginLimiter(account_limit=5, window=300, clock=clock)
    keys = limiter.keys("alice", None)
    for _ in range(4):
        limiter.failed(keys)
    clock.now += 301
    limiter.failed(keys)
    assert limiter.retry_after(keys) == 0
    for _ in range(3):
        limiter.failed(keys)
    limiter.succeeded("alice")
    limiter.failed(keys)
    assert limiter.retry_after(keys) == 0


def test_limiter_locks_an_address_that_tries_many_accounts() -> None:
    clock = Clock()
    limiter = LoginLimiter(account_limit=5, address_limit=20, clock=clock)
    for i in range(20):
        limiter.failed(limiter.keys(f"user{i}", "203.0.113.5"))
    assert limiter.retry_after(limiter.keys("someone-else", "203.0.113.5")) > 0
    assert limiter.retry_after(limiter.keys("someone-else", "198.51.100.7")) == 0


# -- the command line ---------------------------------------------------------------------------


def run_cli(*args: str, store: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CURATION_STORE": store},
    )


@pytest.mark.asyncio
async def test_cli_creates_editors_and_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fil.db"
    created = run_cli("create-editor", "alice", store=url, stdin=f"{PASSWORD}\nignored second line\n")
    assert created.returncode == 0, created.stderr
    assert "created" in created.stderr and created.stdout == ""
    promoted = run_cli("create-editor", "alice", "--admin", store=url, stdin="another long password\n")
    assert promoted.returncode == 0 and "updated" in promoted.stderr

    issued = run_cli("create-token", "alice", store=url)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert issued.stdout == token + "\n" and re.fullmatch(r"[\w-]{43}", token)

    store = open_store(url)
    await store.open()
    try:
        accounts = accounts_of(store)
        alice = await accounts.get_editor("alice")
        assert alice is not None and alice.role == "admin"
        assert verify_password("another long password", alice.password_hash)
        assert not verify_password(PASSWORD, alice.password_hash)
        by_token = await accounts.editor_for_token(token_hash(token), now=utcnow())
        assert by_token is not None and by_token.name == "alice"
    finally:
        await store.close()
    assert token not in (tmp_path / "fil.db").read_bytes().decode("latin-1")  # kept hashed only


@pytest.mark.parametrize(("stdin", "message"), [("", "password: empty"), ("short\n", "at least 10 characters")])
def test_cli_refuses_empty_and_short_passwords(tmp_path: Path, stdin: str, message: str) -> None:
    result = run_cli("create-editor", "alice", store=f"sqlite:///{tmp_path}/fil.db", stdin=stdin)
    assert result.returncode == 2 and message in result.stderr


def test_cli_token_for_an_unknown_editor_exits_2(tmp_path: Path) -> None:
    result = run_cli("create-token", "nobody", store=f"sqlite:///{tmp_path}/fil.db")
    assert result.returncode == 2
    assert result.stdout == "" and "no such editor: nobody" in result.stderr


# -- over HTTP ------------------------------------------------------------------------------------

SOURCES = (
    "sources:\n"
    "  - id: wire\n"
    "    kind: push\n"
    "    secret_env: FIL_TEST_WIRE_SECRET\n"
    "    role: editorial\n"
    "events:\n"
    "  - slug: stage-1\n"
    "    title: Stage One\n"
    "    sources: [{use: wire}]\n"
    "  - slug: stage-2\n"
    "    title: Stage Two (draft)\n"
    "    status: draft\n"
    "    sources: [{use: wire}]\n"
)


async def whoami(request: Request) -> Response:
    from curation.auth import require_editor

    editor = await require_editor(request, csrf=False)
    return JSONResponse({"name": editor.name, "role": editor.role, "via": editor.via})


async def poke(request: Request) -> Response:
    from curation.auth import require_editor

    editor = await require_editor(request)
    return JSONResponse({"name": editor.name, "body": (await request.body()).decode()})


async def admin_only(request: Request) -> Response:
    from curation.auth import require_editor

    editor = await require_editor(request, admin=True, csrf=False)
    return JSONResponse({"name": editor.name})


async def desk_private(request: Request) -> Response:
    from curation.auth import require_editor

    editor = await require_editor(request, csrf=False)
    return PlainTextResponse(f"hello {editor.name}")


#: routes of the kind the editor API and desk will have, to exercise require_editor through the real app
TEST_ROUTES = [
    Route("/api/test/whoami", whoami),
    Route("/api/test/poke", poke, methods=["POST"]),
    Route("/api/test/admin", admin_only),
    Route("/editor/test/private", desk_private),
]


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    cookies: list[str]
    text: str

    def cookie(self) -> Morsel[str]:
        [header] = [c for c in self.cookies if c.startswith(f"{COOKIE_NAME}=")]
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        return jar[COOKIE_NAME]


class Client:
    """Plain HTTP with cookies handled by hand, so each test says exactly what it sends."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        cookie: str | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if cookie is not None:
            sent["Cookie"] = f"{COOKIE_NAME}={cookie}"
        async with self.session.request(
            method, self.base + path, headers=sent, data=data, allow_redirects=False
        ) as response:
            return Reply(
                response.status, response.headers, response.headers.getall("Set-Cookie", []), await response.text()
            )

    async def login(self, name: str, password: str, **options: object) -> Reply:
        form = {"name": name, "password": password}
        if "next" in options:
            form["next"] = str(options.pop("next"))
        return await self.request("POST", "/editor/login", data=form, **options)  # type: ignore[arg-type]

    async def session_cookie(self, name: str = "alice", password: str = PASSWORD) -> str:
        reply = await self.login(name, password)
        assert reply.status == 303, reply.text
        return reply.cookie().value


@dataclass
class Desk:
    running: RunningFil
    client: Client
    data: Path

    async def add_editor(self, name: str, role: str = "editor", password: str = PASSWORD) -> None:
        await create_editor(accounts_of(self.running.fil.store), name, password, role)  # type: ignore[arg-type]


async def open_desk(tmp_path: Path, **settings: object) -> tuple[RunningFil, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCES)
    data = tmp_path / "data"
    running = await start_fil(sources, data, **settings)
    app = running.server.config.app
    assert isinstance(app, Starlette)
    app.router.routes.extend(TEST_ROUTES)  # matched per request, so adding them to the running app is enough
    return running, data


@pytest.fixture
async def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Desk]:
    monkeypatch.setenv("FIL_TEST_WIRE_SECRET", "wire-secret")
    running, data = await open_desk(tmp_path, trusted_proxies=("127.0.0.1",))
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            desk = Desk(running, Client(running.base, session), data)
            await desk.add_editor("alice")
            yield desk
    finally:
        await running.stop()


@pytest.mark.asyncio
async def test_login_sets_a_strict_http_only_cookie_and_opens_the_desk(desk: Desk) -> None:
    reply = await desk.client.login("alice", PASSWORD)
    assert reply.status == 303 and reply.headers["Location"] == "/editor/"
    cookie = reply.cookie()
    assert cookie["httponly"] and cookie["samesite"].lower() == "strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http, no proxy saying otherwise
    assert int(cookie["max-age"]) == 12 * 3600

    page = await desk.client.request("GET", "/editor/", cookie=cookie.value)
    assert page.status == 200
    assert 'href="/editor/events/stage-1"' in page.text and "Stage One" in page.text
    assert "Stage Two (draft)" in page.text  # editors see drafts
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"


@pytest.mark.asyncio
async def test_desk_pages_send_strangers_to_the_login_and_back(desk: Desk) -> None:
    reply = await desk.client.request("GET", "/editor/test/private?x=1")
    assert reply.status == 303
    assert reply.headers["Location"] == "/editor/login?next=%2Feditor%2Ftest%2Fprivate%3Fx%3D1"
    form = await desk.client.request("GET", reply.headers["Location"])
    assert form.status == 200 and 'value="/editor/test/private?x=1"' in form.text

    after = await desk.client.login("alice", PASSWORD, next="/editor/test/private?x=1")
    assert after.status == 303 and after.headers["Location"] == "/editor/test/private?x=1"
    page = await desk.client.request("GET", "/editor/test/private?x=1", cookie=after.cookie().value)
    assert page.text == "hello alice"

    offsite = await desk.client.login("alice", PASSWORD, next="//evil.example/")
    assert offsite.headers["Location"] == "/editor/"


@pytest.mark.asyncio
async def test_wrong_password_or_unknown_name_gets_no_session(desk: Desk) -> None:
    for name, password in [("alice", "wrong password!"), ("nobody", PASSWORD)]:
        reply = await desk.client.login(name, password, headers={"X-Forwarded-For": f"198.51.100.{len(name)}"})
        assert reply.status == 401
        assert reply.cookies == [] and "wrong name or password" in reply.text


@pytest.mark.asyncio
async def test_login_from_another_site_is_refused(desk: Desk) -> None:
    reply = await desk.client.login("alice", PASSWORD, headers={"Origin": "https://evil.example"})
    assert reply.status == 403 and reply.cookies == []
    same = await desk.client.login("alice", PASSWORD, headers={"Origin": desk.running.base})
    assert same.status == 303


@pytest.mark.asyncio
async def test_sixth_attempt_is_throttled_even_with_the_right_password(desk: Desk) -> None:
    await desk.add_editor("bruno")
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    for _ in range(5):
        assert (await desk.client.login("alice", "not the password", headers=attacker)).status == 401
    throttled = await desk.client.login("alice", PASSWORD, headers=attacker)
    assert throttled.status == 429 and throttled.cookies == []
    assert 0 < int(throttled.headers["Retry-After"]) <= 301
    # the account is locked from everywhere, but another account from another address is not
    assert (await desk.client.login("alice", PASSWORD, headers={"X-Forwarded-For": "198.51.100.7"})).status == 429
    assert (await desk.client.login("bruno", PASSWORD, headers={"X-Forwarded-For": "198.51.100.7"})).status == 303


@pytest.mark.asyncio
async def test_logout_ends_the_session_on_the_server(desk: Desk) -> None:
    cookie = await desk.client.session_cookie()
    page = await desk.client.request("GET", "/editor/", cookie=cookie)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None

    reply = await desk.client.request("POST", "/editor/logout", cookie=cookie, data={"csrf": csrf.group(1)})
    assert reply.status == 303 and reply.headers["Location"] == "/editor/login"
    cleared = reply.cookie()
    assert cleared.value == "" and cleared["max-age"] == "0"
    # the old cookie, replayed, opens nothing any more
    assert (await desk.client.request("GET", "/editor/", cookie=cookie)).status == 303
    assert (await desk.client.request("GET", "/api/test/whoami", cookie=cookie)).status == 401


@pytest.mark.asyncio
async def test_logout_without_the_csrf_token_is_refused(desk: Desk) -> None:
    cookie = await desk.client.session_cookie()
    missing = await desk.client.request("POST", "/editor/logout", cookie=cookie, data={"other": "x"})
    wrong = await desk.client.request("POST", "/editor/logout", cookie=cookie, data={"csrf": "guessed"})
    wrong_header = await desk.client.request("POST", "/editor/logout", cookie=cookie, headers={"X-CSRF-Token": "no"})
    assert (missing.status, wrong.status, wrong_header.status) == (403, 403, 403)
    assert (await desk.client.request("GET", "/editor/", cookie=cookie)).status == 200  # still logged in


@pytest.mark.asyncio
async def test_a_tampered_cookie_is_refused(desk: Desk) -> None:
    cookie = await desk.client.session_cookie()
    session_id, _, signature = cookie.rpartition(".")
    flipped = session_id[:-1] + ("A" if session_id[-1] != "A" else "B")
    for forged in (f"{flipped}.{signature}", f"{session_id}.{signature[:-2]}", session_id):
        assert (await desk.client.request("GET", "/editor/", cookie=forged)).status == 303
        api = await desk.client.request("GET", "/api/test/whoami", cookie=forged)
        assert api.status == 401 and api.headers["Content-Type"].startswith("application/json")


@pytest.mark.asyncio
async def test_an_expired_session_is_refused(desk: Desk) -> None:
    cookie = await desk.client.session_cookie()
    desk.running.fil.auth.clock = lambda: utcnow() + timedelta(hours=12, seconds=1)
    assert (await desk.client.request("GET", "/editor/", cookie=cookie)).status == 303


@pytest.mark.asyncio
async def test_session_requests_that_change_things_need_the_csrf_header(desk: Desk) -> None:
    cookie = await desk.client.session_cookie()
    who = await desk.client.request("GET", "/api/test/whoami", cookie=cookie)
    assert who.status == 200 and (await _json(who)) == {"name": "alice", "role": "editor", "via": "session"}

    refused = await desk.client.request("POST", "/api/test/poke", cookie=cookie, data={"x": "1"})
    assert refused.status == 403 and "CSRF" in refused.text
    page = await desk.client.request("GET", "/editor/", cookie=cookie)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token is not None
    accepted = await desk.client.request(
        "POST", "/api/test/poke", cookie=cookie, headers={"X-CSRF-Token": token.group(1)}, data={"x": "1"}
    )
    assert accepted.status == 200 and (await _json(accepted))["body"] == "x=1"  # the handler still has the body


@pytest.mark.asyncio
async def test_bearer_tokens_authenticate_without_csrf(desk: Desk) -> None:
    token = await create_token(accounts_of(desk.running.fil.store), "alice")
    bearer = {"Authorization": f"Bearer {token}"}
    who = await desk.client.request("GET", "/api/test/whoami", headers=bearer)
    assert who.status == 200 and (await _json(who))["via"] == "token"
    poked = await desk.client.request("POST", "/api/test/poke", headers=bearer, data={"x": "1"})
    assert poked.status == 200
    assert (await desk.client.request("GET", "/api/test/admin", headers=bearer)).status == 403  # role: editor

    nobody = await desk.client.request("GET", "/api/test/whoami")
    assert nobody.status == 401 and nobody.headers["WWW-Authenticate"].startswith("Bearer")
    assert str((await _json(nobody))["error"]).startswith("login required")
    # a bad token is refused even when a good session cookie rides along
    cookie = await desk.client.session_cookie()
    bad = await desk.client.request("GET", "/api/test/whoami", cookie=cookie, headers={"Authorization": "Bearer x"})
    assert bad.status == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]

    await accounts_of(desk.running.fil.store).set_editor_disabled("alice", True)
    assert (await desk.client.request("GET", "/api/test/whoami", headers=bearer)).status == 401


@pytest.mark.asyncio
async def test_admin_token_passes_admin_routes(desk: Desk) -> None:
    await desk.add_editor("chief", role="admin")
    token = await create_token(accounts_of(desk.running.fil.store), "chief")
    reply = await desk.client.request("GET", "/api/test/admin", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200 and (await _json(reply)) == {"name": "chief"}


async def _json(reply: Reply) -> dict[str, object]:
    import json

    value = json.loads(reply.text)
    assert isinstance(value, dict)
    return value


@pytest.mark.asyncio
async def test_cookie_is_secure_only_when_a_trusted_proxy_says_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIL_TEST_WIRE_SECRET", "wire-secret")
    for trusted, expected in [(("127.0.0.1",), True), ((), False)]:
        running, _ = await open_desk(tmp_path / f"trusted-{bool(trusted)}", trusted_proxies=trusted)
        try:
            await create_editor(accounts_of(running.fil.store), "alice", PASSWORD, "editor")
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
                client = Client(running.base, session)
                reply = await client.login("alice", PASSWORD, headers={"X-Forwarded-Proto": "https"})
                assert reply.status == 303
                assert bool(reply.cookie()["secure"]) is expected
        finally:
            await running.stop()


@pytest.mark.asyncio
async def test_sessions_survive_a_restart_with_the_generated_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIL_TEST_WIRE_SECRET", "wire-secret")
    running, data = await open_desk(tmp_path)
    try:
        await create_editor(accounts_of(running.fil.store), "alice", PASSWORD, "editor")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            cookie = await Client(running.base, session).session_cookie()
    finally:
        await running.stop()
    assert stat.S_IMODE((data / "secret_key").stat().st_mode) == 0o600

    again, _ = await open_desk(tmp_path)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            page = await Client(again.base, session).request("GET", "/editor/", cookie=cookie)
            assert page.status == 200 and "alice" in page.text
    finally:
        await again.stop()

"""Editor accounts: password hashing, bearer tokens, signed session cookies, CSRF, login throttling,
and the request-level checks every editor route makes (`authenticate`, `require_editor`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from curation.config import Settings
from curation.errors import CurationError
from curation.models import utcnow
from curation.ratelimit import Limiter, LoginLimiter, limiter_keys
from curation.store.accounts import AccountStore, RoleName, SessionRecord

if TYPE_CHECKING:
    from curation.service import Fil

log = logging.getLogger("curation.auth")

# -- passwords -------------------------------------------------------------------------------

#: scrypt cost: 32 MiB and about 75 ms per hash on one 2020s core; stored with each hash, so it can rise later
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
EDITOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + (1 << 20)  # OpenSSL's default cap (32 MiB) is too tight for n=2**15
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=HASH_BYTES)


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$SALT$HASH` (URL-safe base64), with a fresh random salt. CPU-heavy: call it off the loop."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time comparison against an encoded hash; False for a malformed one. CPU-heavy."""
    try:
        scheme, n_, r_, p_, salt_, digest_ = encoded.split("$")
        n, r, p, salt, digest = int(n_), int(r_), int(p_), _unb64(salt_), _unb64(digest_)
    except ValueError:
        return False
    # bounds keep a corrupted row from asking for gigabytes
    if scheme != "scrypt" or not (2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


def check_editor_name(name: str) -> None:
    if not EDITOR_NAME.match(name):
        raise ValueError(f"editor name {name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-', starting alphanumeric")


def check_password(password: str) -> None:
    if not password.strip():
        raise ValueError("password: empty")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"password: at most {MAX_PASSWORD} characters")


# -- bearer tokens ---------------------------------------------------------------------------


def new_token() -> str:
    """A bearer token (256 random bits); shown once, stored only as token_hash(token)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 hex: tokens carry 256 random bits, so a fast hash is enough (no salt, no stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_editor(accounts: AccountStore, name: str, password: str, role: RoleName) -> bool:
    """Create the editor or reset its password and role (its desk sessions end). True when created.

    Raises:
        ValueError: a bad name or too short a password.
    """
    check_editor_name(name)
    check_password(password)
    encoded = await asyncio.to_thread(hash_password, password)
    created = await accounts.put_editor(name, encoded, role, now=utcnow())
    if not created:
        await accounts.delete_sessions_of(name)  # a new password logs the old ones out
    return created


async def create_token(accounts: AccountStore, name: str) -> str:
    """A new bearer token for the existing editor `name` (LookupError otherwise)."""
    token = new_token()
    await accounts.add_token(name, token_hash(token), now=utcnow())
    return token


# -- the signing key -------------------------------------------------------------------------

SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY = 32


def secret_key_path(store_url: str) -> Path | None:
    """`secret_key` next to the SQLite file of `CURATION_STORE`; None for an in-memory store."""
    scheme, _, rest = store_url.partition("://")
    if scheme != "sqlite":
        return None
    path = rest[1:] if rest.startswith("/") else rest
    if not path or path == ":memory:":
        return None
    return Path(path).absolute().parent / SECRET_KEY_FILE


def load_secret_key(settings: Settings) -> bytes:
    """CURATION_SECRET_KEY, or the key kept in the data folder (made once, mode 0600) so sessions survive
    restarts. Blocking file I/O: call it off the loop.

    Raises:
        ValueError: the key is too short, or a store other than SQLite has no data folder to keep one in.
        OSError: the key file cannot be written or read (its path in the message).
    """
    if settings.secret_key:
        if len(settings.secret_key) < MIN_SECRET_KEY:
            raise ValueError(f"CURATION_SECRET_KEY: at least {MIN_SECRET_KEY} characters (a random string)")
        return settings.secret_key.encode()
    path = secret_key_path(settings.store)
    if path is None:
        if not settings.store.startswith("sqlite:"):
            raise ValueError(
                f"CURATION_SECRET_KEY: required with CURATION_STORE={settings.store!r} (shared by processes)"
            )
        log.warning("in-memory store and no CURATION_SECRET_KEY: desk sessions end with this process")
        return secrets.token_bytes(32)
    return _key_file(path)


def _key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # write aside then link: two processes starting together end up with the same key, never a half-written one
        spare = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(spare, path)
        finally:
            spare.unlink(missing_ok=True)
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_KEY:
        raise ValueError(f"{path}: the session key is shorter than {MIN_SECRET_KEY} characters; delete the file")
    return key.encode()


# -- session cookies -------------------------------------------------------------------------

COOKIE_NAME = "fil_session"
#: Strict: the desk is opened from a bookmark or by typing its address, and every state change is a
#: same-origin fetch or form. A link to the desk from another site (chat, mail) arrives without the
#: cookie and shows the login page; Lax would carry it on such top-level GETs, which are harmless
#: here (CSRF tokens guard every change) but Strict also keeps the cookie out of every cross-site request.
SAMESITE: Literal["strict"] = "strict"


def _signature(session_id: str, key: bytes) -> str:
    return _b64(hmac.new(key, b"fil-session\0" + session_id.encode(), hashlib.sha256).digest())


def sign_session(session_id: str, key: bytes) -> str:
    return f"{session_id}.{_signature(session_id, key)}"


def unsign_session(value: str, key: bytes) -> str | None:
    """The session id a cookie carries, or None when the signature does not match (tampered, other key)."""
    session_id, dot, signature = value.rpartition(".")
    if not dot or not session_id:
        return None
    if not hmac.compare_digest(signature.encode(), _signature(session_id, key).encode()):
        return None
    return session_id


# -- who is asking ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Editor:
    """An authenticated editor, as one request sees it."""

    name: str
    role: RoleName
    via: Literal["token", "session"]
    #: the desk session (None for a bearer token)
    session_id: str | None = None
    #: the session's CSRF token, to render into desk pages (None for a bearer token)
    csrf: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class LoginRefused(CurationError):
    """Wrong name or password, or a disabled account (the message does not say which)."""


class LoginThrottled(CurationError):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins: try again in {int(retry_after) + 1} s")


class Auth:
    """Logins, sessions and tokens for one Fil: the accounts live in the store, the key signs cookies.

    A refused login is answered after a pause that doubles with each failure in a row of the account or
    the address (FAIL_DELAY, then twice that, up to MAX_FAIL_DELAY): guessing slows down before the
    limiter's lockout stops it, and a person who mistypes once does not notice. The pause is an
    asyncio.sleep inside the account's turn, so concurrent guesses at one account wait in line while
    everything else goes on. The run of failures is counted in this process (the lockout itself is
    shared through Redis when there are several).
    """

    #: password checks running at once: each takes a core and 32 MiB
    CONCURRENT_HASHES = 2
    #: the first failure's pause, and the longest pause, in seconds
    FAIL_DELAY, MAX_FAIL_DELAY = 0.05, 2.0
    #: a run of failures is forgotten after this long without another
    FAIL_MEMORY = 300.0
    #: runs remembered at most (a spray of made-up names must not grow memory): the oldest go first
    MAX_RUNS = 10_000

    def __init__(
        self,
        store: object,
        settings: Settings,
        *,
        limiter: Limiter | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        #: None when the store keeps no accounts: every editor route then answers 401
        self.accounts: AccountStore | None = store if isinstance(store, AccountStore) else None
        self.settings = settings
        self.session_ttl = timedelta(seconds=settings.session_ttl)
        self.limiter: Limiter = limiter or LoginLimiter()
        self.clock = clock
        self._key: bytes | None = None
        self._hashing = asyncio.Semaphore(self.CONCURRENT_HASHES)
        self._account_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._dummy_hash: str | None = None
        #: how a refused login pauses (tests swap it to watch the pauses without waiting)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._runs: OrderedDict[str, tuple[int, float]] = OrderedDict()

    async def start(self) -> None:
        self._key = await asyncio.to_thread(load_secret_key, self.settings)

    @property
    def key(self) -> bytes:
        assert self._key is not None, "Auth.start() not awaited"
        return self._key

    # -- login / logout ------------------------------------------------------------------

    async def login(self, name: str, password: str, *, address: str | None) -> SessionRecord:
        """A new desk session for the right name and password.

        Raises:
            LoginThrottled: too many failures for this account or address lately (nothing was checked).
            LoginRefused: wrong name or password, or a disabled account.
        """
        if self.accounts is None:
            raise LoginRefused("this store keeps no editor accounts")
        keys = limiter_keys(name, address)
        # one attempt per account at a time, so concurrent guesses cannot all slip past the limiter's count
        async with self._one_at_a_time(name.casefold()):
            wait = await self.limiter.check(keys)
            if wait > 0:
                raise LoginThrottled(wait)
            record = await self.accounts.get_editor(name)
            encoded = record.password_hash if record is not None else await self._dummy()
            async with self._hashing:
                # an unknown name costs the same time as a known one: timing does not tell names apart
                ok = await asyncio.to_thread(verify_password, password, encoded)
            if not ok or record is None or record.disabled:
                await self.limiter.fail(keys)
                await self.sleep(self._pause(keys))
                raise LoginRefused("wrong name or password")
            await self.limiter.clear(name)
            self._runs.pop(keys[0], None)  # the account's run ends; the address's does not (a shared NAT)
        now = self.clock()
        await self.accounts.delete_expired_sessions(now)
        session = SessionRecord(
            id=secrets.token_urlsafe(32),
            name=record.name,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.session_ttl,
        )
        await self.accounts.add_session(session)
        log.info("editor %s logged in from %s", record.name, address or "an unknown address")
        return session

    def _pause(self, keys: list[str]) -> float:
        """Count one more failure in a row for each key; the pause owed for the longest run."""
        now = time.monotonic()
        longest = 0
        for key in keys:
            count, last = self._runs.pop(key, (0, now))
            count = 1 if now - last > self.FAIL_MEMORY else count + 1
            self._runs[key] = (count, now)
            longest = max(longest, count)
        while len(self._runs) > self.MAX_RUNS:
            self._runs.popitem(last=False)
        return float(min(self.MAX_FAIL_DELAY, self.FAIL_DELAY * 2 ** min(longest - 1, 32)))

    async def logout(self, editor: Editor) -> None:
        if self.accounts is not None and editor.session_id is not None:
            await self.accounts.delete_session(editor.session_id)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, key: str) -> AsyncIterator[None]:
        lock, users = self._account_locks.get(key, (asyncio.Lock(), 0))
        self._account_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._account_locks[key]
            if users == 1:
                del self._account_locks[key]
            else:
                self._account_locks[key] = (lock, users - 1)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))
        return self._dummy_hash

    # -- credentials -> editor -----------------------------------------------------------

    async def editor_for_token(self, token: str) -> Editor | None:
        if self.accounts is None or not token:
            return None
        record = await self.accounts.editor_for_token(token_hash(token), now=self.clock())
        if record is None or record.disabled:
            return None
        return Editor(name=record.name, role=record.role, via="token")

    async def editor_for_cookie(self, value: str) -> Editor | None:
        session_id = unsign_session(value, self.key)
        if self.accounts is None or session_id is None:
            return None
        session = await self.accounts.get_session(session_id)
        if session is None:
            return None
        if session.expires_at <= self.clock():
            await self.accounts.delete_session(session_id)
            return None
        record = await self.accounts.get_editor(session.name)
        if record is None or record.disabled:
            return None
        return Editor(name=record.name, role=record.role, via="session", session_id=session.id, csrf=session.csrf)


# -- request-level checks --------------------------------------------------------------------

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
#: desk forms are urlencoded (the browser default); a multipart form must send the header instead
_FORM_TYPE = "application/x-www-form-urlencoded"


class AuthError(HTTPException):
    """401 or 403 from require_editor; the app answers JSON on API paths and redirects desk pages to the login."""


def _auth(request: HTTPConnection) -> Auth:
    fil: Fil = request.app.state.fil
    return fil.auth


async def authenticate(request: HTTPConnection) -> Editor | None:
    """The editor behind a request or websocket: an `Authorization: Bearer` token first, else the session cookie.

    A bearer header that does not check out is an answer in itself (None), not a cue to try the cookie.
    """
    auth = _auth(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return await auth.editor_for_token(token.strip())
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie:
        return await auth.editor_for_cookie(cookie)
    return None


async def require_editor(request: Request, *, admin: bool = False, csrf: bool = True) -> Editor:
    """The authenticated editor, or AuthError: 401 (with WWW-Authenticate: Bearer) when nobody is logged in,
    403 for a missing admin role or, on a session with `csrf`, a missing or wrong CSRF token.

    Pass csrf=False only for requests that change nothing (GET). Bearer tokens never need a CSRF token.
    """
    editor = await authenticate(request)
    if editor is None:
        sent_token = request.headers.get("authorization", "").lower().startswith("bearer")
        challenge = 'Bearer realm="fil", error="invalid_token"' if sent_token else 'Bearer realm="fil"'
        raise AuthError(
            401, "login required: a desk session or Authorization: Bearer <token>", {"WWW-Authenticate": challenge}
        )
    if admin and not editor.is_admin:
        raise AuthError(403, f"editor {editor.name}: this needs the admin role")
    if csrf:
        await check_csrf(request, editor)
    return editor


async def check_csrf(request: Request, editor: Editor) -> None:
    """A session request must echo its CSRF token (X-CSRF-Token header, or a `csrf` field of an urlencoded
    form); AuthError 403 otherwise. Bearer-token requests carry no cookie, so nothing to forge: exempt."""
    if editor.via != "session":
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(_FORM_TYPE):
        # parsed by hand (no python-multipart); request.body() is cached, so the handler can still read it
        fields = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        given = fields.get(CSRF_FIELD, [None])[0]
    if not given or editor.csrf is None or not hmac.compare_digest(given.encode(), editor.csrf.encode()):
        raise AuthError(403, f"CSRF token missing or wrong: send the {CSRF_HEADER} header of this session")


def cookie_is_secure(request: Request, settings: Settings) -> bool:
    """HTTPS as the browser sees it: the request's scheme (X-Forwarded-Proto counts only from
    CURATION_TRUSTED_PROXIES, uvicorn sees to that) or an https CURATION_PUBLIC_URL."""
    return request.url.scheme == "https" or settings.public_url.startswith("https://")


def set_session_cookie(response: Response, request: Request, session: SessionRecord) -> None:
    auth = _auth(request)
    response.set_cookie(
        COOKIE_NAME,
        sign_session(session.id, auth.key),
        max_age=int(auth.session_ttl.total_seconds()),
        path="/",
        secure=cookie_is_secure(request, auth.settings),
        httponly=True,
        samesite=SAMESITE,
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    auth = _auth(request)
    response.delete_cookie(
        COOKIE_NAME, path="/", secure=cookie_is_secure(request, auth.settings), httponly=True, samesite=SAMESITE
    )


def safe_next(value: str | None, default: str = "/editor/") -> str:
    """A redirect target from a `next` parameter: a path on this site only (no scheme, no //host)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 or c == "\\" for c in value):
        return default
    return value

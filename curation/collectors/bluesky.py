"""The Bluesky collector: accounts polled from the AppView and streamed from Jetstream, hashtags searched with a login.

Account sources poll `app.bsky.feed.getAuthorFeed` (no auth) and also stream through the process's shared Jetstream
connection (curation/collectors/jetstream.py). Hashtag sources poll `app.bsky.feed.searchPosts`, which needs an
app-password session: `auth_env` names an environment variable holding `HANDLE:APP_PASSWORD` (the handle may be a
DID; append `@https://pds.example` when the account is not hosted on bsky.social).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlencode

from curation.collectors import CollectorContext, Deliver, PollResult, json_input
from curation.collectors.atproto import (
    DID,
    EventBatch,
    FeedPage,
    JetstreamEvent,
    MalformedPost,
    Profile,
    profile_from_view,
    quoted_uri,
    read_events,
    read_feed,
)
from curation.collectors.jetstream import MAX_PENDING, Dropped, JetstreamPool, Opened
from curation.errors import FetchError, ParseError, RetryLaterError, SourceError
from curation.models import Entry, Source, SourceStatus, rfc3339
from curation.sanitize import plain_text, safe_url

log = logging.getLogger("curation.collectors.bluesky")

DEFAULT_APPVIEW = "https://public.api.bsky.app"
DEFAULT_JETSTREAM = "wss://jetstream2.us-east.bsky.network/subscribe"
DEFAULT_PDS = "https://bsky.social"
PAGE_SIZE = 30
#: pages walked back when none of the recently seen posts is on the first one (a burst of posts between polls)
MAX_PAGES = 3
#: post URIs remembered per source to know where the new posts end
RECENT = 100
PROFILE_TTL = 3600.0
#: a failed profile lookup is not retried for every post
PROFILE_RETRY = 60.0
#: posts fetched per getPosts call (the lexicon's limit)
GET_POSTS_LIMIT = 25

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(slots=True)
class Session:
    """An app-password session on a PDS; `service` is where its requests go (the account's PDS)."""

    pds: str
    identifier: str
    access: str
    refresh: str
    service: str


class BlueskyCollector:
    """Collects `kind: bluesky` sources.

    Args:
        context: the shared fetcher and executor.
        settle: seconds the shared Jetstream connection waits to gather subscriptions before (re)connecting.
        checkpoint: seconds of stream silence after which a source's cursor is advanced to the socket's position.
    """

    def __init__(self, context: CollectorContext, *, settle: float = 0.2, checkpoint: float = 30.0) -> None:
        self.context = context
        self.checkpoint = checkpoint
        self.jetstream = JetstreamPool(context.fetcher, settle=settle)
        self._profiles: dict[str, tuple[float, Profile | None]] = {}
        self._lookups: dict[str, asyncio.Future[Profile | None]] = {}
        self._sessions: dict[str, Session] = {}
        self._logins: dict[str, asyncio.Lock] = {}

    # -- the Collector protocol ------------------------------------------------------------------------

    async def poll(self, source: Source, status: SourceStatus) -> PollResult:
        if source.options.get("hashtag"):
            return await self._poll_hashtag(source, status)
        return await self._poll_account(source, status)

    def lease_key(self, source: Source) -> str:
        """Accounts on one Jetstream endpoint share its connection, so one process holds them all."""
        if self.streams(source):
            return "jetstream:" + str(source.options.get("jetstream") or DEFAULT_JETSTREAM)
        return f"source:{source.id}"

    def streams(self, source: Source) -> bool:
        """Accounts stream from Jetstream; hashtags do not (that would mean the whole network's posts)."""
        return bool(source.options.get("actor")) and not source.options.get("hashtag")

    async def stream(self, source: Source, status: SourceStatus, deliver: Deliver) -> None:
        """Hold this account's place on the shared Jetstream connection until cancelled or dropped.

        Raises:
            SourceError: the connection dropped (the runner polls at once and subscribes again).
        """
        did = await self._did(source, status)
        endpoint = str(source.options.get("jetstream") or DEFAULT_JETSTREAM)
        subscription = self.jetstream.subscribe(endpoint, did, resume=_cursor(status.cursor))
        held: list[JetstreamEvent] = []
        try:
            while True:
                # until the first poll has imported the account's history, events wait (the runner trims a first
                # import to the backfill, which must be the poll's page, not a streamed post)
                notices = await subscription.next(self.checkpoint if status.imported else 0.25)
                for notice in notices:
                    if isinstance(notice, Opened):
                        status.details["stream"] = {"state": "open", "since": rfc3339(notice.since), "url": endpoint}
                    elif isinstance(notice, Dropped):
                        if status.imported:  # keep the place reached: the next subscription replays from there
                            await self._deliver(source, status, did, held, notice.position, deliver, force=True)
                        raise SourceError(f"Jetstream {endpoint}: {notice.reason}", source_id=source.id)
                    else:
                        held.append(notice)
                if len(held) > MAX_PENDING:
                    raise SourceError(
                        f"Jetstream {endpoint}: {len(held)} events held while the first poll has not succeeded",
                        source_id=source.id,
                    )
                if status.imported and (held or not notices):
                    await self._deliver(source, status, did, held, subscription.position(), deliver)
                    held = []
        finally:
            self.jetstream.unsubscribe(subscription)

    # -- accounts ----------------------------------------------------------------------------------------

    async def _poll_account(self, source: Source, status: SourceStatus) -> PollResult:
        actor = _actor(source)
        appview = _base(source.options.get("appview") or DEFAULT_APPVIEW)
        seen = frozenset(_recent(status))
        entries: list[Entry] = []
        uris: list[str] = []
        cursor: str | None = None
        skipped: dict[str, int] = {}
        for _ in range(MAX_PAGES):
            query = {"actor": actor, "filter": "posts_no_replies", "limit": str(PAGE_SIZE)}
            if cursor:
                query["cursor"] = cursor
            url = f"{appview}/xrpc/app.bsky.feed.getAuthorFeed?{urlencode(query)}"
            body = await self._api_get(url, subject=actor)
            page = await self._parse(url, read_feed, body, seen=seen)
            self._learn(source, status, page)
            entries.extend(page.entries)
            uris.extend(page.uris)
            for reason, count in page.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
            # a first poll takes one page (the runner keeps the backfill); later ones walk back to a seen post
            if page.reached_seen or not seen or page.cursor is None:
                break
            cursor = page.cursor
        _remember(status, uris)
        status.details["skipped"] = skipped
        return PollResult(entries=entries)

    def _learn(self, source: Source, status: SourceStatus, page: FeedPage) -> None:
        """Keep the account's DID and profile from the feed (free, and what Jetstream posts lack)."""
        actor = _actor(source)
        for profile in page.profiles:
            if actor not in (profile.did, profile.handle):
                continue
            self._profiles[profile.did] = (time.monotonic(), profile)
            status.memo.update(actor=actor, did=profile.did, profile={**profile.to_memo(), "at": time.time()})
            if profile.hidden:
                raise SourceError(
                    f"@{profile.handle or profile.did} asks not to be shown to logged-out viewers "
                    "(label !no-unauthenticated): Fil does not collect this account",
                    source_id=source.id,
                )

    async def _did(self, source: Source, status: SourceStatus) -> str:
        """The account's DID (Jetstream filters by DID): the actor itself, the memo, or resolveHandle."""
        actor = _actor(source)
        if actor.startswith("did:"):
            return actor
        did = status.memo.get("did")
        if status.memo.get("actor") == actor and isinstance(did, str) and DID.match(did):
            return did
        appview = _base(source.options.get("appview") or DEFAULT_APPVIEW)
        url = f"{appview}/xrpc/com.atproto.identity.resolveHandle?{urlencode({'handle': actor})}"
        data = _json_object(await self._api_get(url, subject=actor), url)
        did = data.get("did")
        if not isinstance(did, str) or not DID.match(did):
            raise ParseError(f"resolveHandle gave no valid DID for {actor} ({url})", source_id=source.id)
        status.memo.update(actor=actor, did=did)
        return did

    # -- hashtags ----------------------------------------------------------------------------------------

    async def _poll_hashtag(self, source: Source, status: SourceStatus) -> PollResult:
        tag = str(source.options["hashtag"])
        query = urlencode({"q": f"#{tag}", "sort": "latest", "limit": str(PAGE_SIZE)})
        url, body = await self._authed_get(source, f"app.bsky.feed.searchPosts?{query}", subject=f"#{tag}")
        page = await self._parse(url, read_feed, body, seen=frozenset(_recent(status)))
        _remember(status, page.uris)
        status.details["skipped"] = page.skipped
        return PollResult(entries=page.entries)

    async def _session(self, source: Source) -> Session:
        env = source.options.get("auth_env")
        value = os.environ.get(str(env), "") if env else ""
        if not value.strip():
            where = f"set {env} to HANDLE:APP_PASSWORD" if env else "add `auth_env: NAME` and set NAME"
            raise SourceError(
                f"hashtag search on Bluesky needs auth_env with an app password: {where} "
                "(an app password, from Bluesky's Settings > Privacy and security > App passwords)",
                source_id=source.id,
            )
        identifier, password, pds = _credentials(str(env), value, source.id)
        key = hashlib.sha256(value.encode()).hexdigest()
        async with self._logins.setdefault(key, asyncio.Lock()):
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = await self._login(pds, identifier, password, source.id)
        return session

    async def _login(self, pds: str, identifier: str, password: str, source_id: str) -> Session:
        url = f"{pds}/xrpc/com.atproto.server.createSession"
        body = json.dumps({"identifier": identifier, "password": password}).encode()
        try:
            response = await self.context.fetcher.post(url, data=body, headers={"Content-Type": "application/json"})
        except RetryLaterError:
            raise
        except FetchError as e:
            raise _api_error(e, f"the login of {identifier}", action="Bluesky login failed") from None
        return _session_from(_json_object(response.body, url), pds, identifier)

    async def _refresh(self, session: Session) -> bool:
        """Swap the session's tokens for fresh ones; False when the refresh token is refused too."""
        url = f"{session.pds}/xrpc/com.atproto.server.refreshSession"
        try:
            response = await self.context.fetcher.post(url, headers={"Authorization": f"Bearer {session.refresh}"})
            fresh = _session_from(_json_object(response.body, url), session.pds, session.identifier)
        except RetryLaterError:
            raise
        except SourceError as e:
            log.info("Bluesky session refresh for %s refused (%s); logging in again", session.identifier, e)
            return False
        session.access, session.refresh, session.service = fresh.access, fresh.refresh, fresh.service
        return True

    async def _authed_get(self, source: Source, method: str, *, subject: str) -> tuple[str, bytes]:
        """GET `<service>/xrpc/<method>` with the source's session: (URL, body). An expired access token is
        refreshed (ahead of time when its expiry is readable, else on ExpiredToken) and the request made again."""
        session = await self._session(source)
        expiry = jwt_expiry(session.access)
        if expiry is not None and (expiry - datetime.now(UTC)).total_seconds() < 60:
            session = await self._renew(source, session)
        for attempt in range(2):
            url = f"{session.service}/xrpc/{method}"
            try:
                headers = {"Authorization": f"Bearer {session.access}"}
                return url, (await self.context.fetcher.get(url, accept="application/json", headers=headers)).body
            except RetryLaterError:
                raise
            except FetchError as e:
                code, _ = _xrpc_error(e.body)
                expired = e.status == 401 or code in ("ExpiredToken", "InvalidToken")
                if attempt or not expired:
                    raise _api_error(e, subject) from None
            session = await self._renew(source, session)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _renew(self, source: Source, session: Session) -> Session:
        """Fresh tokens for a session: refreshSession, or a new login when the refresh token is refused too."""
        if await self._refresh(session):
            return session
        for key, known in list(self._sessions.items()):
            if known is session:
                del self._sessions[key]
        return await self._session(source)

    # -- Jetstream deliveries ----------------------------------------------------------------------------

    async def _deliver(
        self,
        source: Source,
        status: SourceStatus,
        did: str,
        events: list[JetstreamEvent],
        position: int | None,
        deliver: Deliver,
        *,
        force: bool = False,
    ) -> None:
        """Hand a batch of events (or, with none, just the advanced cursor) to the runner."""
        stored = _cursor(status.cursor) or 0
        latest = max([position or 0, *(e.time_us for e in events)])
        cursor = str(latest) if latest > stored else None  # a cursor never moves backwards
        if not events:
            # a quiet account: advance its cursor now and then, so a restart does not replay hours for nothing
            if cursor is not None and (force or latest - stored >= self.checkpoint * 1_000_000):
                await deliver(PollResult(cursor=cursor))
            return
        creates = [e for e in events if e.operation != "delete"]
        profiles: dict[str, Profile] = {}
        quoted: dict[str, Mapping[str, Any]] = {}
        if creates:
            profile = await self._profile(source, status, did)
            if profile is not None:
                profiles[did] = profile
            quoted = await self._quoted(source, [uri for e in creates if (uri := quoted_uri(e.record))])
        batch: EventBatch = await self._run(read_events, events, profiles, quoted)
        _remember(status, [e.key for e in batch.entries])
        if batch.skipped.get("hidden"):
            status.details["skipped"] = {"hidden": batch.skipped["hidden"]}
        await deliver(PollResult(entries=batch.entries, deleted=batch.deleted, cursor=cursor))

    async def _profile(self, source: Source, status: SourceStatus, did: str) -> Profile | None:
        """The author of a streamed post: one getProfiles lookup per DID per hour, shared by every source."""
        cached = self._profiles.get(did)
        if cached is not None:
            age = time.monotonic() - cached[0]
            if age < (PROFILE_TTL if cached[1] is not None else PROFILE_RETRY):
                return cached[1] or _memo_profile(status, did)
        memo = _memo_profile(status, did, fresh=True)
        if memo is not None:
            self._profiles[did] = (time.monotonic(), memo)
            return memo
        lookup = self._lookups.get(did)
        if lookup is None:
            lookup = self._lookups[did] = asyncio.ensure_future(self._fetch_profile(source, did))
            lookup.add_done_callback(lambda _: self._lookups.pop(did, None))
        profile = await asyncio.shield(lookup)
        self._profiles[did] = (time.monotonic(), profile)
        if profile is not None:
            status.memo["profile"] = {**profile.to_memo(), "at": time.time()}
        return profile or _memo_profile(status, did)

    async def _fetch_profile(self, source: Source, did: str) -> Profile | None:
        appview = _base(source.options.get("appview") or DEFAULT_APPVIEW)
        url = f"{appview}/xrpc/app.bsky.actor.getProfiles?{urlencode({'actors': did})}"
        try:
            data = _json_object(await self._api_get(url, subject=did), url)
        except SourceError as e:
            log.warning("%s: no profile for %s (%s); its posts show the DID", source.id, did, e)
            return None
        profiles = data.get("profiles")
        for view in profiles if isinstance(profiles, list) else []:
            profile = profile_from_view(view)
            if profile is not None and profile.did == did:
                return profile
        return None

    async def _quoted(self, source: Source, uris: list[str]) -> dict[str, Mapping[str, Any]]:
        """The posts that streamed posts quote (raw records only name them), for their cards; {} on failure."""
        if not uris:
            return {}
        appview = _base(source.options.get("appview") or DEFAULT_APPVIEW)
        found: dict[str, Mapping[str, Any]] = {}
        unique = list(dict.fromkeys(uris))
        for start in range(0, len(unique), GET_POSTS_LIMIT):
            chunk = unique[start : start + GET_POSTS_LIMIT]
            url = f"{appview}/xrpc/app.bsky.feed.getPosts?{urlencode([('uris', u) for u in chunk])}"
            try:
                data = _json_object(await self._api_get(url, subject="quoted posts"), url)
            except SourceError as e:
                log.info("%s: quoted posts not fetched (%s); their cards show the link only", source.id, e)
                return found
            posts = data.get("posts")
            for post in posts if isinstance(posts, list) else []:
                if isinstance(post, Mapping) and isinstance(post.get("uri"), str):
                    found[post["uri"]] = post
        return found

    # -- plumbing ----------------------------------------------------------------------------------------

    async def _api_get(self, url: str, *, subject: str) -> bytes:
        try:
            response = await self.context.fetcher.get(url, accept="application/json")
        except RetryLaterError:
            raise
        except FetchError as e:
            raise _api_error(e, subject) from None
        return response.body

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a pure parser off the event loop (a process pool in the server: arguments must pickle)."""
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.context.executor, call)

    async def _parse(self, url: str, fn: Callable[..., FeedPage], body: bytes, **kwargs: Any) -> FeedPage:
        try:
            return await self._run(fn, body, **kwargs)
        except MalformedPost as e:
            raise ParseError(f"unreadable AppView answer from {url}: {e}") from None


def _actor(source: Source) -> str:
    """The configured handle (lower case: handles are case-insensitive) or DID (case-sensitive)."""
    actor = str(source.options["actor"]).removeprefix("@")
    return actor if actor.startswith("did:") else actor.lower()


def _base(url: object) -> str:
    return str(url).rstrip("/")


def _cursor(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _recent(status: SourceStatus) -> list[str]:
    recent = status.memo.get("recent")
    return [u for u in recent if isinstance(u, str)] if isinstance(recent, list) else []


def _remember(status: SourceStatus, uris: list[str]) -> None:
    if uris:
        status.memo["recent"] = list(dict.fromkeys([*uris, *_recent(status)]))[:RECENT]


def _memo_profile(status: SourceStatus, did: str, *, fresh: bool = False) -> Profile | None:
    memo = status.memo.get("profile")
    profile = Profile.from_memo(memo)
    if profile is None or profile.did != did:
        return None
    if fresh:
        at = memo.get("at") if isinstance(memo, Mapping) else None
        if not isinstance(at, int | float) or time.time() - at > PROFILE_TTL:
            return None
    return profile


def _json_object(body: bytes, url: str) -> dict[str, Any]:
    try:
        data = json_input.loads(body)
    except ValueError as e:
        raise ParseError(f"not JSON from {url}: {e}") from None
    if not isinstance(data, dict):
        raise ParseError(f"expected a JSON object from {url}")
    return data


def _xrpc_error(body: bytes) -> tuple[str, str]:
    """(error, message) of an XRPC error body `{"error": ..., "message": ...}`; empty strings if absent."""
    try:
        data = json_input.loads(body) if body else None
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    error, message = data.get("error"), data.get("message")
    return (
        plain_text(error)[:100] if isinstance(error, str) else "",
        plain_text(message)[:300] if isinstance(message, str) else "",
    )


_NOT_FOUND = ("ActorNotFound", "HandleNotFound", "ProfileNotFound", "RepoNotFound")
_UNREADABLE = {
    "BlockedActor": "blocked (BlockedActor)",
    "BlockedByActor": "blocks this viewer (BlockedByActor)",
    "AccountTakedown": "taken down",
    "AccountDeactivated": "deactivated",
    "RepoTakendown": "taken down",
    "RepoDeactivated": "deactivated",
    "RepoSuspended": "suspended",
}


def _api_error(error: FetchError, subject: str, *, action: str = "") -> FetchError:
    """A FetchError that says what the API said, naming the account (or tag) it was about."""
    code, message = _xrpc_error(error.body)
    detail = ": ".join(p for p in (code, message) if p)
    lowered = message.lower()
    if code in _NOT_FOUND or (error.status == 400 and "not found" in lowered and "profile" in lowered):
        text = f"Bluesky account {subject} not found"
    elif "unable to resolve handle" in lowered:
        text = f"Bluesky handle {subject} does not resolve to an account"
    elif code in _UNREADABLE:
        text = f"Bluesky account {subject} cannot be read: {_UNREADABLE[code]}"
    elif action:
        text = f"{action} for {subject}"
    else:
        text = f"Bluesky refused the request for {subject}"
    text = f"{text} ({error.message}{': ' + detail if detail else ''})"
    return FetchError(text, url=error.url, status=error.status, source_id=error.source_id, body=error.body)


def _credentials(env: str, value: str, source_id: str) -> tuple[str, str, str]:
    """(identifier, app password, PDS base URL) from `HANDLE:APP_PASSWORD[@https://pds]`; never echoes the value."""
    value = value.strip()
    pds = DEFAULT_PDS
    for scheme in ("@https://", "@http://"):
        if scheme in value:
            value, _, rest = value.partition("@" + scheme[1:])
            pds = _base(scheme[1:] + rest)
            break
    identifier, _, password = value.rpartition(":")  # a DID has colons; an app password has none
    if not identifier or not password or safe_url(pds) is None:
        raise SourceError(
            f"{env} must hold HANDLE:APP_PASSWORD (optionally followed by @https://your.pds); it does not",
            source_id=source_id,
        )
    return identifier.lstrip("@"), password, pds


def _session_from(data: Mapping[str, Any], pds: str, identifier: str) -> Session:
    access, refresh = data.get("accessJwt"), data.get("refreshJwt")
    if not isinstance(access, str) or not isinstance(refresh, str):
        raise ParseError(f"the session answer from {pds} for {identifier} has no tokens")
    return Session(pds=pds, identifier=identifier, access=access, refresh=refresh, service=_service(data) or pds)


def _service(data: Mapping[str, Any]) -> str | None:
    """The account's own PDS from the session's DID document (requests are served, and proxied, there)."""
    document = data.get("didDoc")
    services = document.get("service") if isinstance(document, Mapping) else None
    for service in services if isinstance(services, list) else []:
        if isinstance(service, Mapping) and service.get("id") == "#atproto_pds":
            endpoint = service.get("serviceEndpoint")
            url = safe_url(endpoint) if isinstance(endpoint, str) else None
            if url:
                return _base(url)
    return None


def jwt_expiry(token: str) -> datetime | None:
    """When a JWT expires (its `exp`, unverified: only to refresh ahead of time), or None."""
    try:
        payload = token.split(".")[1]
        claims = json_input.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(float(claims["exp"]), UTC)
    except (IndexError, ValueError, KeyError, TypeError, OverflowError, OSError):
        return None

"""The Mastodon collector (`kind: mastodon`): an account or a hashtag, polled without gaps, streamed with a token.

Each poll asks for the newest page once: it holds the new statuses, the edits (`edited_at`) and the deletions
to re-check. When more than a page arrived since the last poll, it walks up from the last polled id with
`min_id`, so nothing is skipped. With `token_env`, the instance's streaming websocket delivers the same
statuses at once (hashtag stream; for an account, the token user's `user` stream filtered to that account).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp

from curation.collectors import CollectorContext, Deliver, PollResult, json_input
from curation.collectors.fetch import FetchResult
from curation.collectors.mastodon_status import (
    StatusRef,
    convert,
    id_order,
    is_newer,
    newest,
    read_status,
    read_statuses,
    valid_id,
    wanted,
)
from curation.collectors.policy import parse_http_date
from curation.errors import FetchError, GoneError, ParseError, RetryLaterError, SourceError
from curation.models import Entry, Source, SourceStatus, rfc3339, utcnow
from curation.normalize import to_utc
from curation.sanitize import plain_text

log = logging.getLogger("curation.collectors.mastodon")

#: the API's largest page
PAGE = 40
#: pages walked in one poll; the polled id keeps the place and the next poll goes on from it
MAX_PAGES = 10
#: taken statuses remembered (listed id -> key, edit mark): deletes by id and edit detection reach this far
RECENT = 500
#: statuses re-fetched per poll to confirm a deletion
RECHECKS = 5
#: how long /api/v2/instance (streaming host, domain, timelines_access) is trusted, and a failure remembered
INSTANCE_TTL = 3600.0
INSTANCE_RETRY = 60.0
#: Mastodon's rate-limit window; the wait when a Remaining: 0 comes without a readable Reset
WINDOW = 300.0
_DOMAIN = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$")
_ACCESS = ("public", "authenticated", "disabled")


@dataclass(frozen=True, slots=True)
class Target:
    """What one source reads: an account or a hashtag on one instance."""

    source_id: str
    #: base URL, no trailing slash
    instance: str
    #: host[:port], the rate-limit scope
    netloc: str
    account: str | None
    hashtag: str | None
    replies: bool
    boosts: bool
    token_env: str | None

    @classmethod
    def of(cls, source: Source) -> Target:
        options = source.options
        instance = str(options.get("instance") or "").rstrip("/")
        account, hashtag = options.get("account"), options.get("hashtag")
        if not instance or not (account or hashtag):
            raise SourceError("a mastodon source needs `instance` and `account` or `hashtag`", source_id=source.id)
        token_env = options.get("token_env")
        return cls(
            source_id=source.id,
            instance=instance,
            netloc=urlsplit(instance).netloc.lower(),
            account=str(account) if account and not hashtag else None,
            hashtag=str(hashtag) if hashtag else None,
            replies=bool(options.get("replies", False)),
            boosts=bool(options.get("boosts", True)),
            token_env=str(token_env) if token_env else None,
        )

    @property
    def name(self) -> str:
        return f"#{self.hashtag}" if self.hashtag is not None else f"@{self.account}"

    @property
    def memo_key(self) -> str:
        return f"{self.instance} {self.name}"

    def token(self) -> str | None:
        value = os.environ.get(self.token_env, "").strip() if self.token_env else ""
        return value or None

    def wants(self, ref: StatusRef) -> bool:
        return wanted(ref, replies=self.replies, boosts=self.boosts)


@dataclass(frozen=True, slots=True)
class Page:
    refs: list[StatusRef]
    #: how many statuses the upstream sent, malformed ones included (a full page means "there may be more")
    size: int
    limit: int

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.refs]

    @property
    def full(self) -> bool:
        return self.size >= self.limit

    @property
    def oldest(self) -> str | None:
        return min(self.ids, key=id_order) if self.refs else None


class MastodonCollector:
    """Polls and streams Mastodon sources. Durable notes live in SourceStatus.memo:

    - `target`: "<instance> @acct" or "<instance> #tag"; a source pointed elsewhere starts afresh;
    - `account_id`: the account's id on its instance, from /api/v1/accounts/lookup;
    - `polled`: the newest id up to which polling has seen everything (streams never move it, so a
      status posted while the stream was reconnecting is still found by the next poll);
    - `recent`: {listed status id: [entry key, edit mark]} for the newest RECENT statuses taken.

    SourceStatus.cursor is the newest id seen by a poll or the stream; it never moves backwards.
    """

    def __init__(self, context: CollectorContext) -> None:
        self.context = context
        #: netloc -> until when its rate limit is used up (shared by every source on that instance)
        self._limited: dict[str, datetime] = {}
        #: instance -> (monotonic time fetched, /api/v2/instance body or {})
        self._instances: dict[str, tuple[float, float, dict[str, Any]]] = {}
        self._warned: set[str] = set()

    # -- the Collector protocol ------------------------------------------------------------------------

    def streams(self, source: Source) -> bool:
        try:
            return Target.of(source).token() is not None
        except SourceError:
            return False  # the poll reports what is wrong with the source

    async def poll(self, source: Source, status: SourceStatus) -> PollResult:
        target = Target.of(source)
        memo = _memo(status, target)
        journal = _journal(memo, status)
        self._note_token(target, status)
        self._check_limit(target)
        info = await self._instance(target)
        if target.hashtag is not None:
            self._check_hashtag_access(target, info, status)
        listing, params = await self._listing(target, memo)
        polled = memo.get("polled") if isinstance(memo.get("polled"), str) else None
        deleted: list[str] = []
        if polled is None:
            # first poll: the newest statuses only, as many as the source backfills
            page = await self._page(target, memo, listing, params, limit=min(PAGE, max(1, source.backfill)))
            candidates, reach = page.refs, newest(*page.ids)
        else:
            page = await self._page(target, memo, listing, params, limit=PAGE)
            candidates, reach = list(page.refs), newest(polled, *page.ids)
            oldest = page.oldest
            if page.full and oldest is not None and is_newer(oldest, polled):
                # more than a page since the last poll: walk up from it so that nothing is skipped
                walked, walk_reach, complete = await self._walk(target, memo, listing, params, polled, oldest)
                candidates += walked
                if not complete:
                    reach = walk_reach
            deleted = await self._deleted(target, memo, page, journal)
        taken = _fresh(candidates, memo, polled, target)
        entries = await self._convert(target, taken, info)
        _remember(memo, taken, journal)
        if reach is not None:
            memo["polled"] = reach
        cursor = newest(status.cursor, reach, *(r.id for r in candidates))
        return PollResult(entries=entries, deleted=deleted, cursor=cursor if cursor != status.cursor else None)

    async def stream(self, source: Source, status: SourceStatus, deliver: Deliver) -> None:
        target = Target.of(source)
        token = target.token()
        if token is None:
            raise SourceError(f"no token in ${target.token_env}: streaming needs one (Mastodon 4.2+)")
        memo = _memo(status, target)
        account_id = await self._account_id(target, memo) if target.account is not None else None
        info = await self._instance(target)
        url = streaming_url(info, target.instance)
        try:
            ws = await self.context.fetcher.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        except FetchError as e:
            if e.status in (401, 403):
                raise SourceError(
                    f"streaming on {target.netloc} refused the token in ${target.token_env} (HTTP {e.status}):"
                    " it needs a user token with read:statuses; polling goes on"
                ) from None
            raise
        try:
            subscribe = {"type": "subscribe", "stream": "user"}
            if target.hashtag is not None:
                subscribe = {"type": "subscribe", "stream": "hashtag", "tag": target.hashtag}
            await ws.send_str(json.dumps(subscribe))
            status.details["stream"] = {"state": "open", "since": rfc3339(utcnow())}
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._on_frame(target, status, account_id, info, message.data, deliver)
                elif message.type is aiohttp.WSMsgType.ERROR:
                    raise SourceError(f"the stream from {target.netloc} failed: {ws.exception()}")
        finally:
            await ws.close()
        raise SourceError(f"the stream from {target.netloc} closed (code {ws.close_code})")

    # -- polling ---------------------------------------------------------------------------------------

    async def _listing(self, target: Target, memo: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """The statuses URL of this source (without paging parameters) and its filter parameters."""
        if target.hashtag is not None:
            return f"{target.instance}/api/v1/timelines/tag/{quote(target.hashtag, safe='')}", {}
        account_id = await self._account_id(target, memo)
        params = {
            "exclude_replies": "false" if target.replies else "true",
            "exclude_reblogs": "false" if target.boosts else "true",
        }
        return f"{target.instance}/api/v1/accounts/{quote(account_id, safe='')}/statuses", params

    async def _page(
        self,
        target: Target,
        memo: dict[str, Any],
        listing: str,
        params: Mapping[str, str],
        *,
        limit: int,
        min_id: str | None = None,
    ) -> Page:
        query = {**params, "limit": str(limit)}
        if min_id is not None:
            query["min_id"] = min_id
        url = f"{listing}?{urlencode(query)}"
        try:
            response = await self._get(target, url)
        except (GoneError, RetryLaterError):
            raise
        except FetchError as e:
            raise self._listing_error(target, memo, e, url) from None
        data = _json(response)
        if isinstance(data, list) and len(data) > limit:
            data = data[:limit]  # an instance ignoring `limit` (a flood) is read no further than it was asked
        try:
            refs, malformed = read_statuses(data)
        except ValueError as e:
            raise ParseError(f"{url}: {e}", source_id=target.source_id) from None
        if malformed:
            level = logging.DEBUG if target.source_id in self._warned else logging.WARNING
            self._warned.add(target.source_id)
            log.log(level, "%s: skipped %d malformed statuses from %s", target.source_id, malformed, url)
        return Page(refs=refs, size=len(data), limit=limit)

    def _listing_error(self, target: Target, memo: dict[str, Any], error: FetchError, url: str) -> SourceError:
        if error.status == 401 and target.token() is not None:
            return _token_rejected(target)
        if target.hashtag is not None and error.status in (401, 403, 422):
            hint = "" if target.token() else "; a token of that instance (token_env) may open it"
            return SourceError(
                f"hashtag timeline of {target.instance} requires login / is disabled"
                f" (HTTP {error.status}{_says(error)}){hint}",
                source_id=target.source_id,
            )
        if target.account is not None and error.status == 404:
            memo.pop("account_id", None)  # looked up again next time
            return SourceError(f"no account {target.account} on {target.instance}", source_id=target.source_id)
        if error.status in (401, 403):
            return SourceError(
                f"{target.instance} refuses to list {target.name} without login (HTTP {error.status}{_says(error)})",
                source_id=target.source_id,
            )
        return error

    async def _walk(
        self,
        target: Target,
        memo: dict[str, Any],
        listing: str,
        params: Mapping[str, str],
        since: str,
        until: str,
    ) -> tuple[list[StatusRef], str, bool]:
        """Pages just after `since` (min_id), upwards, until they reach `until`; (statuses, reach, complete)."""
        found: list[StatusRef] = []
        for _ in range(MAX_PAGES):
            if self._limited_until(target) is not None:
                return found, since, False  # keep what came; the next poll waits for the reset
            page = await self._page(target, memo, listing, params, limit=PAGE, min_id=since)
            found += page.refs
            if not page.refs:
                return found, since, True
            since = newest(since, *page.ids) or since
            if not page.full or not is_newer(until, since):
                return found, since, True
        return found, since, False

    async def _deleted(
        self, target: Target, memo: dict[str, Any], page: Page, journal: dict[str, list[str] | None]
    ) -> list[str]:
        """Keys of remembered statuses missing from the newest page that the instance confirms gone."""
        recent: dict[str, list[str]] = memo["recent"]
        present = set(page.ids)
        floor = page.oldest if page.full else None
        missing = [i for i in recent if i not in present and (floor is None or is_newer(i, floor))]
        deleted: list[str] = []
        for status_id in sorted(missing, key=id_order, reverse=True)[:RECHECKS]:
            if self._limited_until(target) is not None:
                break
            gone = await self._gone(target, status_id)
            if gone is None or status_id not in recent:  # unknown, or the stream said it meanwhile
                continue
            journal.setdefault(status_id, recent[status_id])
            key = recent.pop(status_id)[0]
            if gone:
                deleted.append(key)
            # else: it exists but is listed no more (an edit removed the hashtag...): stop checking it
        return deleted

    async def _gone(self, target: Target, status_id: str) -> bool | None:
        """True when the status is deleted or no longer public, False when it stands, None when unknown."""
        url = f"{target.instance}/api/v1/statuses/{quote(status_id, safe='')}"
        try:
            response = await self._get(target, url)
        except GoneError:
            return True
        except RetryLaterError:
            return None
        except FetchError as e:
            return True if e.status == 404 else None
        try:
            ref = read_status(json_input.loads(response.body))
        except ValueError:
            return None
        return ref is None or not ref.visible

    async def _account_id(self, target: Target, memo: dict[str, Any]) -> str:
        cached = memo.get("account_id")
        if valid_id(cached):
            assert isinstance(cached, str)
            return cached
        assert target.account is not None
        url = f"{target.instance}/api/v1/accounts/lookup?{urlencode({'acct': target.account})}"
        try:
            response = await self._get(target, url)
        except GoneError as e:
            raise GoneError(
                f"account {target.account} on {target.instance} is gone (HTTP 410)", url=url, status=e.status
            ) from None
        except RetryLaterError:
            raise
        except FetchError as e:
            if e.status == 404:
                raise SourceError(
                    f"no account {target.account} on {target.instance}", source_id=target.source_id
                ) from None
            if e.status == 401 and target.token() is not None:
                raise _token_rejected(target) from None
            if e.status in (401, 403):
                raise SourceError(
                    f"{target.instance} refuses account lookups without login (HTTP {e.status})",
                    source_id=target.source_id,
                ) from None
            raise
        data = _json(response)
        account_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(account_id, str) or not valid_id(account_id):
            raise ParseError(f"{url}: not an account", source_id=target.source_id)
        memo["account_id"] = account_id
        return account_id

    async def _convert(self, target: Target, refs: list[StatusRef], info: Mapping[str, Any]) -> list[Entry]:
        if not refs:
            return []
        loop = asyncio.get_running_loop()
        domain = _local_domain(info, target.instance)
        entries, failed = await loop.run_in_executor(self.context.executor, convert, [r.data for r in refs], domain)
        if failed:
            log.warning("%s: %d statuses could not be rendered", target.source_id, failed)
        return entries

    # -- streaming -------------------------------------------------------------------------------------

    async def _on_frame(
        self,
        target: Target,
        status: SourceStatus,
        account_id: str | None,
        info: Mapping[str, Any],
        text: str,
        deliver: Deliver,
    ) -> None:
        """One websocket frame: `{"stream": [...], "event": ..., "payload": "<JSON string>" | "<id>"}`."""
        try:
            frame = json_input.loads(text)
        except ValueError:
            log.debug("%s: unreadable stream frame", target.source_id)
            return
        if not isinstance(frame, dict):
            return
        if "error" in frame:
            raise SourceError(f"streaming on {target.netloc}: {plain_text(str(frame['error']))[:200]}")
        event, payload = frame.get("event"), frame.get("payload")
        memo = _memo(status, target)
        recent: dict[str, list[str]] = memo["recent"]
        # noted only once delivered: a delivery that fails (the store is down) is found again by a poll
        if event == "delete" and isinstance(payload, str):
            known = recent.get(payload)
            if known is not None:
                await deliver(PollResult(deleted=[known[0]]))
                recent.pop(payload, None)
            return
        if event not in ("update", "status.update"):
            return  # notifications, filters_changed, announcements...
        try:
            data = json_input.loads(payload) if isinstance(payload, str) else payload
        except ValueError:
            return
        ref = read_status(data)
        if ref is None or (account_id is not None and ref.account_id != account_id):
            return
        if event == "status.update" and ref.id not in recent:
            return  # an edit of a status this source never took (older than its backfill...) stays out
        if not target.wants(ref):
            if event == "status.update" and not ref.visible:
                # edited into a followers-only post: it is not public any more
                await deliver(PollResult(deleted=[recent[ref.id][0]]))
                recent.pop(ref.id, None)
            return
        entries = await self._convert(target, [ref], info)
        cursor = ref.id if is_newer(ref.id, status.cursor) else None
        await deliver(PollResult(entries=entries, cursor=cursor))
        _remember(memo, [ref])

    # -- HTTP, rate limits, instance -------------------------------------------------------------------

    async def _get(self, target: Target, url: str) -> FetchResult:
        self._check_limit(target)
        token = target.token()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            response = await self.context.fetcher.get(url, accept="application/json", headers=headers)
        except RetryLaterError as e:
            self._limited[target.netloc] = utcnow() + timedelta(seconds=e.retry_after or WINDOW)
            raise
        self._note_rate_limit(target, response)
        return response

    def _note_rate_limit(self, target: Target, response: FetchResult) -> None:
        """X-RateLimit-Remaining: 0 means no more requests to this instance until X-RateLimit-Reset."""
        remaining = response.headers.get("x-ratelimit-remaining", "").strip()
        if not remaining.isdigit() or int(remaining) > 0:
            return
        now = utcnow()
        reset = to_utc(response.headers.get("x-ratelimit-reset"))
        wait = WINDOW
        if reset is not None:
            # measured against the server's own Date, so a skewed local clock does not matter (+1 s: Date has
            # whole seconds)
            reference = parse_http_date(response.headers.get("date")) or now
            wait = min(max((reset - reference).total_seconds() + 1.0, 1.0), 12 * WINDOW)
        self._limited[target.netloc] = now + timedelta(seconds=wait)
        log.warning("%s: rate limit of %s used up for %.0fs", target.source_id, target.netloc, wait)

    def _limited_until(self, target: Target) -> datetime | None:
        until = self._limited.get(target.netloc)
        if until is not None and until <= utcnow():
            del self._limited[target.netloc]
            return None
        return until

    def _check_limit(self, target: Target) -> None:
        until = self._limited_until(target)
        if until is not None:
            raise RetryLaterError(
                f"rate limit of {target.netloc} used up until {rfc3339(until)}",
                url=target.instance,
                retry_after=max(0.0, (until - utcnow()).total_seconds()),
                source_id=target.source_id,
            )

    async def _instance(self, target: Target) -> dict[str, Any]:
        """/api/v2/instance, best effort: {} when the server has none (Mastodon < 4.0) or fails."""
        now = time.monotonic()
        cached = self._instances.get(target.instance)
        if cached is not None and now - cached[0] < cached[1]:
            return cached[2]
        info: dict[str, Any] = {}
        ttl = INSTANCE_TTL
        try:
            data = json_input.loads((await self._get(target, f"{target.instance}/api/v2/instance")).body)
            info = data if isinstance(data, dict) else {}
        except RetryLaterError:
            raise
        except FetchError as e:
            ttl = INSTANCE_TTL if e.status == 404 else INSTANCE_RETRY
        except (SourceError, ValueError):
            ttl = INSTANCE_RETRY
        self._instances[target.instance] = (now, ttl, info)
        return info

    def _check_hashtag_access(self, target: Target, info: Mapping[str, Any], status: SourceStatus) -> None:
        """Mastodon 4.5 `timelines_access`: a refused hashtag feed answers [] (like "no posts"), so say it."""
        feeds = _path(info, "configuration", "timelines_access", "hashtag_feeds")
        local, remote = (_path(feeds, side) for side in ("local", "remote"))
        has_token = target.token() is not None

        def readable(value: object) -> bool:
            return value not in _ACCESS or value == "public" or (value == "authenticated" and has_token)

        if not readable(local) and not readable(remote):
            hint = "" if has_token else "; a token of that instance (token_env) may open it"
            raise SourceError(
                f"hashtag timeline of {target.instance} requires login / is disabled"
                f" (timelines_access: local {local}, remote {remote}){hint}",
                source_id=target.source_id,
            )
        if not readable(remote):
            status.details["note"] = f"only posts local to {target.netloc}: its hashtag feeds hide remote posts"
        elif not readable(local):
            status.details["note"] = f"only remote posts: {target.netloc} hides its local posts from hashtag feeds"
        else:
            status.details.pop("note", None)

    def _note_token(self, target: Target, status: SourceStatus) -> None:
        if target.token_env and target.token() is None:
            status.details["stream"] = {
                "state": "off",
                "error": f"${target.token_env} is empty or unset: no streaming, polling only",
            }


def _says(error: FetchError) -> str:
    """`: <reason>` from Mastodon's `{"error": "<reason>"}` error body, or nothing."""
    try:
        reason = json_input.loads(getattr(error, "body", b"") or b"null")
    except ValueError:
        return ""
    said = reason.get("error") if isinstance(reason, dict) else None
    text = plain_text(said) if isinstance(said, str) else ""
    return f": {text[:200]}" if text else ""


def _token_rejected(target: Target) -> SourceError:
    return SourceError(
        f"{target.instance} rejected the token in ${target.token_env} (HTTP 401): revoked or mistyped?",
        source_id=target.source_id,
    )


def streaming_url(info: Mapping[str, Any], instance: str) -> str:
    """The websocket URL: `configuration.urls.streaming` when it is a ws(s) URL, else the instance's host."""
    configured = _path(info, "configuration", "urls", "streaming")
    base = ""
    if isinstance(configured, str):
        parts = urlsplit(configured.strip())
        if parts.scheme in ("ws", "wss") and parts.netloc:
            base = f"{parts.scheme}://{parts.netloc}"
    if not base:
        parts = urlsplit(instance)
        base = f"{'ws' if parts.scheme == 'http' else 'wss'}://{parts.netloc}"
    return f"{base}/api/v1/streaming"


def _path(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _local_domain(info: Mapping[str, Any], instance: str) -> str:
    """The domain of the instance's handles (LOCAL_DOMAIN may differ from the web host)."""
    domain = info.get("domain")
    if isinstance(domain, str) and _DOMAIN.match(domain):
        return domain.lower()
    return (urlsplit(instance).hostname or "").lower()


def _json(response: FetchResult) -> Any:
    try:
        return json_input.loads(response.body)
    except ValueError:
        raise ParseError(f"{response.url}: not JSON") from None


def _memo(status: SourceStatus, target: Target) -> dict[str, Any]:
    """The source's memo, reset when it now reads something else, with `recent` checked for shape."""
    memo = status.memo
    if memo.get("target") != target.memo_key:
        memo.clear()
        memo["target"] = target.memo_key
    recent = memo.get("recent")
    if not isinstance(recent, dict):
        memo["recent"] = {}
    elif not all(_remembered(v) for v in recent.values()):
        memo["recent"] = {k: v for k, v in recent.items() if _remembered(v)}
    return memo


def _remembered(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)


def _fresh(candidates: list[StatusRef], memo: Mapping[str, Any], polled: str | None, target: Target) -> list[StatusRef]:
    """The statuses to hand on, oldest first: new since the last poll and not yet taken, or edited since taken."""
    recent: Mapping[str, list[str]] = memo["recent"]
    chosen: dict[str, StatusRef] = {}
    for ref in candidates:
        if ref.id in chosen or not target.wants(ref):
            continue
        known = recent.get(ref.id)
        if (known is None and is_newer(ref.id, polled)) or (known is not None and known[1] != ref.mark):
            chosen[ref.id] = ref
    return sorted(chosen.values(), key=lambda r: id_order(r.id))


def _journal(memo: dict[str, Any], status: SourceStatus) -> dict[str, list[str] | None]:
    """Undo what the last poll noted if its result never reached the store, and open this poll's journal.

    The memo changes as a poll goes, before the runner stores its result; if the poll or the store then
    failed, the runner recorded last_error_at = that poll's last_poll_at. Its notes are then undone (the
    polled id, and every `recent` entry it added, changed or dropped), so its statuses are taken again.
    """
    last = memo.pop("last", None)
    if not isinstance(last, dict):
        last = {}
    # a failed poll (the upstream's fault or the store's) dates last_error_at with its own last_poll_at
    if last.get("at") and last["at"] == rfc3339(status.last_error_at):
        recent: dict[str, Any] = memo["recent"]
        undo = last.get("recent")
        for status_id, before in (undo if isinstance(undo, dict) else {}).items():
            if _remembered(before):
                recent[status_id] = before
            else:
                recent.pop(status_id, None)
        if isinstance(last.get("polled"), str):
            memo["polled"] = last["polled"]
        else:
            memo.pop("polled", None)
    journal: dict[str, list[str] | None] = {}
    memo["last"] = {"at": rfc3339(status.last_poll_at), "polled": memo.get("polled"), "recent": journal}
    return journal


def _remember(memo: dict[str, Any], refs: list[StatusRef], journal: dict[str, list[str] | None] | None = None) -> None:
    recent: dict[str, list[str]] = memo["recent"]
    for ref in refs:
        if journal is not None:
            journal.setdefault(ref.id, recent.get(ref.id))
        recent[ref.id] = [ref.key, ref.mark]
    if len(recent) > RECENT:
        # in place: a poll awaiting re-checks holds this very dict
        for old in sorted(recent, key=id_order, reverse=True)[RECENT:]:
            del recent[old]

"""WebSub (W3C) subscriber for feed sources: discover a hub, subscribe with a secret, answer verification,
check signed deliveries, renew leases. Polling stays on as the safety net (slowed while push is healthy).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from curation.collectors import PollResult
from curation.collectors.feed_parser import parse_document
from curation.errors import SourceError
from curation.models import Entry, Source, SourceStatus, parse_rfc3339, rfc3339
from curation.sanitize import safe_url

if TYPE_CHECKING:
    from curation.collectors.fetch import Fetcher
    from curation.collectors.runner import Collection

log = logging.getLogger("curation.websub")

#: X-Hub-Signature methods the spec allows (WebSub §8); anything else is a bad signature
ALGORITHMS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
#: hub.reason is the hub's free text, shown to operators: keep it short
MAX_REASON = 300


class State(StrEnum):
    """status.details["websub"]["state"]"""

    PENDING = "pending"  # the subscription request is out; the hub has not verified it yet
    ACTIVE = "active"  # verified: deliveries arrive, polling slows to the safety interval
    UNHEALTHY = "unhealthy"  # a poll found entries push never delivered: polling is back to normal
    DENIED = "denied"  # the hub said no (hub.mode=denied); retried much later
    FAILED = "failed"  # the request failed, was never verified, or cannot be made at all


class Signature(StrEnum):
    VALID = "valid"
    MISSING = "missing"
    BAD = "bad"


# --- pure helpers ---------------------------------------------------------------------------------

_LINK_TARGET = re.compile(r"\s*<([^>]*)>")
_LINK_PARAM = re.compile(r'\s*;\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?')
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_link_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """RFC 8288 `Link` values -> [(target as written, {param: value})]; params lowercased, first one wins.

    Tolerant: a malformed link-value is skipped up to the next comma, the rest is still read.
    """
    links: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while pos < len(value):
        target = _LINK_TARGET.match(value, pos)
        if target is not None:
            pos = target.end()
            params: dict[str, str] = {}
            while (param := _LINK_PARAM.match(value, pos)) is not None:
                raw = param.group(2) or ""
                if raw.startswith('"'):
                    raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
                params.setdefault(param.group(1).lower(), raw)
                pos = param.end()
            links.append((target.group(1).strip(), params))
        comma = value.find(",", pos)
        if comma < 0:
            break
        pos = comma + 1
    return links


def links_with_rel(header: str | None, rel: str, base: str) -> list[str]:
    """Absolute http(s) targets of the Link header whose rel list holds `rel` (case-insensitive)."""
    found: list[str] = []
    for target, params in parse_link_header(header or ""):
        if rel in params.get("rel", "").lower().split():
            url = safe_url(target, base)
            if url and url not in found:
                found.append(url)
    return found


def discover(
    headers: Mapping[str, str], hubs: Iterable[str], self_url: str | None, base: str
) -> tuple[list[str], str | None]:
    """A fetched feed's hubs and topic: the HTTP Link header wins over the document (WebSub §4)."""
    link = headers.get("link")
    header_hubs = links_with_rel(link, "hub", base)
    header_self = links_with_rel(link, "self", base)
    return header_hubs or list(hubs), (header_self[0] if header_self else self_url)


def sign(secret: bytes, body: bytes, algorithm: str = "sha256") -> str:
    """The X-Hub-Signature value a hub sends: `<algorithm>=<hex HMAC(secret, body)>`."""
    return f"{algorithm}={hmac.new(secret, body, ALGORITHMS[algorithm]).hexdigest()}"


def check_signature(secret: bytes, header: str | None, body: bytes) -> Signature:
    """Verify X-Hub-Signature against the raw body, in constant time; unknown methods are BAD."""
    if not header or not header.strip():
        return Signature.MISSING
    method, sep, digest = header.strip().partition("=")
    algorithm = ALGORITHMS.get(method.strip().lower())
    if not sep or algorithm is None:
        return Signature.BAD
    expected = hmac.new(secret, body, algorithm).hexdigest().encode()
    return Signature.VALID if hmac.compare_digest(expected, digest.strip().lower().encode()) else Signature.BAD


def new_secret() -> str:
    """64 hex characters: well under the spec's 200-byte limit, 256 bits of randomness."""
    return secrets.token_hex(32)


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def may_send_secret(hub: str) -> bool:
    """hub.secret travels in the subscription request to the hub, so only over HTTPS (WebSub §5.1), or to
    a hub on this very machine (nothing crosses a network; that is how tests run)."""
    parts = urlsplit(hub)
    return parts.scheme == "https" or _is_loopback(parts.hostname or "")


def choose_hub(hubs: Iterable[str]) -> tuple[str | None, str | None]:
    """(the first hub a secret may be sent to, None) or (None, why no hub will do)."""
    candidates = list(hubs)
    for hub in candidates:
        if may_send_secret(hub):
            return hub, None
    if not candidates:
        return None, "the feed advertises no hub"
    return None, (
        f"hub {candidates[0]} is plain HTTP: its secret would travel in clear and unsigned deliveries are "
        "refused, so Fil does not subscribe; the source is polled at its interval"
    )


def poll_interval(interval: float, details: Mapping[str, Any], safety_interval: float) -> float:
    """The polling interval to use: slowed to the safety interval only while push is healthy (active)."""
    websub = details.get("websub")
    if isinstance(websub, Mapping) and websub.get("state") == State.ACTIVE:
        return max(interval, safety_interval)
    return interval


def missed_entries(
    entries: Iterable[Entry], new_keys: set[str], *, active_since: datetime, before: datetime
) -> list[Entry]:
    """Entries a poll found new that push should have delivered: published while the subscription was
    active and earlier than `before` (the poll time minus a grace for a delivery still on its way).

    An undated entry proves nothing (it may predate the subscription) and is not counted.
    """
    return [
        e
        for e in entries
        if e.key in new_keys and e.published_at is not None and active_since <= e.published_at <= before
    ]


def _clean_reason(reason: str | None) -> str:
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in (reason or "")).split())
    return text[:MAX_REASON] or "no reason given"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- what is kept per source ----------------------------------------------------------------------


@dataclass
class Subscription:
    """One source's subscription, kept in SourceStatus.memo["websub"] (the secret never reaches the API)."""

    hub: str
    topic: str
    callback: str
    secret: str
    #: a subscribe request is out and the hub's verification has not come yet
    awaiting: bool = False
    #: when the subscription (last) became active: entries older than this are not push's to deliver
    active_since: datetime | None = None
    lease_expires: datetime | None = None
    #: when the timer acts next: a verification timeout, a renewal, a retry
    next_at: datetime | None = None

    def to_memo(self) -> dict[str, Any]:
        return {
            "hub": self.hub,
            "topic": self.topic,
            "callback": self.callback,
            "secret": self.secret,
            "awaiting": self.awaiting,
            "active_since": rfc3339(self.active_since),
            "lease_expires": rfc3339(self.lease_expires),
            "next_at": rfc3339(self.next_at),
        }

    @classmethod
    def from_memo(cls, data: object) -> Subscription | None:
        if not isinstance(data, Mapping):
            return None
        hub, topic, callback, secret = (data.get(k) for k in ("hub", "topic", "callback", "secret"))
        if not (isinstance(hub, str) and isinstance(topic, str) and isinstance(callback, str)):
            return None
        if not (isinstance(secret, str) and hub and topic and callback and secret):
            return None
        try:
            return cls(
                hub,
                topic,
                callback,
                secret,
                awaiting=bool(data.get("awaiting")),
                active_since=parse_rfc3339(data.get("active_since")),
                lease_expires=parse_rfc3339(data.get("lease_expires")),
                next_at=parse_rfc3339(data.get("next_at")),
            )
        except (TypeError, ValueError):
            return None


# --- the manager ----------------------------------------------------------------------------------


class WebSubManager:
    """Subscriptions of every feed source whose document advertises a hub; one timer task per subscription.

    Args:
        collection: the running sources (statuses, runners, store); the manager writes each source's
            status.details["websub"] (what operators see) and status.memo["websub"] (the Subscription).
        fetcher: the shared HTTP client: hub requests obey the private-address rule like any fetch.
        public_url: CURATION_PUBLIC_URL; callbacks are `<public_url>/websub/<source id>`.
        lease: seconds of lease to ask for (the hub decides; renewal comes at `renew_fraction` of its answer).
        safety_interval: while push is healthy, a source is polled at most this often.
        executor: where deliveries are parsed (the collectors' process pool; None: the default threads).
    """

    def __init__(
        self,
        collection: Collection,
        fetcher: Fetcher,
        *,
        public_url: str,
        lease: float = 86400.0,
        safety_interval: float = 900.0,
        executor: Executor | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.collection = collection
        self.fetcher = fetcher
        self.public_url = public_url.rstrip("/")
        self.lease = lease
        self.safety_interval = safety_interval
        self.executor = executor
        self.clock = clock or _utcnow
        # tuning: plain attributes so tests can shorten them
        self.renew_fraction = 0.8
        self.verify_timeout = 600.0
        self.retry_failed = 600.0
        self.retry_denied = 86400.0
        #: a poll finding an entry published less than this ago does not blame push: it may be on its way
        self.missed_grace = 120.0
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        #: with several processes (curation/cluster.py): tells the process collecting a source of a verification
        #: another process answered, so the holder (the only one that changes the subscription) applies it
        self.forward: Callable[[dict[str, object]], Awaitable[None]] | None = None
        #: source id -> {topic: hub} of unsubscribe requests whose verification we will confirm
        self._unsubscribing: dict[str, dict[str, str]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def callback(self, source_id: str) -> str:
        return f"{self.public_url}/websub/{quote(source_id, safe='')}"

    # -- hooks called by the runner and the collection ---------------------------------------------------

    def poll_interval(self, interval: float, status: SourceStatus) -> float:
        return poll_interval(interval, status.details, self.safety_interval)

    def after_poll(
        self, source: Source, status: SourceStatus, result: PollResult, new_keys: set[str], polled_at: datetime
    ) -> None:
        """After a successful poll: (re)subscribe as the document says; blame push for entries it missed.

        Never raises: a WebSub problem must not cost the source its poll.
        """
        try:
            if not result.not_modified:
                self.ensure(source, status, result.hubs, result.self_url)
            self._check_missed(source, status, result, new_keys, polled_at)
        except Exception:
            log.exception("%s: WebSub bookkeeping failed after a poll", source.id)

    def attach(self, source: Source, status: SourceStatus) -> None:
        """A runner started: resume a stored subscription's timer (renewal after a restart)."""
        if Subscription.from_memo(status.memo.get("websub")) is not None:
            self._arm(source.id)

    async def detach(self, source_id: str, *, unsubscribe: bool) -> None:
        """A runner stopped. `unsubscribe`: the source is gone (removed, disabled, repointed): tell the hub."""
        await self._stop_timer(source_id)
        status = self.collection.statuses.get(source_id)
        if not unsubscribe or status is None:
            return
        sub = Subscription.from_memo(status.memo.pop("websub", None))
        status.details.pop("websub", None)
        if sub is not None:
            self._unsubscribe(source_id, sub)
        await self._save(status)

    async def stop(self) -> None:
        """Shutdown: timers stop, subscriptions stay (see README: a restart resumes them with their secret)."""
        for source_id in list(self._timers):
            await self._stop_timer(source_id)
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- discovery and subscribing -----------------------------------------------------------------------

    def ensure(self, source: Source, status: SourceStatus, hubs: list[str], self_url: str | None) -> None:
        """Make the subscription match what the document advertises (new, changed, or none any more).

        Called from a poll (after_poll): the runner computes the next delay right after, from the new state.
        """
        sub = Subscription.from_memo(status.memo.get("websub"))
        if not hubs:
            if sub is not None:
                log.info("%s: the feed no longer advertises a hub; unsubscribing from %s", source.id, sub.hub)
                self._unsubscribe(source.id, sub)
                status.memo.pop("websub", None)
            status.details.pop("websub", None)
            return
        hub, problem = choose_hub(hubs)
        if hub is None or self_url is None:
            if sub is not None:
                self._unsubscribe(source.id, sub)
                status.memo.pop("websub", None)
            reason = problem or "the feed advertises a hub but no rel=self URL (the topic to subscribe to)"
            self._set_state(status, State.FAILED, reason, in_poll=True, hub=hub or hubs[0], topic=self_url)
            return
        callback = self.callback(source.id)
        if sub is not None and (sub.hub, sub.topic, sub.callback) == (hub, self_url, callback):
            task = self._timers.get(source.id)
            if task is None or task.done():
                self._arm(source.id)
            return
        if sub is not None:
            log.info("%s: hub or topic changed; leaving %s for %s", source.id, sub.hub, hub)
            self._unsubscribe(source.id, sub)
        sub = Subscription(hub=hub, topic=self_url, callback=callback, secret=new_secret(), next_at=self.clock())
        self._put(status, sub)
        self._set_state(status, State.PENDING, None, in_poll=True, hub=hub, topic=self_url, lease_expires=None)
        self._arm(source.id)

    def _arm(self, source_id: str) -> None:
        """Wake the source's timer (it re-reads next_at), starting it if needed."""
        wake = self._wake.setdefault(source_id, asyncio.Event())
        wake.set()
        task = self._timers.get(source_id)
        if task is None or task.done():
            self._timers[source_id] = asyncio.create_task(self._timer(source_id, wake), name=f"websub:{source_id}")

    async def _stop_timer(self, source_id: str) -> None:
        task = self._timers.pop(source_id, None)
        self._wake.pop(source_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _timer(self, source_id: str, wake: asyncio.Event) -> None:
        while True:
            wake.clear()
            status = self.collection.statuses.get(source_id)
            sub = Subscription.from_memo(status.memo.get("websub")) if status is not None else None
            if status is None or sub is None:
                return
            if sub.next_at is None:
                await wake.wait()
                continue
            delay = (sub.next_at - self.clock()).total_seconds()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
                continue  # woken or due: read next_at again
            try:
                await self._act(source_id, status, sub)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the subscription's timer for good
                log.exception("%s: WebSub timer failed", source_id)
                sub.next_at = self.clock() + timedelta(seconds=self.retry_failed)
                self._put(status, sub)

    async def _act(self, source_id: str, status: SourceStatus, sub: Subscription) -> None:
        """next_at has come: subscribe, retry, renew, or give up waiting for a verification."""
        state = self._state(status)
        now = self.clock()
        if state is State.PENDING and sub.awaiting:
            sub.awaiting = False
            sub.next_at = now + timedelta(seconds=self.retry_failed)
            self._put(status, sub)
            self._set_state(status, State.FAILED, f"the hub {sub.hub} did not verify within {self.verify_timeout:g}s")
            await self._save(status)
        elif state in (State.ACTIVE, State.UNHEALTHY) and sub.lease_expires is not None and sub.lease_expires > now:
            await self._subscribe(source_id, status, sub, renewal=True)
        else:
            # new, failed, denied, or a lease that ran out unrenewed: (re)subscribe from scratch
            await self._subscribe(source_id, status, sub, renewal=False)

    async def _subscribe(self, source_id: str, status: SourceStatus, sub: Subscription, *, renewal: bool) -> None:
        now = self.clock()
        # recorded before the request: some hubs verify before they even answer it
        sub.awaiting = True
        deadline = now + timedelta(seconds=self.verify_timeout)
        if renewal and sub.lease_expires is not None:
            deadline = min(deadline, sub.lease_expires)
        sub.next_at = deadline
        self._put(status, sub)
        if not renewal:
            self._set_state(status, State.PENDING, None, lease_expires=None)
        form = {
            "hub.callback": sub.callback,
            "hub.mode": "subscribe",
            "hub.topic": sub.topic,
            "hub.lease_seconds": str(int(self.lease)),
            "hub.secret": sub.secret,
        }
        try:
            await self.fetcher.post(sub.hub, data=form, accept="*/*")
        except SourceError as e:
            now = self.clock()
            sub.awaiting = False
            if renewal and sub.lease_expires is not None and sub.lease_expires > now:
                # the lease still runs: keep the state, retry well before it ends
                left = (sub.lease_expires - now).total_seconds()
                sub.next_at = now + timedelta(seconds=max(1.0, min(self.retry_failed, left / 2)))
                self._details(status)["reason"] = f"renewal refused, retrying: {e}"
            else:
                sub.next_at = now + timedelta(seconds=self.retry_failed)
                self._set_state(status, State.FAILED, f"subscription request failed: {e}")
            self._put(status, sub)
            log.warning("%s: WebSub subscription to %s failed: %s", source_id, sub.hub, e)
        await self._save(status)

    def _unsubscribe(self, source_id: str, sub: Subscription) -> None:
        """Best effort, in the background: a hub that never hears it lets the lease run out."""
        self._unsubscribing.setdefault(source_id, {})[sub.topic] = sub.hub
        task = asyncio.create_task(self._send_unsubscribe(source_id, sub), name=f"websub-unsubscribe:{source_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_unsubscribe(self, source_id: str, sub: Subscription) -> None:
        form = {"hub.callback": sub.callback, "hub.mode": "unsubscribe", "hub.topic": sub.topic}
        try:
            await self.fetcher.post(sub.hub, data=form, accept="*/*")
        except SourceError as e:
            log.info("%s: unsubscribe from %s failed (the lease will run out): %s", source_id, sub.hub, e)
            self._unsubscribing.get(source_id, {}).pop(sub.topic, None)

    # -- the callback endpoint ---------------------------------------------------------------------------

    async def verify_intent(self, source_id: str, mode: str, topic: str, lease_seconds: int | None) -> bool:
        """A hub asks whether we want (un)subscribe for `topic`: True only for a request of ours."""
        runner = self.collection.runners.get(source_id)
        if self.forward is not None and mode == "subscribe" and runner is not None and not runner.running:
            return await self._verify_for_holder(source_id, topic, lease_seconds)
        if mode == "unsubscribe":
            return self._unsubscribing.get(source_id, {}).pop(topic, None) is not None
        status = self.collection.statuses.get(source_id)
        sub = Subscription.from_memo(status.memo.get("websub")) if status is not None else None
        if mode != "subscribe" or status is None or sub is None or sub.topic != topic:
            return False
        state = self._state(status)
        renewing = state in (State.ACTIVE, State.UNHEALTHY)
        if not sub.awaiting:
            # we do still want it; but only a verification we asked for may move the lease (no spoofed lease)
            return renewing
        now = self.clock()
        lease = float(lease_seconds) if lease_seconds and lease_seconds > 0 else self.lease
        if not renewing or sub.active_since is None:
            sub.active_since = now
        sub.awaiting = False
        sub.lease_expires = now + timedelta(seconds=lease)
        sub.next_at = now + timedelta(seconds=lease * self.renew_fraction)
        self._put(status, sub)
        # a verified renewal also gives an unhealthy push another chance
        self._set_state(status, State.ACTIVE, None, lease_expires=rfc3339(sub.lease_expires))
        log.info("%s: WebSub subscription to %s active for %gs", source_id, sub.hub, lease)
        self._arm(source_id)
        await self._save(status)
        return True

    async def _verify_for_holder(self, source_id: str, topic: str, lease_seconds: int | None) -> bool:
        """The hub's call reached a process that does not collect this source: answer from the subscription
        as the holder last saved it, and hand the verification to the holder to apply."""
        saved = (await self.collection.store.load_statuses()).get(source_id)
        sub = Subscription.from_memo(saved.memo.get("websub")) if saved is not None else None
        if saved is None or sub is None or sub.topic != topic:
            return False
        if not sub.awaiting and self._state(saved) not in (State.ACTIVE, State.UNHEALTHY):
            return False
        assert self.forward is not None
        await self.forward({"source": source_id, "topic": topic, "lease": lease_seconds})
        return True

    async def apply_forwarded(self, note: dict[str, object]) -> None:
        """A verification another process answered for a source this process collects."""
        source_id, topic, lease = note.get("source"), note.get("topic"), note.get("lease")
        runner = self.collection.runners.get(str(source_id))
        if runner is None or not runner.running or not isinstance(topic, str):
            return
        await self.verify_intent(str(source_id), "subscribe", topic, lease if isinstance(lease, int) else None)

    async def denied(self, source_id: str, topic: str, reason: str | None) -> bool:
        """The hub refused (or revoked) our subscription to `topic`; False when there is none such."""
        status = self.collection.statuses.get(source_id)
        sub = Subscription.from_memo(status.memo.get("websub")) if status is not None else None
        if status is None or sub is None or sub.topic != topic:
            return False
        sub.awaiting = False
        sub.active_since = sub.lease_expires = None
        sub.next_at = self.clock() + timedelta(seconds=self.retry_denied)
        self._put(status, sub)
        text = _clean_reason(reason)
        self._set_state(status, State.DENIED, f"the hub denied the subscription: {text}", lease_expires=None)
        log.warning("%s: WebSub subscription denied by %s: %s", source_id, sub.hub, text)
        self._arm(source_id)
        await self._save(status)
        return True

    async def receive(self, source_id: str, body: bytes, content_type: str | None, signature: str | None) -> int:
        """A delivery: the HTTP status to answer. Badly signed or unsigned content is dropped but answered 202,
        so a forger learns nothing; 410 tells a hub there is no such subscription here (WebSub §7)."""
        status = self.collection.statuses.get(source_id)
        sub = Subscription.from_memo(status.memo.get("websub")) if status is not None else None
        runner = self.collection.runners.get(source_id)
        if status is None or sub is None or runner is None:
            return 410
        check = check_signature(sub.secret.encode(), signature, body)
        if check is not Signature.VALID:
            self._reject(source_id, status, "unsigned delivery" if check is Signature.MISSING else "bad signature")
            return 202
        parse = functools.partial(parse_document, body, content_type=content_type, url=sub.topic, source_id=source_id)
        try:
            parsed = await asyncio.get_running_loop().run_in_executor(self.executor, parse)
        except SourceError as e:
            self._reject(source_id, status, f"not a feed: {e.message}")
            return 202
        except Exception as e:  # a parser bug: the content is lost to push, the safety-net poll will find it
            log.exception("%s: could not parse a WebSub delivery", source_id)
            self._reject(source_id, status, f"internal error: {type(e).__name__}")
            return 202
        details = self._details(status)
        details["deliveries"] = int(details.get("deliveries") or 0) + 1
        details["last_delivery_at"] = rfc3339(self.clock())
        await runner.deliver(PollResult(entries=parsed.entries))
        return 202

    # -- status bookkeeping ------------------------------------------------------------------------------

    def _check_missed(
        self, source: Source, status: SourceStatus, result: PollResult, new_keys: set[str], polled_at: datetime
    ) -> None:
        sub = Subscription.from_memo(status.memo.get("websub"))
        if not new_keys or sub is None or sub.active_since is None or self._state(status) is not State.ACTIVE:
            return
        before = polled_at - timedelta(seconds=self.missed_grace)
        missed = missed_entries(result.entries, new_keys, active_since=sub.active_since, before=before)
        if not missed:
            return
        first = missed[0].url or missed[0].key
        reason = f"a safety-net poll found {len(missed)} new entries push never delivered (first: {first})"
        self._set_state(status, State.UNHEALTHY, reason, in_poll=True, unhealthy_since=rfc3339(polled_at))
        log.warning("%s: WebSub push unhealthy: %s; polling at the source's interval again", source.id, reason)

    def _reject(self, source_id: str, status: SourceStatus, reason: str) -> None:
        # counted in memory only: a flood of forged posts must not become a flood of store writes
        details = self._details(status)
        rejected = int(details.get("rejected") or 0) + 1
        details["rejected"] = rejected
        details["last_rejected"] = {"at": rfc3339(self.clock()), "reason": reason}
        if rejected == 1 or rejected % 100 == 0:
            log.warning("%s: WebSub delivery dropped (%s); %d dropped so far", source_id, reason, rejected)

    @staticmethod
    def _details(status: SourceStatus) -> dict[str, Any]:
        details = status.details.get("websub")
        if not isinstance(details, dict):
            details = status.details["websub"] = {
                "state": State.PENDING.value,
                "hub": None,
                "topic": None,
                "lease_expires": None,
                "deliveries": 0,
                "rejected": 0,
                "last_delivery_at": None,
            }
        return details

    @staticmethod
    def _state(status: SourceStatus) -> State | None:
        details = status.details.get("websub")
        state = details.get("state") if isinstance(details, dict) else None
        try:
            return State(state) if isinstance(state, str) else None
        except ValueError:
            return None

    def _set_state(
        self, status: SourceStatus, state: State, reason: str | None, *, in_poll: bool = False, **fields: Any
    ) -> None:
        details = self._details(status)
        details.update(fields)
        previous = details.get("state")
        if previous == State.ACTIVE and state is not State.ACTIVE and not in_poll:
            # the runner may be asleep for the whole safety interval: poll now, as for a dropped stream
            self.collection.poll_now(status.id)
        if previous != state.value or "since" not in details:
            details["since"] = rfc3339(self.clock())
        details["state"] = state.value
        if reason is None:
            details.pop("reason", None)
        else:
            details["reason"] = reason
        if state is not State.UNHEALTHY:
            details.pop("unhealthy_since", None)

    @staticmethod
    def _put(status: SourceStatus, sub: Subscription) -> None:
        status.memo["websub"] = sub.to_memo()

    async def _save(self, status: SourceStatus) -> None:
        try:
            await self.collection.store.save_status(status)
        except Exception:  # kept in memory too; the next save carries it
            log.exception("%s: could not save the source status", status.id)

"""Collectors: one per source kind, behind one Protocol, looked up in REGISTRY by kind.

A collector turns one poll of one source into a PollResult; scheduling, backoff, status and
storage are the runner's job (curation/collectors/runner.py), so a collector only fetches and parses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from curation.collectors.fetch import Fetcher
from curation.models import Entry, Source, SourceStatus


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll found. `entries` may be in any order; the runner trims the first import to `backfill`."""

    entries: list[Entry] = field(default_factory=list)
    #: the upstream answered 304 (or 200 with the stored ETag): nothing was parsed or written
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    #: every redirect hop was 301/308 and the target parsed: the stored URL becomes this
    moved_to: str | None = None
    #: keys of entries deleted upstream: their items leave the timeline
    deleted: list[str] = field(default_factory=list)
    #: the collector's new resume point, kept in SourceStatus.cursor (None: unchanged)
    cursor: str | None = None
    #: WebSub: hubs the document advertises (rel=hub) and its own URL (rel=self)
    hubs: list[str] = field(default_factory=list)
    self_url: str | None = None


@dataclass(frozen=True, slots=True)
class CollectorContext:
    """What collectors share: one HTTP client, one pool for CPU-heavy parsing."""

    fetcher: Fetcher
    executor: Executor | None = None


class Collector(Protocol):
    async def poll(self, source: Source, status: SourceStatus) -> PollResult:
        """Fetch and parse one source once.

        Args:
            source: the configured source.
            status: its current status (validators, moved URL, whether its first import is done).
        Returns:
            the entries found and the validators to keep.
        Raises:
            SourceError (FetchError, ParseError, ...): the runner records it as the source's status.
        """
        ...


Deliver = Callable[[PollResult], Awaitable[None]]


@runtime_checkable
class StreamingCollector(Collector, Protocol):
    """A collector that can also hold a push connection open (Mastodon streaming, Jetstream)."""

    def streams(self, source: Source) -> bool:
        """Whether this source gets a stream (a token is configured, the kind supports it...)."""
        ...

    async def stream(self, source: Source, status: SourceStatus, deliver: Deliver) -> None:
        """Hold the stream open and hand each event to `deliver`, in order, until cancelled.

        Polling goes on beside the stream as the safety net. Returning or raising SourceError means
        the stream dropped: the runner records it, polls at once (so nothing is missed), and opens the
        stream again with backoff.
        """
        ...


CollectorFactory = Callable[[CollectorContext], Collector]

#: kind -> factory; filled by the collector modules (see _register_builtin below)
REGISTRY: dict[str, CollectorFactory] = {}


def _register_builtin() -> None:
    from curation.collectors.bluesky import BlueskyCollector
    from curation.collectors.feed import FeedCollector
    from curation.collectors.mastodon import MastodonCollector
    from curation.collectors.push import PushCollector

    REGISTRY["bluesky"] = BlueskyCollector
    REGISTRY["feed"] = FeedCollector
    REGISTRY["mastodon"] = MastodonCollector
    REGISTRY["push"] = PushCollector


_register_builtin()

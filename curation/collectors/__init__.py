"""Collectors: one per source kind, behind one Protocol, looked up in REGISTRY by kind.

A collector turns one poll of one source into a PollResult; scheduling, backoff, status and
storage are the runner's job (curation/collectors/runner.py), so a collector only fetches and parses.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

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


CollectorFactory = Callable[[CollectorContext], Collector]

#: kind -> factory; filled by the collector modules (see _register_builtin below)
REGISTRY: dict[str, CollectorFactory] = {}


def _register_builtin() -> None:
    from curation.collectors.feed import FeedCollector

    REGISTRY["feed"] = FeedCollector


_register_builtin()

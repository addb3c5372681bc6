"""The exception tree of Fil; every error names the thing that is wrong.

CurationError
├── ConfigError(path, line, key)       sources.yaml problems; the CLI exits 2
├── SourceError(source_id)             turned into a per-source status, never a crash
│   ├── FetchError(url, status)
│   │   ├── BlockedAddressError         target resolves to a non-public address
│   │   ├── TooLargeError               body over the cap (after decompression)
│   │   ├── RetryLaterError(retry_after) 429/503 with or without Retry-After
│   │   └── GoneError                   410: stop polling until re-enabled
│   └── ParseError                      the document could not be read as a feed
├── NotFoundError(CurationError, LookupError)
│   ├── EventNotFound
│   └── ItemNotFound
├── VersionConflict(current, seen)     an editor acted on a stale version: 409 with the current item
└── StoreError                         wraps sqlite3 / redis errors
"""

from __future__ import annotations


class CurationError(Exception):
    """Root of every error Fil raises on purpose."""


class ConfigError(CurationError):
    """One problem in the operator's sources file, located by file, line and key path."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None, key: str = "") -> None:
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [p for p in (where, self.key, self.message) if p]
        return ": ".join(parts)


class ConfigErrors(CurationError):
    """Every problem found in one sources file (check reports them all, not only the first)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def relative_to(self, prefix: str) -> ConfigErrors:
        """The same errors for one part checked on its own (a desk form): keys below `prefix`, no file or line."""
        return ConfigErrors(
            [ConfigError(e.message, key=e.key.removeprefix(prefix).lstrip(".") or e.key) for e in self.errors]
        )


class SourceError(CurationError):
    """A problem with one source; the runner records it as the source's status."""

    def __init__(self, message: str, *, source_id: str = "") -> None:
        self.message = message
        self.source_id = source_id
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.source_id}: {self.message}" if self.source_id else self.message


class FetchError(SourceError):
    """An outbound HTTP fetch failed; `url` is the URL that failed, `status` the HTTP status if any."""

    def __init__(
        self, message: str, *, url: str = "", status: int | None = None, source_id: str = "", body: bytes = b""
    ) -> None:
        self.url = url
        self.status = status
        #: the start of a 4xx error body (APIs explain themselves there: XRPC `{"error": ..., "message": ...}`)
        self.body = body
        super().__init__(message, source_id=source_id)

    def __str__(self) -> str:
        text = self.message
        if self.url and self.url not in text:
            text = f"{text} ({self.url})"
        return f"{self.source_id}: {text}" if self.source_id else text


class BlockedAddressError(FetchError):
    """The target host resolves to a private, loopback, link-local, multicast or reserved address."""


class TooLargeError(FetchError):
    """The (decompressed) body is larger than the configured cap."""


class RetryLaterError(FetchError):
    """The upstream asked us to come back later (429 or 503); `retry_after` in seconds, None if not given."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        source_id: str = "",
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, url=url, status=status, source_id=source_id)


class GoneError(FetchError):
    """410 Gone: the upstream says the feed is gone for good."""


class ParseError(SourceError):
    """The document could not be parsed as any supported format."""


class NotFoundError(CurationError, LookupError):
    """Something asked for by id does not exist."""


class EventNotFound(NotFoundError):
    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(f"no such event: {slug!r}")


class ItemNotFound(NotFoundError):
    def __init__(self, event: str, item_id: str) -> None:
        self.event = event
        self.item_id = item_id
        super().__init__(f"no such item in {event!r}: {item_id!r}")


class EventExists(CurationError):
    """An admin created an event under a slug another event has."""

    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(f"slug: an event {slug!r} exists already")


class VersionConflict(CurationError):
    """An editor acted on a version of an item that is no longer current; `current` is the item now."""

    def __init__(self, current: object, seen: int) -> None:
        self.current = current
        self.seen = seen
        super().__init__(f"the item changed since version {seen}: it is at version {getattr(current, 'version', '?')}")


class StoreError(CurationError):
    """The store failed (disk full, locked, connection lost); the cause is chained."""

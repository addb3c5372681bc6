"""Poll scheduling decisions: when to poll a source next, and how to read Retry-After.

Pure functions: no I/O, the clock and the random source are passed in (lemon24/reader's "decider" shape).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: a 429/503 without a usable Retry-After waits at least this long (UPSTREAMS.md §7.6)
RETRY_LATER_FLOOR = 600.0
#: a Retry-After further out than this is taken as this: a typo upstream must not silence a feed for a year
RETRY_AFTER_CAP = 31 * 86400.0
#: failure backoff doubles per consecutive error; past this exponent the cap has long been reached
_MAX_EXPONENT = 64

_rng = random.Random()


def parse_http_date(value: str | None) -> datetime | None:
    """An RFC 9110 HTTP-date (IMF-fixdate, RFC 850 or asctime) -> aware UTC datetime; None if absent or bad."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # HTTP-dates are GMT by definition; asctime carries no zone at all
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_retry_after(value: str | None, date_header: str | None, now: datetime) -> float | None:
    """Seconds to wait according to a Retry-After header, or None when it is missing or unreadable.

    Args:
        value: the Retry-After header: delta-seconds ("120") or an HTTP-date.
        date_header: the response's Date header. An HTTP-date Retry-After is measured from it, so a
            skewed local clock does not stretch or shrink the wait; without a usable Date, from `now`.
        now: the current time (aware).
    Returns:
        seconds, never negative (a date in the past means "now": 0.0); not capped here, see next_delay.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    when = parse_http_date(text)
    if when is None:
        return None
    reference = parse_http_date(date_header) or now
    return max(0.0, (when - reference).total_seconds())


def parse_rate_limit_reset(value: str | None, now: datetime) -> float | None:
    """Seconds until a rate-limit window resets, from `X-RateLimit-Reset` (Mastodon: an ISO-8601 time) or
    `RateLimit-Reset` (Bluesky and the IETF draft: unix seconds, or seconds from now when small)."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        number = float(text)
        # a unix time is far larger than any sensible window length
        return max(0.0, number - now.timestamp()) if number > 1e9 else number
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_delay(
    interval: float,
    *,
    error_count: int = 0,
    retry_later: bool = False,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    max_backoff: float = 86400.0,
    jitter: float = 0.1,
) -> float:
    """Seconds until the next poll of one source.

    The operator's `interval` is the schedule. Upstream cache hints (Cache-Control max-age, Expires,
    RSS `<ttl>`, `sy:updatePeriod`) are deliberately ignored: during a live event the operator decides
    how fresh a source must be, so there is no parameter for them. Only two things lengthen the wait:

    - consecutive failures: `interval * 2**error_count`, capped at `max_backoff` (about one probe a day),
      but never shorter than `interval` itself;
    - an upstream's "come back later" (429/503, `retry_later=True`): at least `retry_after` seconds
      (capped at 31 days), or at least 10 minutes when the upstream gave no usable Retry-After.
      A `retry_after` given on its own implies `retry_later`.

    Every delay gets up to `jitter * delay` added at random, so that sources configured alike drift
    apart instead of hitting their hosts in lockstep.

    Args:
        interval: the source's configured interval in seconds (already clamped to the operator's floor).
        error_count: consecutive failed polls before this one (0 after a success).
        retry_later: the last poll was answered 429 or 503.
        retry_after: parsed Retry-After in seconds (see parse_retry_after), None if absent or bad.
        rng: random source, injected by tests; a module-level one otherwise.
        max_backoff: the longest failure backoff, in seconds.
        jitter: the largest fraction of the delay added at random.
    Raises:
        ValueError: a negative interval, error_count, max_backoff or jitter.
    """
    if interval < 0 or error_count < 0 or max_backoff < 0 or jitter < 0:
        raise ValueError(
            f"next_delay: negative argument (interval={interval}, error_count={error_count}, "
            f"max_backoff={max_backoff}, jitter={jitter})"
        )
    base = interval
    if error_count:
        base = max(interval, min(max_backoff, interval * 2.0 ** min(error_count, _MAX_EXPONENT)))
    delay = base + (rng or _rng).uniform(0.0, jitter * base)
    if retry_later or retry_after is not None:
        floor = RETRY_LATER_FLOOR if retry_after is None else min(retry_after, RETRY_AFTER_CAP)
        delay = max(delay, floor)
    return delay

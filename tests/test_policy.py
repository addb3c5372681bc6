"""The poll-scheduling decisions: Retry-After parsing and the next delay, as tables of cases."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from curation.collectors.policy import (
    RETRY_AFTER_CAP,
    RETRY_LATER_FLOOR,
    next_delay,
    parse_http_date,
    parse_retry_after,
)

NOW = datetime(2027, 7, 12, 12, 0, 0, tzinfo=UTC)
DATE = "Mon, 12 Jul 2027 12:00:00 GMT"  # the response's Date, equal to NOW


class NoJitter(random.Random):
    """uniform() gives its lower bound: delays come out exact."""

    def uniform(self, a: float, b: float) -> float:
        return a


class MaxJitter(random.Random):
    """uniform() gives its upper bound: the largest delay the jitter allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("value", "date_header", "expected"),
    [
        (None, DATE, None),
        ("", DATE, None),
        ("   ", DATE, None),
        ("120", DATE, 120.0),
        (" 120 ", DATE, 120.0),
        ("0", DATE, 0.0),
        ("-5", DATE, None),
        ("1.5", DATE, None),
        ("soon", DATE, None),
        ("Mon, 12 Jul 2027 12:02:00 GMT", DATE, 120.0),
        # measured from the response's Date, not from our clock: the upstream's clock is 1 h ahead of ours
        ("Mon, 12 Jul 2027 13:05:00 GMT", "Mon, 12 Jul 2027 13:00:00 GMT", 300.0),
        # no usable Date header: measured from now
        ("Mon, 12 Jul 2027 12:10:00 GMT", None, 600.0),
        ("Mon, 12 Jul 2027 12:10:00 GMT", "garbage", 600.0),
        # RFC 850 and asctime forms are HTTP-dates too
        ("Monday, 12-Jul-27 12:01:00 GMT", DATE, 60.0),
        ("Mon Jul 12 12:01:30 2027", DATE, 90.0),
        # a date in the past means "now"
        ("Mon, 12 Jul 2027 11:00:00 GMT", DATE, 0.0),
        ("Mon, 32 Jul 2027 25:00:00 GMT", DATE, None),
    ],
)
def test_parse_retry_after(value: str | None, date_header: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, date_header, NOW) == expected


def test_parse_http_date_is_aware_utc() -> None:
    when = parse_http_date("Mon, 12 Jul 2027 14:00:00 +0200")
    assert when == NOW
    assert when is not None and when.tzinfo is not None
    assert parse_http_date("not a date") is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # success: the operator's interval, nothing else
        ({}, 60.0),
        # failure n: interval * 2**n
        ({"error_count": 1}, 120.0),
        ({"error_count": 3}, 480.0),
        # ... capped at about one probe a day
        ({"error_count": 20}, 86400.0),
        ({"error_count": 10_000}, 86400.0),
        ({"error_count": 5, "max_backoff": 600.0}, 600.0),
        # 429/503 with Retry-After: at least that long
        ({"retry_later": True, "retry_after": 3600.0}, 3600.0),
        ({"retry_after": 3600.0}, 3600.0),
        # ... but never shorter than the normal schedule
        ({"retry_later": True, "retry_after": 5.0}, 60.0),
        ({"retry_later": True, "retry_after": 5.0, "error_count": 2}, 240.0),
        # ... and capped at 31 days
        ({"retry_later": True, "retry_after": 400 * 86400.0}, RETRY_AFTER_CAP),
        # 429/503 without (or with a bad) Retry-After: at least 10 minutes
        ({"retry_later": True}, RETRY_LATER_FLOOR),
        ({"retry_later": True, "error_count": 8}, 15360.0),
    ],
)
def test_next_delay_table(kwargs: dict[str, float], expected: float) -> None:
    assert next_delay(60.0, rng=NoJitter(), **kwargs) == pytest.approx(expected)  # type: ignore[arg-type]


def test_long_interval_is_not_shortened_by_the_backoff_cap() -> None:
    assert next_delay(3 * 86400.0, error_count=2, rng=NoJitter()) == 3 * 86400.0


@pytest.mark.parametrize("error_count", [0, 1, 4])
def test_jitter_adds_at_most_ten_percent(error_count: int) -> None:
    base = 60.0 * 2**error_count
    assert next_delay(60.0, error_count=error_count, rng=MaxJitter()) == pytest.approx(base * 1.1)
    for seed in range(50):
        delay = next_delay(60.0, error_count=error_count, rng=random.Random(seed))
        assert base <= delay <= base * 1.1


def test_jitter_spreads_sources_apart() -> None:
    delays = {next_delay(60.0, rng=random.Random(seed)) for seed in range(20)}
    assert len(delays) == 20


def test_jitter_zero_is_exact() -> None:
    assert next_delay(60.0, jitter=0.0) == 60.0


def test_cache_hints_have_no_say() -> None:
    """There is no way to pass Cache-Control/Expires/<ttl>: the interval is the schedule."""
    with pytest.raises(TypeError):
        next_delay(60.0, max_age=3600.0)  # type: ignore[call-arg]


def test_negative_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="interval=-1"):
        next_delay(-1.0)
    with pytest.raises(ValueError, match="error_count=-1"):
        next_delay(60.0, error_count=-1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-08-01T14:05:00.070144Z", 300.070144),  # Mastodon's X-RateLimit-Reset
        ("1785593100", 300.0),  # Bluesky's RateLimit-Reset: unix seconds
        ("90", 90.0),  # the IETF draft: seconds from now
        ("2026-08-01T13:00:00Z", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_rate_limit_reset_headers(value: str | None, expected: float | None) -> None:
    from curation.collectors.policy import parse_rate_limit_reset

    now = datetime(2026, 8, 1, 14, 0, tzinfo=UTC)
    result = parse_rate_limit_reset(value, now)
    assert result == (pytest.approx(expected) if expected is not None else None)

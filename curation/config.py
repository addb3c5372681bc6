"""Settings: every CURATION_* environment variable, its default and its meaning, in one table.

The README's settings table is checked against SETTINGS by tests/test_docs.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

T = TypeVar("T")


class Setting(NamedTuple):
    name: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("CURATION_SOURCES", "sources.yaml", "path of sources.yaml"),
    Setting(
        "CURATION_STORE",
        "sqlite:///data/fil.db",
        "sqlite:///relative/path.db, sqlite:////absolute/path.db, or redis://host:port/db",
    ),
    Setting("CURATION_HOST", "127.0.0.1", "address to listen on"),
    Setting("CURATION_PORT", "8000", "port to listen on"),
    Setting("CURATION_PUBLIC_URL", "", "base URL readers and upstreams see (default http://HOST:PORT)"),
    Setting("CURATION_ALLOW_PRIVATE_HOSTS", "", "1/true: collectors may reach private and loopback addresses"),
    Setting("CURATION_MIN_POLL_INTERVAL", "30s", "the floor for a source's interval"),
    Setting("CURATION_SECRET_KEY", "", "signs sessions; generated and kept in the data folder when unset"),
    Setting("CURATION_TRUSTED_PROXIES", "", "addresses whose X-Forwarded-For / -Proto are believed"),
    Setting("CURATION_SESSION_TTL", "12h", "how long an editor's desk session lasts after login"),
    Setting("CURATION_DEMO", "", "1/true: add the offline demo event, fed by a built-in replay upstream on loopback"),
    Setting("CURATION_LOG_RETENTION", "10000", "changes kept per event for resume; an older `since` gets reset"),
    Setting("CURATION_MAX_BODY", "10MiB", "cap on a fetched document, after decompression"),
    Setting("CURATION_FETCH_TIMEOUT", "30s", "total time for one fetch, a trickling body included"),
    Setting("CURATION_CONNECT_TIMEOUT", "10s", "time to connect to an upstream"),
    Setting("CURATION_READER_BUFFER", "256KiB", "bytes a slow reader may hold back before it is disconnected"),
    Setting("CURATION_PING_INTERVAL", "20s", "websocket keepalive ping interval"),
    Setting("CURATION_RELOAD_INTERVAL", "2s", "how often sources.yaml is checked for changes (SIGHUP reloads at once)"),
    Setting("CURATION_LOG_LEVEL", "info", "debug, info, warning or error"),
    Setting("CURATION_LOG_FORMAT", "text", "text, or json: one JSON object per log line (access log included)"),
    Setting("CURATION_METRICS_TOKEN", "", "when set, GET /metrics asks for Authorization: Bearer <this token>"),
    Setting("CURATION_WEBSUB_LEASE", "1d", "WebSub lease asked of hubs (renewed at 80% of what the hub grants)"),
    Setting(
        "CURATION_WEBSUB_SAFETY_INTERVAL", "15m", "while WebSub push is healthy, a feed is polled at most this often"
    ),
    Setting("CURATION_BLUESKY_APPVIEW", "https://public.api.bsky.app", "AppView that reads pasted Bluesky post URLs"),
    Setting("CURATION_YOUTUBE_OEMBED", "https://www.youtube.com/oembed", "oEmbed endpoint for pasted YouTube URLs"),
    Setting("CURATION_X_OEMBED", "https://publish.twitter.com/oembed", "oEmbed endpoint for pasted X (Twitter) URLs"),
    Setting(
        "CURATION_LEASE_TTL", "15s", "with several processes: how soon another takes over the sources of one that died"
    ),
    Setting("CURATION_IMAGE_PROXY", "", "1/true: readers load every image through Fil's signed /img/ URLs"),
    Setting("CURATION_IMAGE_MAX_BYTES", "5MiB", "cap on one image the image proxy fetches"),
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 1024**2, "gb": 10**9, "gib": 1024**3}


def parse_duration(value: str | int | float) -> float:
    """`30s`, `5m`, `1h`, `250ms` or a bare number of seconds -> seconds. ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"not a duration: {value!r} (negative)")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use 30s, 5m, 1h or a number of seconds)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_size(value: str | int) -> int:
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"not a size: {value!r} (use 10MiB, 256KiB or a number of bytes)")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def parse_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def parse_log_format(value: str) -> str:
    value = value.strip().lower()
    if value not in {"text", "json"}:
        raise ValueError("use text or json")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    sources: str = "sources.yaml"
    store: str = "sqlite:///data/fil.db"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    allow_private_hosts: bool = False
    min_poll_interval: float = 30.0
    secret_key: str = ""
    trusted_proxies: tuple[str, ...] = ()
    session_ttl: float = 12 * 3600.0
    demo: bool = False
    log_retention: int = 10000
    max_body: int = 10 * 1024 * 1024
    fetch_timeout: float = 30.0
    connect_timeout: float = 10.0
    reader_buffer: int = 256 * 1024
    ping_interval: float = 20.0
    reload_interval: float = 2.0
    log_level: str = "info"
    log_format: str = "text"
    metrics_token: str = ""
    #: seconds between the demo's releases (not an environment setting: tests shorten it)
    demo_release_every: float = 6.0
    #: how often scheduled editor posts are checked for publication (tests shorten it)
    schedule_check: float = 1.0
    websub_lease: float = 86400.0
    websub_safety_interval: float = 900.0
    bluesky_appview: str = "https://public.api.bsky.app"
    youtube_oembed: str = "https://www.youtube.com/oembed"
    x_oembed: str = "https://publish.twitter.com/oembed"
    lease_ttl: float = 15.0
    image_proxy: bool = False
    image_max_bytes: int = 5 * 1024 * 1024

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every CURATION_* variable; a bad value raises ValueError naming the variable."""
        env = dict(os.environ if environ is None else environ)
        values = {s.name: env.get(s.name, s.default) for s in SETTINGS}

        def convert(name: str, fn: Callable[[str], T]) -> T:
            try:
                return fn(values[name])
            except ValueError as e:
                raise ValueError(f"{name}={values[name]!r}: {e}") from None

        return cls(
            sources=values["CURATION_SOURCES"],
            store=values["CURATION_STORE"],
            host=values["CURATION_HOST"],
            port=convert("CURATION_PORT", int),
            public_url=values["CURATION_PUBLIC_URL"],
            allow_private_hosts=parse_bool(values["CURATION_ALLOW_PRIVATE_HOSTS"]),
            min_poll_interval=convert("CURATION_MIN_POLL_INTERVAL", parse_duration),
            secret_key=values["CURATION_SECRET_KEY"],
            trusted_proxies=tuple(p.strip() for p in values["CURATION_TRUSTED_PROXIES"].split(",") if p.strip()),
            session_ttl=convert("CURATION_SESSION_TTL", parse_duration),
            demo=parse_bool(values["CURATION_DEMO"]),
            log_retention=convert("CURATION_LOG_RETENTION", int),
            max_body=convert("CURATION_MAX_BODY", parse_size),
            fetch_timeout=convert("CURATION_FETCH_TIMEOUT", parse_duration),
            connect_timeout=convert("CURATION_CONNECT_TIMEOUT", parse_duration),
            reader_buffer=convert("CURATION_READER_BUFFER", parse_size),
            ping_interval=convert("CURATION_PING_INTERVAL", parse_duration),
            reload_interval=convert("CURATION_RELOAD_INTERVAL", parse_duration),
            log_level=values["CURATION_LOG_LEVEL"],
            log_format=convert("CURATION_LOG_FORMAT", parse_log_format),
            metrics_token=values["CURATION_METRICS_TOKEN"].strip(),
            websub_lease=convert("CURATION_WEBSUB_LEASE", parse_duration),
            websub_safety_interval=convert("CURATION_WEBSUB_SAFETY_INTERVAL", parse_duration),
            bluesky_appview=values["CURATION_BLUESKY_APPVIEW"],
            youtube_oembed=values["CURATION_YOUTUBE_OEMBED"],
            x_oembed=values["CURATION_X_OEMBED"],
            lease_ttl=convert("CURATION_LEASE_TTL", parse_duration),
            image_proxy=parse_bool(values["CURATION_IMAGE_PROXY"]),
            image_max_bytes=convert("CURATION_IMAGE_MAX_BYTES", parse_size),
        )

"""Serve Fil with uvicorn: Fil's websocket protocol, no per-message compression, GC tuned for many readers."""

from __future__ import annotations

import gc
import importlib.util
import resource

import uvicorn
from starlette.applications import Starlette

from curation import logs
from curation.config import Settings
from curation.web import create_app
from curation.web.wsproto import FilWebSocketProtocol

#: readers send nothing but pongs and closes; anything bigger is hostile
READER_FRAME_MAX = 4096


def uvicorn_config(settings: Settings, *, app: Starlette | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        # compression costs 30-90 KB and 1.5-2.4x CPU per reader, and breaks frame-once fan-out
        ws=FilWebSocketProtocol,
        ws_per_message_deflate=False,
        ws_max_size=READER_FRAME_MAX,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_interval,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        log_level=settings.log_level,
        log_config=logs.uvicorn_log_config(settings.log_format),
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


#: Thousands of long-lived connection objects make full collections slow (0.45-0.86 s at 10k
#: readers, BASELINES.md); collect the young generation less often so full passes are rare.
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLD)


def _raise_file_limit() -> None:
    """Each reader is a socket: allow as many as the system lets this process have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    tune_gc()
    _raise_file_limit()
    uvicorn.Server(uvicorn_config(settings)).run()

"""The running Fil: wires config, store, hub, collectors and the demo together; reloads sources.yaml.

Data flows one way: collectors -> store -> (listener) -> hub -> readers. The web layer only reads
from here; nothing below it imports the web layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import multiprocessing
import os
import signal
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from curation.auth import Auth
from curation.cluster import Cluster
from curation.collectors import CollectorContext
from curation.collectors.fetch import Fetcher
from curation.collectors.leases import Leases
from curation.collectors.runner import Collection
from curation.collectors.websub import WebSubManager
from curation.config import Settings
from curation.errors import ConfigError, ConfigErrors, EventExists
from curation.hub import Hub
from curation.metrics import STORE_BUCKETS, LoopLag, Registry, timed_store
from curation.models import Config, Event, EventStatus, Source, SourceStatus
from curation.ratelimit import Limiter
from curation.runtime_events import check_changes, overlay, parse_event
from curation.runtime_sources import parse_source
from curation.sources import load_config
from curation.store import RuntimeEvent, RuntimeSource, Store, open_store

if TYPE_CHECKING:
    from curation.demo import DemoUpstream
    from curation.store.redis import RedisStore

log = logging.getLogger("curation")


def _shared(store: Store) -> RedisStore | None:
    """The store as the one several processes share (Redis), or None (the embedded SQLite store)."""
    from curation.store.redis import RedisStore

    return store if isinstance(store, RedisStore) else None


def _worker_init(parent: int) -> None:
    """A parse worker dies with Fil, even after kill -9 (it would otherwise wait on its queue forever)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    if os.getppid() != parent:  # Fil was already gone before the line above
        os._exit(0)


class Fil:
    def __init__(self, settings: Settings, *, store: Store | None = None, executor: Executor | None = None) -> None:
        self.settings = settings
        #: what /metrics shows beyond the counts it reads from the hub and the collectors (curation/web/ops.py)
        self.metrics = Registry()
        self.store_latency = self.metrics.histogram(
            "fil_store_duration_seconds", "Store calls, by Store method", ["operation"], buckets=STORE_BUCKETS
        )
        raw = store or open_store(settings.store, log_retention=settings.log_retention)
        self.store = timed_store(raw, self.store_latency)
        self.loop_lag = LoopLag(self.metrics)
        self.hub = Hub(self.store)
        #: several processes on one Redis: each hears the others' commits and notes (curation/cluster.py)
        self.cluster: Cluster | None = None
        self._leases: Leases | None = None
        limiter: Limiter | None = None
        shared = _shared(raw)
        if shared is not None:
            from curation.store.redis_leases import RedisLeases
            from curation.store.redis_limits import RedisLoginLimiter

            self.cluster = Cluster(shared, self.store, self.hub, on_note=self._on_note)
            self.hub.catch_up = self.cluster.catch_up
            self._leases = RedisLeases(shared.client, shared.prefix)
            limiter = RedisLoginLimiter(shared.client, shared.prefix)  # the same allowance on every process
        #: editor logins, sessions and tokens; the accounts live in the store, start() loads the cookie-signing key
        self.auth = Auth(self.store, settings, limiter=limiter)
        self.fetcher = Fetcher(
            allow_private=settings.allow_private_hosts,
            max_body=settings.max_body,
            connect_timeout=settings.connect_timeout,
            total_timeout=settings.fetch_timeout,
        )
        self._executor = executor
        self._own_executor = executor is None
        self.collection: Collection | None = None
        #: WebSub subscriptions; only with an explicit CURATION_PUBLIC_URL (hubs must reach the callbacks)
        self.websub: WebSubManager | None = None
        self.config = Config(path=settings.sources, events=(), sources={})
        self.demo_config: Config | None = None
        #: sources.yaml as last loaded, and the sources editors added from the desk
        self._file_config = self.config
        self.runtime: list[RuntimeSource] = []
        #: events admins created or adjusted from the desk (runtime_events)
        self.runtime_events: list[RuntimeEvent] = []
        self.ready = False
        self.last_reload_error: str | None = None
        self._demo: DemoUpstream | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._schedule_task: asyncio.Task[None] | None = None
        self._stamp: tuple[int, int] | None = None
        self._unlisten = self.store.listen(self.cluster.local if self.cluster else self.hub.publish)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open everything; raises ConfigErrors when sources.yaml is invalid (the server refuses to start)."""
        config = await asyncio.to_thread(self._load)
        await self.store.open()
        await self.auth.start()  # CURATION_SECRET_KEY, or the key kept next to the SQLite file (made on first start)
        await self.fetcher.start()
        if self._executor is None:
            # parsing is CPU work: a separate process keeps it (and the GIL) off the event loop; spawned, not
            # forked, since this process has threads (the SQLite writer)
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
        self.collection = Collection(
            self.store,
            CollectorContext(self.fetcher, self._executor),
            leases=self._leases,
            lease_ttl=self.settings.lease_ttl,
        )
        await self.collection.load()
        self.runtime = await self.store.runtime_sources()
        self.runtime_events = await self.store.runtime_events()
        if self.settings.public_url:
            # the default base URL (http://HOST:PORT, often 127.0.0.1) is no address a hub could call back
            self.websub = WebSubManager(
                self.collection,
                self.fetcher,
                public_url=self.settings.public_url,
                lease=self.settings.websub_lease,
                safety_interval=self.settings.websub_safety_interval,
                executor=self._executor,
            )
            self.collection.websub = self.websub
            if self.cluster is not None:
                cluster = self.cluster

                async def forward(note: dict[str, object]) -> None:
                    await cluster.note("websub", json.dumps(note))

                self.websub.forward = forward
        if self.settings.demo:
            await self._start_demo()
        await self._apply(config)
        self._watch_task = asyncio.create_task(self._watch(), name="sources-watch")
        self._schedule_task = asyncio.create_task(self._schedule(), name="scheduled-posts")
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        self.loop_lag.start()
        if self.cluster is not None:
            await self.cluster.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self.cluster is not None:
            await self.cluster.stop()
        for task in (self._watch_task, self._schedule_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self.websub is not None:
            await self.websub.stop()
        if self.collection is not None:
            await self.collection.stop()
        if self._demo is not None:
            await self._demo.stop()
        await self.fetcher.close()
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._unlisten()
        await self.store.close()
        await self.loop_lag.stop()

    async def _start_demo(self) -> None:
        from curation.demo import DemoUpstream

        demo = DemoUpstream(release_every=self.settings.demo_release_every)
        await demo.start()
        self._demo = demo
        self.fetcher.trusted_origins.add(demo.origin)
        event, sources = demo.config()
        self.demo_config = Config(path="(built-in demo)", events=(event,), sources={s.id: s for s in sources})
        log.info("demo event live at %s/events/%s", self.settings.base_url, event.slug)

    # -- configuration ---------------------------------------------------------------------

    def _load(self) -> Config:
        config = load_config(self.settings.sources, min_interval=self.settings.min_poll_interval)
        self._stamp = self._file_stamp()
        return config

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.settings.sources)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _merged(self, config: Config) -> Config:
        """sources.yaml, plus the demo, plus the events and sources editors added or changed from the desk."""
        events = config.events
        sources = dict(config.sources)
        if self.demo_config is not None:
            events = self.demo_config.events + tuple(
                e for e in events if e.slug not in {d.slug for d in self.demo_config.events}
            )
            sources = {**self.demo_config.sources, **sources}
        events = self._with_desk_events(events)
        added: dict[str, list[str]] = {}
        for runtime in self.runtime:
            if runtime.source_id in sources or not any(e.slug == runtime.event for e in events):
                continue  # sources.yaml took the id since, or the event is gone: the file wins
            try:
                source = parse_source(
                    runtime.definition,
                    event=runtime.event,
                    taken=sources,
                    min_interval=self.settings.min_poll_interval,
                )
            except ConfigErrors as e:
                log.warning("desk source %s of %s no longer valid, left out: %s", runtime.source_id, runtime.event, e)
                continue
            sources[source.id] = source
            added.setdefault(runtime.event, []).append(source.id)
        events = tuple(replace(e, sources=e.sources + tuple(added.get(e.slug, ()))) for e in events)
        return replace(config, events=events, sources=sources)

    def _with_desk_events(self, events: tuple[Event, ...]) -> tuple[Event, ...]:
        merged = {e.slug: e for e in events}
        for kept in self.runtime_events:
            try:
                merged[kept.slug] = overlay(merged.get(kept.slug), kept.slug, kept.settings)
            except ConfigErrors as e:
                # a desk change the file has since made invalid (a timezone typo cannot get in: it was checked)
                log.warning("desk settings of event %s no longer valid, left out: %s", kept.slug, e)
        return tuple(merged.values())

    async def _apply(self, config: Config) -> None:
        self._file_config = config
        self.config = self._merged(config)
        assert self.collection is not None
        await self.collection.apply(self.config)

    def origin(self, source_id: str) -> str:
        """Where a source comes from: `sources.yaml`, `demo` or `desk`."""
        if source_id in self._file_config.sources:
            return "sources.yaml"
        if self.demo_config is not None and source_id in self.demo_config.sources:
            return "demo"
        return "desk"

    def event_origin(self, slug: str) -> str:
        """Where an event comes from: `sources.yaml`, `demo` or `desk`."""
        if self._file_config.event(slug) is not None:
            return "sources.yaml"
        if self.demo_config is not None and self.demo_config.event(slug) is not None:
            return "demo"
        return "desk"

    def desk_settings(self, slug: str) -> RuntimeEvent | None:
        return next((kept for kept in self.runtime_events if kept.slug == slug), None)

    async def create_event(self, definition: object, *, editor: str) -> Event:
        """A new event from the desk (the keys of a sources.yaml event, sources added one by one later).

        Raises:
            ConfigErrors: naming the wrong key.
            EventExists: another event has this slug.
        """
        settings = check_changes(definition, creating=True)
        slug = settings.pop("slug", None)
        if not isinstance(slug, str):
            raise ConfigErrors([ConfigError("required: the event's URL name, [a-z0-9-]", key="slug")])
        parse_event(slug, settings)
        if self.config.event(slug) is not None:
            raise EventExists(slug)
        await self._keep_event(slug, settings, editor=editor)
        event = self.config.event(slug)
        assert event is not None
        return event

    async def update_event(self, slug: str, changes: object, *, editor: str) -> Event | None:
        """Change an event's keys from the desk (null hands a key of a sources.yaml event back to the file);
        None when there is no such event. Raises ConfigErrors naming the wrong key."""
        event = self.config.event(slug)
        if event is None:
            return None
        asked = check_changes(changes, creating=False)
        kept = self.desk_settings(slug)
        settings = {**(kept.settings if kept else {}), **asked}
        if self.event_origin(slug) != "desk":
            settings = {key: value for key, value in settings.items() if value is not None}
        base = self._file_config.event(slug) or (self.demo_config.event(slug) if self.demo_config else None)
        overlay(base, slug, settings)
        await self._keep_event(slug, settings, editor=editor)
        return self.config.event(slug)

    async def _keep_event(self, slug: str, settings: dict[str, Any], *, editor: str) -> None:
        await self.store.put_runtime_event(slug, settings, editor=editor)
        await self._desk_changed()

    async def _desk_changed(self) -> None:
        """The desk added or changed sources or events: apply it here, and tell the other processes."""
        await self._reload_desk()
        if self.cluster is not None:
            await self.cluster.note("config")

    async def _reload_desk(self) -> None:
        self.runtime = await self.store.runtime_sources()
        self.runtime_events = await self.store.runtime_events()
        await self._apply(self._file_config)

    async def header_changed(self, event: str, header: dict[str, object]) -> None:
        """A new header block: to this process's readers and desks now, and to the other processes'."""
        self.hub.send_all(event, {"type": "header", "header": header})
        if self.cluster is not None:
            await self.cluster.note("header", event)

    async def _on_note(self, kind: str, event: str) -> None:
        """Another process told of a change outside the log (curation/cluster.py)."""
        if kind == "config" and self.collection is not None:
            await self._reload_desk()
        elif kind == "websub" and self.websub is not None:
            note = json.loads(event)
            if isinstance(note, dict):
                await self.websub.apply_forwarded(note)
        elif kind == "header":
            header = await self.store.get_header(event)
            if header is not None:
                self.hub.send_all(event, {"type": "header", "header": header.to_json()})

    async def add_source(self, event: str, definition: dict[str, Any], *, editor: str) -> Source:
        """Add a source to a running event; ConfigErrors naming the key when the definition is wrong."""
        source = parse_source(
            definition, event=event, taken=self.config.sources, min_interval=self.settings.min_poll_interval
        )
        await self.store.add_runtime_source(event, source.id, dict(definition), editor=editor)
        await self._desk_changed()
        return source

    async def remove_source(self, event: str, source_id: str, *, editor: str) -> bool:
        """Remove a desk-added source (its items stay); False when the desk did not add it."""
        if not await self.store.remove_runtime_source(event, source_id, editor=editor):
            return False
        await self._desk_changed()
        return True

    async def reload(self) -> bool:
        """Re-read sources.yaml; an invalid file is refused and the running config stays."""
        try:
            config = await asyncio.to_thread(self._load)
        except ConfigErrors as e:
            self.last_reload_error = str(e)
            log.error("sources file not reloaded, the running configuration stays:\n%s", e)
            return False
        self.last_reload_error = None
        await self._apply(config)
        log.info("sources file reloaded: %d events, %d sources", len(config.events), len(config.sources))
        return True

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            stamp = self._file_stamp()
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                await self.reload()

    async def _schedule(self) -> None:
        """Publish editors' scheduled posts when their time comes."""
        while True:
            await asyncio.sleep(self.settings.schedule_check)
            try:
                await self.store.publish_due()
            except Exception:  # the store is riding out a problem: try again at the next tick
                log.exception("could not publish scheduled posts")

    # -- what the web layer reads ----------------------------------------------------------

    def public_events(self) -> list[Event]:
        return [e for e in self.config.events if e.status is not EventStatus.DRAFT]

    def reader_event(self, slug: str) -> Event | None:
        """The event readers may see: configured and not a draft."""
        event = self.config.event(slug)
        if event is None or event.status is EventStatus.DRAFT:
            return None
        return event

    def statuses(self) -> list[SourceStatus]:
        statuses = self.collection.statuses if self.collection else {}
        return [statuses[sid] for sid in self.config.sources if sid in statuses]

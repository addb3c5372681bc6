"""Load and validate the operator's sources.yaml into a Config.

Every problem is collected, not only the first, and reported as `FILE:LINE: path.to.key: message`.
"""

from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard, TypeVar
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from curation.config import parse_duration
from curation.errors import ConfigError, ConfigErrors
from curation.models import Config, Event, EventStatus, Moderation, Order, Role, Source, SourceKind

__all__ = ["DEFAULT_APPVIEW", "DEFAULT_INTERVAL", "DEFAULT_JETSTREAM", "MAX_BACKFILL", "load_config", "parse_config"]

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
Reader = Callable[[Node, str], T | None]

DEFAULT_INTERVAL = 60.0
DEFAULT_BACKFILL = 20
#: a first fetch larger than this would flood a live page with history nobody scrolls to
MAX_BACKFILL = 500
#: the longest poll interval (a week): beyond it the schedule no longer fits a date (`interval: 1e999`)
MAX_INTERVAL = 7 * 86400.0
DEFAULT_APPVIEW = "https://public.api.bsky.app"
DEFAULT_JETSTREAM = "wss://jetstream2.us-east.bsky.network/subscribe"
LANGUAGES = ("en", "fr")
NO_WORDS: tuple[str, ...] = ()

TOP_KEYS = ("events", "sources")
EVENT_KEYS = ("slug", "title", "language", "timezone", "order", "status", "keywords", "sources")
KEYWORD_KEYS = ("block", "allow")
COMMON_KEYS = ("id", "kind", "role", "label", "moderation", "enabled", "include", "exclude", "backfill")
POLLED = (SourceKind.FEED, SourceKind.MASTODON, SourceKind.BLUESKY)
KIND_KEYS: dict[SourceKind, tuple[str, ...]] = {
    SourceKind.FEED: ("url",),
    SourceKind.MASTODON: ("instance", "account", "hashtag", "token_env", "replies", "boosts"),
    SourceKind.BLUESKY: ("actor", "hashtag", "auth_env", "appview", "jetstream"),
    SourceKind.PUSH: ("secret_env",),
}
SECRET_HINT = {SourceKind.MASTODON: "token_env", SourceKind.BLUESKY: "auth_env", SourceKind.PUSH: "secret_env"}

SLUG = re.compile(r"^[a-z0-9-]+$")
# source ids end up in URL paths (/api/ingest/ID, /websub/ID), so they stay URL-safe
SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# upper case only: a mixed-case value here is far more likely a pasted token than a variable name
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
SECRETISH = re.compile(r"token|secret|password|passwd|api[_-]?key|credential|bearer", re.IGNORECASE)
HASHTAG = re.compile(r"^[^\s#/?&]{1,100}$")
MASTODON_ACCOUNT = re.compile(r"^@?([A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9.-]+)?)$")
DID = re.compile(r"^did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}$")
HANDLE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")

TAG = "tag:yaml.org,2002:"
_CONSTRUCT = SafeConstructor()


def load_config(path: str | os.PathLike[str], *, min_interval: float = 30.0) -> Config:
    """Read and validate one sources file.

    Raises:
        ConfigErrors: every problem found, the unreadable file included.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigErrors([ConfigError(f"cannot read: {e.strerror or e}", path=name)]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        error = ConfigError(f"not UTF-8 text (byte 0x{data[e.start]:02x})", path=name, line=line)
        raise ConfigErrors([error]) from None
    return parse_config(text, path=name, min_interval=min_interval)


def parse_config(text: str, *, path: str = "sources.yaml", min_interval: float = 30.0) -> Config:
    """Validate the text of a sources file; `path` only names it in messages.

    Raises:
        ConfigErrors: every problem found, sorted by line.
    """
    checker = _Checker(path, min_interval)
    config = checker.check(text)
    if checker.errors or config is None:
        raise ConfigErrors(checker.sorted_errors())
    return config


@dataclass(slots=True)
class _KindParts:
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    hashtag: bool = False


Entries = dict[str, tuple[Node, Node]]


class _Checker:
    """One validation pass; problems accumulate in `errors` instead of stopping the pass."""

    def __init__(self, path: str, min_interval: float) -> None:
        self.path = path
        self.min_interval = min_interval
        self.errors: list[ConfigError] = []
        self.sources: dict[str, Source] = {}
        #: every declared source id (valid or not) -> (line, shared), so a broken source is not also "unknown"
        self.declared: dict[str, tuple[int, bool]] = {}
        #: `use:` entries, resolved once every source is known
        self.uses: list[tuple[str, Node, str]] = []
        self.slugs: dict[str, int] = {}
        #: event and source nodes already read; an alias (*name) can make the parser hand back the same node
        self.visited: set[int] = set()
        self.kind_readers: dict[SourceKind, Callable[[Node, Entries, str], _KindParts]] = {
            SourceKind.FEED: self._feed,
            SourceKind.MASTODON: self._mastodon,
            SourceKind.BLUESKY: self._bluesky,
            SourceKind.PUSH: self._push,
        }

    # -- reporting ---------------------------------------------------------------------------

    def error(self, node: Node | int, key: str, message: str) -> None:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        self.errors.append(ConfigError(message, path=self.path, line=line, key=key))

    def sorted_errors(self) -> list[ConfigError]:
        # a merged (<<) mapping is read once per use, so the same problem can be found twice
        unique = {str(e): e for e in self.errors}
        return sorted(unique.values(), key=lambda e: e.line or 0)

    # -- the file ----------------------------------------------------------------------------

    def check(self, text: str) -> Config | None:
        root = self._compose(text)
        if root is None:
            return None
        if not _is_map(root):
            self.error(
                root, "", f"expected a mapping with `events:` (and optionally `sources:`), got {_describe(root)}"
            )
            return None
        entries = self._entries(root, "")
        self._unknown_keys(entries, "", TOP_KEYS)
        if "sources" in entries:
            for i, node in enumerate(self._items(entries["sources"][1], "sources")):
                self._shared_source(node, f"sources[{i}]")
        if "events" not in entries:
            self.error(root, "events", "missing: the file needs an `events:` list (`events: []` is valid)")
            return None
        events = self._events(entries["events"][1])
        self._resolve_uses()
        return Config(path=self.path, events=tuple(events), sources=self.sources)

    def _compose(self, text: str) -> Node | None:
        try:
            loader = yaml.SafeLoader(text)
            try:
                root: Node | None = loader.get_single_node()
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            message = f"invalid YAML: {e.problem}"
            if e.context and e.context_mark is not None:
                message = f"invalid YAML: {e.context} (line {e.context_mark.line + 1}), {e.problem}"
            if "'\\t'" in message:
                message += " (indent with spaces, not tabs)"
            self.error(mark.line + 1 if mark else 1, "", message)
            return None
        except yaml.reader.ReaderError as e:
            self.error(text.count("\n", 0, e.position) + 1, "", f"invalid YAML: {e.reason} (#x{e.character:04x})")
            return None
        except RecursionError:  # the composer recurses once per level of [[[...]]]
            self.error(1, "", "invalid YAML: nested too deeply")
            return None
        if root is None:
            self.error(1, "", "the file is empty: it needs at least `events: []`")
        return root

    def _events(self, node: Node) -> list[Event]:
        events = (self._event(item, f"events[{i}]") for i, item in enumerate(self._items(node, "events")))
        return [event for event in events if event is not None]

    # -- events ------------------------------------------------------------------------------

    def _event(self, node: Node, path: str) -> Event | None:
        if not _is_map(node):
            self.error(node, path, f"expected a mapping (an event with slug, title, sources...), got {_describe(node)}")
            return None
        if self._revisited(node, path):
            return None
        before = len(self.errors)
        entries = self._entries(node, path)
        self._unknown_keys(entries, path, EVENT_KEYS)
        slug = self._required(node, entries, "slug", path, self._slug)
        if slug is not None:
            self._declare_slug(slug, entries["slug"][1], f"{path}.slug")
        title = self._required(node, entries, "title", path, self._text)
        language = self._optional(entries, "language", path, self._language, "en")
        timezone = self._optional(entries, "timezone", path, self._timezone, "UTC")
        order = self._optional(entries, "order", path, _choice(self, Order, "order"), Order.NEWEST)
        status = self._optional(entries, "status", path, _choice(self, EventStatus, "status"), EventStatus.LIVE)
        block, allow = self._optional(entries, "keywords", path, self._keywords, (NO_WORDS, NO_WORDS))
        ids: list[str] = []
        if "sources" in entries:
            spath = f"{path}.sources"
            for i, item in enumerate(self._items(entries["sources"][1], spath)):
                self._event_source(item, f"{spath}[{i}]", ids)
        if slug is None or title is None or len(self.errors) > before:
            return None
        return Event(
            slug=slug,
            title=title,
            language=language,
            timezone=timezone,
            order=order,
            status=status,
            keywords_block=block,
            keywords_allow=allow,
            sources=tuple(ids),
            line=_line(node),
        )

    def _declare_slug(self, slug: str, node: Node, path: str) -> None:
        if slug in self.slugs:
            self.error(node, path, f"duplicate slug {slug!r}: already used at line {self.slugs[slug]}")
        else:
            self.slugs[slug] = _line(node)

    def _event_source(self, node: Node, path: str, ids: list[str]) -> None:
        if not _is_map(node):
            self.error(node, path, f"expected a source mapping or `use: ID`, got {_describe(node)}")
            return
        if self._revisited(node, path):
            return
        entries = self._entries(node, path)
        if "use" in entries:
            sid = self._use(entries, path)
        else:
            sid = self._source(node, entries, path, shared=False)
        if sid is None:
            return
        if sid in ids:
            self.error(node, path, f"source {sid!r} is listed twice in this event")
            return
        ids.append(sid)

    def _use(self, entries: Entries, path: str) -> str | None:
        for key, (key_node, _) in entries.items():
            if key != "use":
                self.error(key_node, f"{path}.{key}", "a `use:` entry takes no other key (set it on the shared source)")
        sid = self._text(entries["use"][1], f"{path}.use")
        if sid is not None:
            self.uses.append((sid, entries["use"][1], f"{path}.use"))
        return sid

    def _resolve_uses(self) -> None:
        shared = [sid for sid, (_, is_shared) in self.declared.items() if is_shared]
        for sid, node, path in self.uses:
            line, is_shared = self.declared.get(sid, (0, False))
            if is_shared:
                continue
            if line:
                self.error(
                    node,
                    path,
                    f"{sid!r} is declared inside an event (line {line}); only shared sources can be used:"
                    " move it under the top-level `sources:`",
                )
            else:
                self.error(node, path, f"no shared source with id {sid!r}{_did_you_mean(sid, shared)}")

    def _keywords(self, node: Node, path: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        if node.tag == TAG + "null":
            return ((), ())
        if not _is_map(node):
            self.error(node, path, f"expected a mapping {{block: [...], allow: [...]}}, got {_describe(node)}")
            return None
        entries = self._entries(node, path)
        self._unknown_keys(entries, path, KEYWORD_KEYS)
        block = self._optional(entries, "block", path, self._words, NO_WORDS)
        allow = self._optional(entries, "allow", path, self._words, NO_WORDS)
        return block, allow

    # -- sources -----------------------------------------------------------------------------

    def _shared_source(self, node: Node, path: str) -> None:
        if not _is_map(node):
            self.error(node, path, f"expected a source mapping, got {_describe(node)}")
            return
        if self._revisited(node, path):
            return
        entries = self._entries(node, path)
        if "use" in entries:
            self.error(
                entries.pop("use")[0], f"{path}.use", "a shared source cannot `use:` another: declare it in full"
            )
        self._source(node, entries, path, shared=True)

    def _source(self, node: Node, entries: Entries, path: str, *, shared: bool) -> str | None:
        """Check one full source and keep it if valid; returns its id when it has a readable one."""
        before = len(self.errors)
        sid = self._required(node, entries, "id", path, self._source_id)
        if sid is not None:
            self._declare(sid, entries["id"][1], f"{path}.id", shared)
        kind = self._required(node, entries, "kind", path, _choice(self, SourceKind, "kind"))
        self._unknown_source_keys(entries, path, kind)
        role = self._required(node, entries, "role", path, _choice(self, Role, "role"))
        label = self._optional(entries, "label", path, self._text, sid or "")
        moderation = self._optional(entries, "moderation", path, _choice(self, Moderation, "moderation"), None)
        enabled = self._optional(entries, "enabled", path, self._flag, True)
        include = self._optional(entries, "include", path, self._words, NO_WORDS)
        exclude = self._optional(entries, "exclude", path, self._words, NO_WORDS)
        backfill = self._optional(entries, "backfill", path, self._backfill, DEFAULT_BACKFILL)
        # the floor also lifts the default, so a source without `interval` never polls below it
        interval = max(DEFAULT_INTERVAL, self.min_interval)
        if kind in POLLED or kind is None:
            interval = self._optional(entries, "interval", path, self._interval, interval)
        parts = self.kind_readers[kind](node, entries, path) if kind is not None else _KindParts()
        if sid is None or kind is None or role is None or len(self.errors) > before:
            return sid
        if moderation is None:
            moderation = Moderation.QUEUE if role is Role.OTHER or parts.hashtag else Moderation.AUTO
        self.sources[sid] = Source(
            id=sid,
            kind=kind,
            role=role,
            label=label,
            moderation=moderation,
            url=parts.url,
            interval=interval,
            enabled=enabled,
            include=include,
            exclude=exclude,
            backfill=backfill,
            options=parts.options,
            line=_line(node),
        )
        return sid

    def _declare(self, sid: str, node: Node, path: str, shared: bool) -> None:
        if sid in self.declared:
            line = self.declared[sid][0]
            self.error(
                node,
                path,
                f"duplicate source id {sid!r}: already declared at line {line}"
                f" (to feed several events from one source, declare it under `sources:` and write `- use: {sid}`)",
            )
            return
        self.declared[sid] = (_line(node), shared)

    def _unknown_source_keys(self, entries: Entries, path: str, kind: SourceKind | None) -> None:
        if kind is None:
            # without a valid kind, only keys no kind takes are surely wrong
            known = {*COMMON_KEYS, "interval", *(k for keys in KIND_KEYS.values() for k in keys)}
            self._unknown_keys(entries, path, sorted(known))
            return
        allowed = (*COMMON_KEYS, *(("interval",) if kind in POLLED else ()), *KIND_KEYS[kind])
        for key, (key_node, _) in entries.items():
            if key in allowed:
                continue
            kpath = f"{path}.{key}"
            if key == "interval":
                self.error(
                    key_node,
                    kpath,
                    f"{kind} sources are not polled: `interval` only applies to feed, mastodon, bluesky",
                )
                continue
            owners = [str(k) for k, keys in KIND_KEYS.items() if key in keys]
            if owners:
                self.error(key_node, kpath, f"unknown key for a {kind} source (`{key}` belongs to {', '.join(owners)})")
            elif SECRETISH.search(key):
                self.error(key_node, kpath, _secret_message(kind))
            else:
                self.error(
                    key_node,
                    kpath,
                    f"unknown key{_did_you_mean(key, allowed)}; a {kind} source takes: {', '.join(allowed)}",
                )

    def _feed(self, node: Node, entries: Entries, path: str) -> _KindParts:
        return _KindParts(url=self._required(node, entries, "url", path, self._http_url))

    def _mastodon(self, node: Node, entries: Entries, path: str) -> _KindParts:
        parts = _KindParts()
        instance = self._required(node, entries, "instance", path, self._base_url)
        if instance is not None:
            parts.options["instance"] = instance
        parts.hashtag = self._one_of(node, entries, path, "account", "hashtag", self._account, parts.options)
        token_env = self._optional(entries, "token_env", path, self._env_name, None)
        if token_env is not None:
            parts.options["token_env"] = token_env
        parts.options["replies"] = self._optional(entries, "replies", path, self._flag, False)
        parts.options["boosts"] = self._optional(entries, "boosts", path, self._flag, True)
        return parts

    def _bluesky(self, node: Node, entries: Entries, path: str) -> _KindParts:
        parts = _KindParts()
        parts.hashtag = self._one_of(node, entries, path, "actor", "hashtag", self._actor, parts.options)
        auth_env = self._optional(entries, "auth_env", path, self._env_name, None)
        if auth_env is not None:
            parts.options["auth_env"] = auth_env
        elif parts.hashtag and "hashtag" in entries:
            # app.bsky.feed.searchPosts answers 403 without a session on the public AppView
            self.error(
                entries["hashtag"][0],
                f"{path}.auth_env",
                "a bluesky hashtag source needs `auth_env:` (search requires login)",
            )
        parts.options["appview"] = self._optional(entries, "appview", path, self._base_url, DEFAULT_APPVIEW)
        parts.options["jetstream"] = self._optional(entries, "jetstream", path, self._ws_url, DEFAULT_JETSTREAM)
        return parts

    def _push(self, node: Node, entries: Entries, path: str) -> _KindParts:
        parts = _KindParts()
        secret_env = self._required(node, entries, "secret_env", path, self._env_name)
        if secret_env is not None:
            parts.options["secret_env"] = secret_env
        return parts

    def _one_of(
        self,
        node: Node,
        entries: Entries,
        path: str,
        key: str,
        tag_key: str,
        read: Reader[str],
        options: dict[str, Any],
    ) -> bool:
        """Read exactly one of `key` or `tag_key` (hashtag) into options; True when it is a hashtag source."""
        if key in entries and tag_key in entries:
            self.error(entries[tag_key][0], f"{path}.{tag_key}", f"give either `{key}:` or `{tag_key}:`, not both")
            return True
        if key not in entries and tag_key not in entries:
            self.error(node, path, f"missing: a source of this kind needs `{key}:` or `{tag_key}:`")
            return False
        if tag_key in entries:
            value = self._hashtag(entries[tag_key][1], f"{path}.{tag_key}")
            if value is not None:
                options[tag_key] = value
            return True
        value = read(entries[key][1], f"{path}.{key}")
        if value is not None:
            options[key] = value
        return False

    # -- mappings and keys -------------------------------------------------------------------

    def _entries(self, node: MappingNode, path: str, seen: frozenset[int] = frozenset()) -> Entries:
        """The mapping's keys -> (key node, value node); duplicate keys are errors, `<<` merges are honoured."""
        merged: Entries = {}
        explicit: Entries = {}
        for key_node, value_node in node.value:
            if key_node.tag == TAG + "merge":
                for sub in value_node.value if isinstance(value_node, SequenceNode) else [value_node]:
                    if not _is_map(sub) or id(sub) in seen:
                        self.error(sub, path, "`<<` must merge a mapping (or a list of mappings)")
                        continue
                    for key, pair in self._entries(sub, path, seen | {id(node)}).items():
                        merged.setdefault(key, pair)
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, path, f"a key must be a plain word, got {_describe(key_node)}")
                continue
            key = key_node.value
            if key in explicit:
                first = _line(explicit[key][0])
                self.error(key_node, _join(path, key), f"duplicate key (first at line {first}; YAML keeps only one)")
                continue
            explicit[key] = (key_node, value_node)
        return {**merged, **explicit}

    def _unknown_keys(self, entries: Entries, path: str, allowed: Collection[str]) -> None:
        for key, (key_node, _) in entries.items():
            if key in allowed:
                continue
            if SECRETISH.search(key) and not key.endswith("_env"):
                self.error(key_node, _join(path, key), _secret_message(None))
            else:
                self.error(
                    key_node,
                    _join(path, key),
                    f"unknown key{_did_you_mean(key, allowed)}; expected one of: {', '.join(allowed)}",
                )

    def _revisited(self, node: Node, path: str) -> bool:
        """True (and reported) when this node was already read: reading it again would only repeat its errors."""
        if id(node) not in self.visited:
            self.visited.add(id(node))
            return False
        self.error(node, path, "repeats the entry at this line through a YAML alias: declare each entry once")
        return True

    def _required(self, node: Node, entries: Entries, key: str, path: str, read: Reader[T]) -> T | None:
        if key not in entries:
            self.error(node, _join(path, key), "missing (required)")
            return None
        return read(entries[key][1], _join(path, key))

    def _optional(self, entries: Entries, key: str, path: str, read: Reader[T], default: T) -> T:
        if key not in entries:
            return default
        value = read(entries[key][1], _join(path, key))
        return default if value is None else value

    def _items(self, node: Node, path: str) -> list[Node]:
        if node.tag == TAG + "null":
            return []
        if not isinstance(node, SequenceNode) or node.tag != TAG + "seq":
            self.error(node, path, f"expected a list, got {_describe(node)}")
            return []
        return list(node.value)

    # -- values: each reader returns None after reporting a problem --------------------------

    def _text(self, node: Node, path: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != TAG + "str":
            hint = ": put it in quotes" if isinstance(node, ScalarNode) and node.tag != TAG + "null" else ""
            self.error(node, path, f"expected a string, got {_describe(node)}{hint}")
            return None
        if not node.value.strip():
            self.error(node, path, "must not be empty")
            return None
        return str(node.value)

    def _flag(self, node: Node, path: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.tag != TAG + "bool":
            self.error(node, path, f"expected true or false, got {_describe(node)}")
            return None
        return bool(_CONSTRUCT.construct_yaml_bool(node))

    def _backfill(self, node: Node, path: str) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != TAG + "int":
            self.error(node, path, f"expected a whole number from 0 to {MAX_BACKFILL}, got {_describe(node)}")
            return None
        try:
            value = int(_CONSTRUCT.construct_yaml_int(node))
        except ValueError:  # more digits than Python converts (4300)
            self.error(node, path, f"backfill is out of range: use 0 to {MAX_BACKFILL}")
            return None
        if not 0 <= value <= MAX_BACKFILL:
            self.error(node, path, f"backfill {value} is out of range: use 0 to {MAX_BACKFILL}")
            return None
        return value

    def _interval(self, node: Node, path: str) -> float | None:
        if not isinstance(node, ScalarNode) or node.tag not in (TAG + "str", TAG + "int", TAG + "float"):
            self.error(node, path, f"expected a duration (30s, 5m, 1h or seconds), got {_describe(node)}")
            return None
        try:
            seconds = parse_duration(node.value)
        except ValueError as e:
            self.error(node, path, str(e))
            return None
        if seconds > MAX_INTERVAL:
            self.error(
                node, path, f"interval {str(node.value)[:40]} is above the ceiling of {_seconds(MAX_INTERVAL)} (a week)"
            )
            return None
        if seconds < self.min_interval:
            floor = _seconds(self.min_interval)
            self.error(
                node, path, f"interval {_seconds(seconds)} is below the floor CURATION_MIN_POLL_INTERVAL={floor}"
            )
            return None
        return seconds

    def _words(self, node: Node, path: str) -> tuple[str, ...] | None:
        if node.tag == TAG + "null":
            return ()
        if not isinstance(node, SequenceNode) or node.tag != TAG + "seq":
            self.error(node, path, f"expected a list of strings, got {_describe(node)}")
            return None
        words = [self._text(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return tuple(w for w in words if w is not None) if None not in words else None

    def _matching(self, node: Node, path: str, pattern: re.Pattern[str], message: str) -> str | None:
        value = self._text(node, path)
        if value is not None and not pattern.match(value):
            self.error(node, path, message.format(value=value))
            return None
        return value

    def _slug(self, node: Node, path: str) -> str | None:
        return self._matching(
            node, path, SLUG, "slug {value!r} must match ^[a-z0-9-]+$ (lower-case letters, digits, -)"
        )

    def _source_id(self, node: Node, path: str) -> str | None:
        message = "source id {value!r} must be letters, digits, '.', '_' or '-' (it appears in URLs)"
        return self._matching(node, path, SOURCE_ID, message)

    def _env_name(self, node: Node, path: str) -> str | None:
        # the value is never echoed: it may be the very secret that was pasted here
        message = "must name an environment variable (A-Z, 0-9, _; e.g. MY_TOKEN): secrets never go in sources.yaml"
        value = self._text(node, path)
        if value is not None and not ENV_NAME.match(value):
            self.error(node, path, message)
            return None
        return value

    def _hashtag(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is not None and value.startswith("#"):
            self.error(node, path, f"give the hashtag without '#': `hashtag: {value.lstrip('#')}`")
            return None
        return self._matching(node, path, HASHTAG, "not a hashtag: {value!r} (no spaces, '/', '?' or '&')")

    def _account(self, node: Node, path: str) -> str | None:
        message = "not a Mastodon account: {value!r} (write `someone` or `someone@instance.example`)"
        value = self._matching(node, path, MASTODON_ACCOUNT, message)
        return value.removeprefix("@") if value is not None else None

    def _actor(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is None:
            return None
        actor = value.removeprefix("@")
        if DID.match(actor):
            return actor
        if HANDLE.match(actor.lower()):
            return actor.lower()
        self.error(node, path, f"not a Bluesky handle or DID: {value!r} (e.g. rider.bsky.social or did:plc:...)")
        return None

    def _language(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is not None and value not in LANGUAGES:
            self.error(node, path, f"unknown language {value!r} (expected one of: {', '.join(LANGUAGES)})")
            return None
        return value

    def _timezone(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (ValueError, KeyError, OSError):
            self.error(node, path, f"unknown time zone {value!r} (use an IANA name such as Europe/Paris or UTC)")
            return None
        return value

    def _http_url(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is None:
            return None
        problem = _url_problem(value, ("http", "https"))
        if problem:
            self.error(node, path, "not an http(s) URL" if problem == "scheme" else problem)
            return None
        return value

    def _base_url(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is None:
            return None
        problem = _url_problem(value, ("http", "https"))
        parts = urlsplit(value)
        if not problem and (parts.path not in ("", "/") or parts.query or parts.fragment):
            problem = "path"
        if problem:
            message = "not an http(s) base URL (e.g. https://mastodon.social, with no path)"
            self.error(node, path, message if problem in ("scheme", "path") else problem)
            return None
        return f"{parts.scheme.lower()}://{parts.netloc}"

    def _ws_url(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is None:
            return None
        problem = _url_problem(value, ("ws", "wss"))
        if problem:
            self.error(node, path, f"not a ws(s) URL (e.g. {DEFAULT_JETSTREAM})" if problem == "scheme" else problem)
            return None
        return value


def _choice(checker: _Checker, enum: type[E], what: str) -> Reader[E]:
    """A reader for one value of `enum`, named `what` in messages."""

    def read(node: Node, path: str) -> E | None:
        value = checker._text(node, path)
        if value is None:
            return None
        try:
            return enum(value)
        except ValueError:
            expected = ", ".join(str(member) for member in enum)
            checker.error(node, path, f"unknown {what} {value!r} (expected one of: {expected})")
            return None

    return read


def _url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    """None when fine, "scheme" when not a URL of these schemes with a host, else a message."""
    if any(c.isspace() for c in value):
        return "scheme"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return "scheme"
    if parts.scheme.lower() not in schemes or not parts.hostname:
        return "scheme"
    if parts.username is not None or parts.password is not None:
        return "the URL must not carry a user name or password: secrets never go in sources.yaml"
    return None


def _secret_message(kind: SourceKind | None) -> str:
    hint = f"`{SECRET_HINT[kind]}: VARIABLE`" if kind in SECRET_HINT else "a `*_env` key"
    return f"secrets are never written in sources.yaml: put it in an environment variable and name it with {hint}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(node: Node) -> str:
    names = {"map": "a mapping", "seq": "a list", "null": "nothing"}
    valued = {"bool": "a boolean", "int": "a number", "float": "a number", "timestamp": "a date"}
    tag = node.tag.removeprefix(TAG)
    if tag == "str":
        return f"a string ({node.value!r})"
    if tag in names:
        return names[tag]
    if tag in valued:
        return f"{valued[tag]} ({node.value})"
    return f"a value tagged {node.tag}"


def _is_map(node: Node) -> TypeGuard[MappingNode]:
    return isinstance(node, MappingNode) and node.tag == TAG + "map"


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _seconds(value: float) -> str:
    return f"{value:g}s"

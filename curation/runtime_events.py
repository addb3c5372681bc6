"""Events admins create or adjust from the desk, validated exactly like an event of sources.yaml.

A desk event is kept whole in the store. On an event of sources.yaml (or the demo), the desk keeps only
the keys an admin changed (closing it at the end of the day, say): they win over the file for those
keys, and setting one to null hands it back to the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from curation.errors import ConfigError, ConfigErrors
from curation.models import Event
from curation.sources import parse_config

PATH = "(desk)"
_PREFIX = "events[0]"
#: what the desk may set on an event; its sources are managed one by one (runtime_sources)
KEYS = ("title", "language", "timezone", "order", "status", "keywords")


def settings_of(event: Event) -> dict[str, Any]:
    """The sources.yaml keys of an event, as the desk shows and edits them."""
    return {
        "title": event.title,
        "language": event.language,
        "timezone": event.timezone,
        "order": str(event.order),
        "status": str(event.status),
        "keywords": {"block": list(event.keywords_block), "allow": list(event.keywords_allow)},
    }


def check_changes(changes: object, *, creating: bool) -> dict[str, Any]:
    """The changes a desk request asks for, with unknown keys refused by name (null: back to the file)."""
    if not isinstance(changes, Mapping):
        raise ConfigErrors([ConfigError("expected an object with the keys of a sources.yaml event")])
    allowed = (("slug",) if creating else ()) + KEYS
    unknown = [str(key) for key in changes if key not in allowed]
    if unknown:
        raise ConfigErrors([ConfigError(f"not a key the desk sets (use one of {', '.join(allowed)})", key=unknown[0])])
    return dict(changes)


def parse_event(slug: str, settings: Mapping[str, Any]) -> Event:
    """The Event these settings describe (no sources), or ConfigErrors naming the key (`status: ...`)."""
    document = {"events": [{"slug": slug, **{k: v for k, v in settings.items() if v is not None}}]}
    try:
        config = parse_config(yaml.safe_dump(document, allow_unicode=True), path=PATH)
    except ConfigErrors as e:
        raise e.relative_to(_PREFIX) from None
    (event,) = config.events
    return event


def overlay(base: Event | None, slug: str, settings: Mapping[str, Any]) -> Event:
    """The event as readers get it: the file's event with the desk's keys on top, or the desk's own event."""
    merged = {**(settings_of(base) if base else {}), **settings}
    event = parse_event(slug, merged)
    if base is None:
        return event
    return Event(
        slug=slug,
        title=event.title,
        language=event.language,
        timezone=event.timezone,
        order=event.order,
        status=event.status,
        keywords_block=event.keywords_block,
        keywords_allow=event.keywords_allow,
        sources=base.sources,
        line=base.line,
    )

"""Sources editors add to a running event from the desk: validated exactly like sources.yaml.

sources.yaml stays the declarative base; a runtime source is one more entry of one event, kept in
the store (so it survives restarts) and merged into the configuration by the service.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import yaml

from curation.errors import ConfigError, ConfigErrors
from curation.models import Source
from curation.sources import parse_config

PATH = "(desk)"
_PREFIX = "events[0].sources[0]"


def parse_source(definition: Mapping[str, Any], *, event: str, taken: Collection[str], min_interval: float) -> Source:
    """The Source a desk definition describes (the keys of sources.yaml), or ConfigErrors whose messages
    name the key (`url: not an http(s) URL`)."""
    if not isinstance(definition, Mapping):
        raise ConfigErrors([ConfigError("expected an object with the keys of a sources.yaml source")])
    if "use" in definition:
        raise ConfigErrors([ConfigError("a shared source is added in sources.yaml", key="use")])
    document = {"events": [{"slug": event, "title": event, "sources": [dict(definition)]}]}
    try:
        config = parse_config(yaml.safe_dump(document, allow_unicode=True), path=PATH, min_interval=min_interval)
    except ConfigErrors as e:
        raise e.relative_to(_PREFIX) from None
    (source,) = config.sources.values()
    if source.id in taken:
        raise ConfigErrors([ConfigError(f"the id {source.id!r} is already used by another source", key="id")])
    return source

"""The feed collector (RSS, Atom, RDF, JSON Feed): conditional fetch, then parsing off the event loop."""

from __future__ import annotations

import asyncio
import functools
import time

from curation.collectors import CollectorContext, PollResult
from curation.collectors.feed_parser import parse_document
from curation.collectors.websub import discover
from curation.models import Source, SourceStatus

#: validators can pin a feed forever (a broken ETag); refetch without them this often
UNCONDITIONAL_EVERY = 24 * 3600.0


class FeedCollector:
    def __init__(self, context: CollectorContext) -> None:
        self.context = context
        self._last_unconditional: dict[str, float] = {}

    async def poll(self, source: Source, status: SourceStatus) -> PollResult:
        url = status.moved_to or source.url
        assert url is not None, f"{source.id}: feed source without url"
        now = time.monotonic()
        last = self._last_unconditional.setdefault(source.id, now)
        unconditional = now - last >= UNCONDITIONAL_EVERY
        response = await self.context.fetcher.get(
            url,
            etag=None if unconditional else status.etag,
            last_modified=None if unconditional else status.last_modified,
        )
        if unconditional:
            self._last_unconditional[source.id] = now
        if response.status == 304:
            return PollResult(not_modified=True, etag=response.etag, last_modified=response.last_modified)
        parse = functools.partial(
            parse_document,
            response.body,
            content_type=response.headers.get("content-type"),
            url=response.url,
            source_id=source.id,
        )
        parsed = await asyncio.get_running_loop().run_in_executor(self.context.executor, parse)
        # WebSub (issue 3): the response's Link rel=hub/self headers win over the document's own links
        hubs, self_url = discover(response.headers, parsed.hubs, parsed.self_url, response.url)
        return PollResult(
            entries=parsed.entries,
            etag=response.etag,
            last_modified=response.last_modified,
            moved_to=response.permanent_url,
            hubs=hubs,
            self_url=self_url,
        )

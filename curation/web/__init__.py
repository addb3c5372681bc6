"""The web layer: create_app() builds the Starlette application around one running Fil."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from curation.auth import AuthError
from curation.config import Settings
from curation.errors import StoreError
from curation.service import Fil
from curation.web import (
    admin_api,
    api,
    archive,
    caching,
    cors,
    desk,
    editor_api,
    embed,
    fallback,
    images,
    ingest,
    live,
    ops,
    pages,
    security,
    syndication,
    websub,
)

ROOT = Path(__file__).resolve().parent.parent.parent


def create_app(settings: Settings | None = None, *, fil: Fil | None = None) -> Starlette:
    """The application; the Fil service starts with the app's lifespan and stops with it."""
    service = fil or Fil(settings or Settings.from_env())
    templates = Jinja2Templates(directory=str(ROOT / "templates"))
    image_proxy = images.ImageProxy(service)
    pages.setup(templates, image_proxy)
    security.setup(templates)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await image_proxy.close()
            await service.stop()

    routes = [
        Route("/", pages.index, name="index"),
        Route("/events/{slug}", pages.event_page, name="event"),
        Route("/events/{slug}/feed.atom", syndication.atom),
        Route("/events/{slug}/feed.json", syndication.json),
        Route("/events/{slug}/archive.html", archive.archive_html_file),
        Route("/events/{slug}/archive.json", archive.archive_json_file),
        Route("/api/events", api.events),
        Route("/api/events/{slug}/items", api.items),
        WebSocketRoute("/api/events/{slug}/live", live.live),
        Route("/api/sources", api.sources),
        Route("/api/ingest/{source_id}", ingest.ingest, methods=["POST"]),
        Route("/websub/{source_id}", websub.verify, methods=["GET"]),
        Route("/websub/{source_id}", websub.deliver, methods=["POST"]),
        Route("/healthz", api.healthz),
        Route("/metrics", ops.metrics),
        Route("/editor/", desk.index, name="editor"),
        Route("/editor/login", desk.login_page, methods=["GET"]),
        Route("/editor/login", desk.login, methods=["POST"]),
        Route("/editor/logout", desk.logout, methods=["POST"]),
        Route("/editor/events/{slug}", desk.event_desk),
        Route("/api/events", admin_api.create_event, methods=["POST"]),
        Route("/api/events/{slug}", admin_api.update_event, methods=["PATCH"]),
        Route("/api/editors", admin_api.list_editors),
        Route("/api/editors/{name}", admin_api.put_editor, methods=["PUT"]),
        Route("/api/editors/{name}/disabled", admin_api.disable_editor, methods=["POST"]),
        Route("/api/events/{slug}/queue", editor_api.queue),
        Route("/api/events/{slug}/desk", editor_api.desk_state),
        Route("/api/events/{slug}/audit", editor_api.audit),
        Route("/api/events/{slug}/items/{item_id}/actions", editor_api.action, methods=["POST"]),
        Route("/api/events/{slug}/sources/{source_id}/actions", editor_api.source_action, methods=["POST"]),
        Route("/api/events/{slug}/sources", editor_api.add_source, methods=["POST"]),
        Route("/api/events/{slug}/sources/{source_id}", editor_api.remove_source, methods=["DELETE"]),
        WebSocketRoute("/api/events/{slug}/desk/live", editor_api.desk_live),
        Route("/api/events/{slug}/posts", editor_api.create_post, methods=["POST"]),
        Route("/api/events/{slug}/posts/{item_id}", editor_api.correct_post, methods=["PATCH"]),
        Route("/api/events/{slug}/paste", editor_api.paste_post, methods=["POST"]),
        Route("/api/events/{slug}/header", editor_api.get_header, methods=["GET"]),
        Route("/api/events/{slug}/header", editor_api.put_header, methods=["PUT"]),
        Route("/api/events/{slug}/sources/{source_id}/mute", editor_api.mute, methods=["POST"]),
        Route("/embed.js", embed.embed_js),
        Route("/embed/{slug}", embed.embed_page),
        Route("/oembed", embed.oembed, name="oembed"),
        Route("/img/{signature}", images.image),
        Mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static"),
    ]
    # require_editor raises AuthError: JSON 401/403 on the API, a redirect to the login on desk pages
    # a StoreError (disk full, locked, Redis away) answers 503 with the reason, not 500
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={AuthError: desk.auth_error, StoreError: editor_api.store_unavailable},
    )
    app.add_middleware(cors.PublicCORS)
    # CSP, nosniff, Referrer-Policy, framing rules on every HTTP response; inside the stale copies, which keep them
    app.add_middleware(security.SecurityHeaders, image_proxy=service.settings.image_proxy)
    app.state.fil = service
    app.state.images = image_proxy
    # the last good copy of each public page, while the store is away (inside the caching layer)
    app.add_middleware(fallback.StaleOnError, public=caching.fil_policy(service))
    # ETag / Last-Modified / 304 / Cache-Control on the public GETs only (caching.PUBLIC_PATHS)
    app.add_middleware(caching.CachingMiddleware, policy=caching.fil_policy(service))
    app.state.templates = templates
    return app

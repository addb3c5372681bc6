"""Under another ASGI server (here Starlette's TestClient), the live endpoint still works, via its fallback."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from curation.config import Settings
from curation.web import create_app
from tests.conftest import make_entry, make_event, make_source
from tests.test_live_e2e import SLUG, write_sources


def test_live_updates_without_fils_websocket_protocol(tmp_path: Path) -> None:
    write_sources(tmp_path / "sources.yaml", "https://unused.example/feed.xml")
    settings = Settings(
        sources=str(tmp_path / "sources.yaml"),
        store=f"sqlite:///{tmp_path}/fil.db",
        min_poll_interval=0.1,
        log_level="warning",
    )
    app = create_app(settings)
    fil = app.state.fil
    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(fil.store.ingest, make_event(SLUG), make_source("desk"), [make_entry("a")])
        with client.websocket_connect(f"/api/events/{SLUG}/live?since=0") as ws:
            assert ws.receive_json() == {"type": "hello", "seq": 1}
            assert ws.receive_json()["item"]["title"] == "Title a"
            client.portal.call(fil.store.ingest, make_event(SLUG), make_source("desk"), [make_entry("b")])
            live = ws.receive_json()
            assert live["type"] == "upsert" and live["seq"] == 2 and live["item"]["title"] == "Title b"
        assert client.get(f"/api/events/{SLUG}/items").json()["seq"] == 2

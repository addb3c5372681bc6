"""A reader that never reads is disconnected at the bound; the others get every change on time."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path

from websockets.asyncio.client import connect

from tests.conftest import T0, make_entry, make_event, make_source, start_fil
from tests.test_live_e2e import SLUG, WAIT, wait_for, write_sources


async def stalled_reader(port: int) -> socket.socket:
    """A raw client that completes the websocket handshake and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, so the window stays small
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /api/events/{SLUG}/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = await asyncio.wait_for(loop.sock_recv(sock, 1024), WAIT)
    assert response.startswith(b"HTTP/1.1 101")
    return sock


async def test_a_reader_that_never_reads_is_dropped_without_delaying_others(tmp_path: Path) -> None:
    write_sources(tmp_path / "sources.yaml", "https://unused.example/feed.xml", extra="")
    fil = await start_fil(tmp_path / "sources.yaml", tmp_path / "data", reader_buffer=64 * 1024)
    try:
        # the configured source cannot be reached; feed the store directly, as a collector would
        event, source = make_event(SLUG), make_source("desk")
        stalled = await stalled_reader(int(fil.base.rsplit(":", 1)[1]))
        async with connect(f"{fil.ws_base}/api/events/{SLUG}/live", max_size=2**22) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"

            async def both_connected() -> bool:
                return fil.fil.hub.readers(SLUG) == 2

            await wait_for(both_connected, "two readers")
            big = "x" * 40_000
            total = 300  # about 12 MB: far more than the kernel buffers of the stalled socket
            seqs: list[int] = []

            async def read() -> None:
                while len(seqs) < total:
                    seqs.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT))["seq"])

            reader = asyncio.create_task(read())
            for i in range(0, total, 20):
                entries = [make_entry(f"e{n}", text=f"{big} {n}") for n in range(i, i + 20)]
                await fil.fil.store.ingest(event, source, entries, now=T0)
            await asyncio.wait_for(reader, WAIT)
            assert seqs == list(range(1, total + 1))
        assert fil.fil.hub.dropped == 1
        assert fil.fil.hub.readers(SLUG) == 0
        stalled.close()
    finally:
        await fil.stop()

"""The two reference servers of the fan-out benchmark, same messages and control channel as Fil's.

B0: a naive Starlette endpoint on uvicorn (Fil's uvicorn settings, the stock sans-I/O websocket
protocol) sending to each reader in turn with `await ws.send_text(msg)`.
B2: a bare `websockets` server calling `websockets.broadcast()`, about the best plain Python does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
import uvloop  # noqa: E402
import websockets  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

from bench.control import TS_MARK, control_loop, open_reply_channel, raise_nofile  # noqa: E402

PATH = "/live"
HELLO = '{"type":"hello","seq":0}'
#: Fil's values (curation/server.py, curation/config.py), so keepalive and limits cost the same
PING_INTERVAL = 20.0
READER_FRAME_MAX = 4096
#: uvicorn's default; asyncio's own (100) would refuse bursts of connections
BACKLOG = 2048


def message(i: int, ts: float, size: int) -> str:
    """An upsert-shaped JSON message of exactly `size` bytes carrying its publish time."""
    head = f'{{"type":"upsert","seq":{i + 1},"item":{{"text":"{TS_MARK}{ts:.6f}; '
    tail = '"}}'
    return head + "x" * max(0, size - len(head) - len(tail)) + tail


async def serve_b0(port: int, size: int) -> None:
    send = open_reply_channel()
    readers: set[WebSocket] = set()

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(HELLO)
        readers.add(websocket)
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except WebSocketDisconnect:
            pass
        finally:
            readers.discard(websocket)

    async def publish(i: int, ts: float) -> None:
        text = message(i, ts, size)
        for websocket in list(readers):
            try:
                await websocket.send_text(text)
            except Exception:  # a reader that went away; the endpoint forgets it
                readers.discard(websocket)

    app = Starlette(routes=[WebSocketRoute(PATH, live)])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=READER_FRAME_MAX,
        ws_ping_interval=PING_INTERVAL,
        ws_ping_timeout=PING_INTERVAL,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            raise SystemExit("uvicorn stopped before it started")
        await asyncio.sleep(0.05)
    send({"ready": True, "path": PATH})
    try:
        await control_loop(send, publish, lambda: {"readers": len(readers), "payload_bytes": size})
    finally:
        server.should_exit = True
        await serving


async def serve_b2(port: int, size: int) -> None:
    send = open_reply_channel()
    readers: set[ServerConnection] = set()

    async def live(connection: ServerConnection) -> None:
        await connection.send(HELLO)
        readers.add(connection)
        try:
            await connection.wait_closed()
        finally:
            readers.discard(connection)

    async def publish(i: int, ts: float) -> None:
        websockets.broadcast(readers, message(i, ts, size))

    def extra() -> dict[str, Any]:
        return {"readers": len(readers), "payload_bytes": size}

    async with serve(
        live,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_INTERVAL,
        max_size=READER_FRAME_MAX,
        backlog=BACKLOG,
    ):
        send({"ready": True, "path": PATH})
        await control_loop(send, publish, extra)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("b0", "b2"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--payload-bytes", type=int, required=True, help="size of one Fil upsert message")
    args = parser.parse_args()
    raise_nofile()
    main = serve_b0 if args.kind == "b0" else serve_b2
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args.port, args.payload_bytes))


if __name__ == "__main__":
    run()

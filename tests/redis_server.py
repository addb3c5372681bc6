"""A real `redis-server` for tests: on a free 127.0.0.1 port, its files in a temp folder, stopped and started at will.

No persistence by default (`--save '' --appendonly no`, for speed); `appendonly=True` for the tests that
stop Redis and expect acknowledged writes back. `stop()` then `start()` keeps the port and the folder.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARY = "redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, *, appendonly: bool = False, folder: Path | None = None, fsync: str = "everysec") -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise RuntimeError(f"{BINARY} not found: `make system-deps` installs Debian's redis-server")
        self.binary = binary
        self.appendonly = appendonly
        #: `always`: every acknowledged write is on disk before Redis answers (what survives kill -9)
        self.fsync = fsync
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="fil-redis-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 20.0) -> None:
        """Start (again, on the same port once it has one); returns when it answers PING."""
        for _ in range(5):  # a free port can be taken by someone else before redis binds it
            port = self.port or free_port()
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.folder),
                    "--save", "",
                    "--appendonly", "yes" if self.appendonly else "no",
                    "--appendfsync", self.fsync,
                    "--logfile", str(self.folder / "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if _pong(port):
                    self.port = port
                    return
                time.sleep(0.02)
            self._kill()
            if self.port:
                break  # its own port is taken: do not wander to another one
        log = self.folder / "redis.log"
        raise RuntimeError(f"redis-server did not start: {log.read_text()[-2000:] if log.exists() else 'no log'}")

    def stop(self) -> None:
        """Stop it (SIGTERM: with AOF, what it acknowledged is on disk)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process = None

    def kill(self) -> None:
        """kill -9: only what reached the disk survives."""
        self._kill()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

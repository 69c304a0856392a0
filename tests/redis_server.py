"""A real redis-server (Debian's package) on a free loopback port, with its own folder and AOF persistence."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

REDIS_SERVER = "redis-server"


def missing() -> Optional[str]:
    """Why no server can be started here, or None."""
    if shutil.which(REDIS_SERVER) is None:
        return "redis-server is not installed (Debian package redis-server): run the tests with `make test`"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process on `folder` (its data survives a restart on the same folder).
    `fsync`: "everysec" (Redis' default: a crash may lose the last second of writes) or "always"
    (every write is on disk before the client hears back)."""

    def __init__(self, folder: Path, fsync: str = "everysec"):
        self.folder = Path(folder)
        self.fsync = fsync
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: Optional[subprocess.Popen] = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20, same_port: bool = False) -> "RedisServer":
        """Start on a free port, or (a restart that clients should find again) on the last one."""
        if not (same_port and self.port):
            self.port = free_port()
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "yes", "--appendfsync", self.fsync, "--daemonize", "no",
             "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text() if (self.folder / "redis.log").exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log[-2000:]}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush anything."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes the AOF and exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def in_ci() -> bool:
    return bool(os.environ.get("CI"))

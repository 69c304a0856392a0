"""`python app.py` in a subprocess, as a user would start it; shared by the tests and bench/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """The app, offline (HF_HUB_OFFLINE=1), on a free loopback port; stop() ends it."""

    def __init__(self, models_dir: Path, log_path: Path, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full_env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "MODELS_DIR": str(models_dir),
            "HF_HUB_OFFLINE": "1",
            "PREPARE_ON_START": "0",  # the callers prepared the models they use
            **{k: str(v) for k, v in env.items()},
        }
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=log_path.open("w"), stderr=subprocess.STDOUT
        )
        self._wait()

    def _wait(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "config", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app did not start in {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

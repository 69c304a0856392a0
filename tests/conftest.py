"""Shared fixtures: real speech (LibriVox clips from Debian's pocketsphinx-testdata), the
packaged models prepared into a per-session cache, and a real running app for API tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class Clip:
    path: Path
    reference: str

    @property
    def samples(self) -> np.ndarray:
        data, rate = sf.read(self.path, dtype="float32")
        assert rate == 16000
        return data


def librivox_clips() -> list[Clip]:
    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    clips = []
    for line in lines:
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m:
            clips.append(Clip(LIBRIVOX / f"{m.group(2)}.wav", m.group(1).strip()))
    return clips


@pytest.fixture(scope="session")
def clips() -> list[Clip]:
    if not LIBRIVOX.is_dir():
        pytest.fail("Debian package pocketsphinx-testdata is missing: run the tests with `make test`")
    found = librivox_clips()
    assert len(found) == 5
    return found


@pytest.fixture(scope="session")
def long_speech(clips) -> np.ndarray:
    """About 27 s of real speech: the five clips back to back with short pauses."""
    pause = np.zeros(8000, dtype=np.float32)
    return np.concatenate([x for c in clips for x in (c.samples, pause)])


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    from explorer import zoo

    folder = tmp_path_factory.mktemp("models")
    zoo.prepare(models_dir=folder, log=lambda _: None)
    return folder


@pytest.fixture(scope="session")
def offline_settings(models_dir):
    from explorer.config import Settings

    return Settings(models_dir=models_dir, offline=True, max_loaded_models=2)


@pytest.fixture(scope="session")
def service(offline_settings):
    from explorer.service import ModelService

    return ModelService(offline_settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """`python app.py` in a subprocess, as a user would start it, offline."""

    def __init__(self, models_dir: Path, log_path: Path, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full_env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "MODELS_DIR": str(models_dir),
            "HF_HUB_OFFLINE": "1",
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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def app(models_dir, tmp_path_factory):
    """The app with small limits so that over-limit inputs are cheap to make."""
    running = RunningApp(
        models_dir,
        tmp_path_factory.mktemp("app") / "app.log",
        MAX_AUDIO_SECONDS=60,
        MAX_UPLOAD_MB=5,
        NUM_WORKERS=1,
    )
    yield running
    running.stop()

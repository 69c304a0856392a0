"""Shared fixtures: real speech (LibriVox clips from Debian's pocketsphinx-testdata), the
packaged models prepared into a per-session cache, a real running app for API tests, and a real
Redis server (Debian's redis-server) for the job store."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from explorer.stream_map import librivox_utterances
from tests import redis_server
from tests.running_app import RunningApp

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token-" + "a" * 16  # the shared app's: /health detail for tests
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
    return [Clip(u.audio, u.reference) for u in librivox_utterances(LIBRIVOX)]  # the app's own reader


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


@pytest.fixture(scope="session")
def app(models_dir, tmp_path_factory):
    """The app with small limits so that over-limit inputs are cheap to make."""
    folder = tmp_path_factory.mktemp("app")
    running = RunningApp(
        models_dir,
        folder / "app.log",
        DATA_DIR=folder / "data",
        MAX_AUDIO_SECONDS=60,
        MAX_UPLOAD_MB=5,
        NUM_WORKERS=1,
        ADMIN_TOKEN=ADMIN_TOKEN,
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def redis_available() -> None:
    """Debian's redis-server is installed (`make test` installs it): a failure in CI, a skip elsewhere."""
    reason = redis_server.missing()
    if reason:
        (pytest.fail if redis_server.in_ci() else pytest.skip)(reason)


@pytest.fixture(scope="session")
def redis_url(redis_available, tmp_path_factory):
    """A redis-server of our own on a free loopback port (AOF on, in a temporary folder), for the
    whole session; tests keep apart by key prefix."""
    server = redis_server.RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    """(JOB_STORE, DATA_DIR) of an empty store: SQLite in a temporary folder, or a key prefix of its
    own on the test's redis-server (removed after)."""
    if request.param == "sqlite":
        yield "", tmp_path
        return
    import redis

    server = request.getfixturevalue("redis_url")
    prefix = f"test-{request.node.name[:40]}-{time.monotonic_ns()}:"
    yield f"{server}?prefix={prefix}", tmp_path
    client = redis.Redis.from_url(server)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()

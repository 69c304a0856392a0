"""Simulated arena voters with known Bradley–Terry strengths, voting through the API of a running
app (`tests.running_app.RunningApp`); shared by tests/test_arena_app.py and bench/bench_arena.py.

The voters know which models a battle drew by reading the app's SQLite file read-only: they stand
for people who can tell the models apart (the API tells a client nothing before its vote)."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from gradio_client import handle_file

# Five real local models (tiny.en in three runtimes and two precisions, and base) with strengths
# (natural log odds, mean zero): a voter prefers A with probability 1 / (1 + exp(s_B - s_A)).
STRENGTHS = {
    "faster-whisper/tiny.en": -1.0,
    "onnx/whisper-tiny.en-q8": -0.5,
    "transformers/whisper-tiny.en": 0.0,
    "onnx/whisper-tiny.en": 0.5,
    "faster-whisper/base": 1.0,
}


def expected_ratings() -> dict[str, float]:
    """The true strengths on the leaderboard's scale (400 points = 10:1 odds, mean 1000)."""
    mean = sum(STRENGTHS.values()) / len(STRENGTHS)
    return {m: 1000 + 400 / math.log(10) * (s - mean) for m, s in STRENGTHS.items()}


def app_env() -> dict:
    return {"MAX_LOADED_MODELS": len(STRENGTHS), "ARENA_MODELS": ",".join(STRENGTHS), "ARENA_VOTES_PER_HOUR": 100_000}


def drawn_models(data_dir: Path, battle_id: str) -> tuple[str, str]:
    """Which models the server drew for a battle (read-only, from the app's SQLite file)."""
    db = sqlite3.connect(f"file:{Path(data_dir) / 'jobs.sqlite3'}?mode=ro", uri=True)
    try:
        (data,) = db.execute("SELECT data FROM arena_battles WHERE id = ?", (battle_id,)).fetchone()
    finally:
        db.close()
    battle = json.loads(data)
    return battle["model_a"], battle["model_b"]


def stored_votes(data_dir: Path) -> list[str]:
    """The battle id of every vote row in the app's SQLite file."""
    db = sqlite3.connect(f"file:{Path(data_dir) / 'jobs.sqlite3'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT battle FROM arena_votes")]
    finally:
        db.close()


def stored_vote_rows(data_dir: Path) -> list:
    """Every vote in the app's SQLite file, as the arena's store reads them."""
    from explorer.jobs.arena_store import SqliteArenaStore

    return SqliteArenaStore(Path(data_dir) / "jobs.sqlite3").votes()


@dataclass
class Election:
    cast: list  # battle ids voted on, as the API confirmed
    errors: list
    seconds: float


def vote_through_api(app, data_dir: Path, audio: Sequence[Path], votes: int, voters: int = 8, seed: int = 0) -> Election:
    """`voters` threads, each its own gradio_client session, cast `votes` votes in all: a battle on
    one of the `audio` files, then the vote the known strengths draw."""
    cast: list = []
    errors: list = []
    lock = threading.Lock()

    def voter(i: int, count: int) -> None:
        try:
            client = app.client()
            rng = np.random.default_rng(seed * 1000 + i)
            token = ""
            for k in range(count):
                battle = client.predict(handle_file(str(audio[(i + k) % len(audio)])), token, "en", False, api_name="/arena_battle")
                token = battle["token"]
                a, b = drawn_models(data_dir, battle["battle"])
                p_a = 1 / (1 + math.exp(STRENGTHS[b] - STRENGTHS[a]))
                client.predict(token, battle["battle"], "a" if rng.random() < p_a else "b", "", api_name="/arena_vote")
                with lock:
                    cast.append(battle["battle"])
        except BaseException as exc:  # reported by the caller, with the count of votes cast
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=voter, args=(i, votes // voters + (i < votes % voters))) for i in range(voters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Election(cast, errors, time.perf_counter() - started)

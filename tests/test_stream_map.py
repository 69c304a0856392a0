"""The latency–accuracy map (explorer.stream_map): the Pareto front, and stream-bench end to end
on one LibriVox clip with tiny.en."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from explorer.stream_map import librivox_utterances, pareto_front
from tests.conftest import ROOT


def test_pareto_front_keeps_the_points_nothing_beats_on_both():
    points = [(1.0, 0.20), (2.0, 0.05), (2.5, 0.05), (1.5, 0.30), (3.0, 0.01), (None, 0.0)]
    assert pareto_front(points) == [True, True, False, False, True, False]
    assert pareto_front([(1.0, 0.1), (1.0, 0.1)]) == [True, True]  # equal points beat neither


def test_librivox_clips_are_read_with_their_references(clips):
    found = librivox_utterances()
    assert [u.reference for u in found] == [c.reference for c in clips]


def test_stream_bench_writes_the_map(models_dir, tmp_path):
    env = {**os.environ, "MODELS_DIR": str(models_dir), "HF_HUB_OFFLINE": "1", "DATA_DIR": str(tmp_path / "data")}
    args = ["stream-bench", "--models", "faster-whisper/tiny.en", "--chunks", "1", "--limit", "1", "--out", tmp_path / "map"]
    run = subprocess.run(
        [sys.executable, "-m", "explorer", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "mean_word_latency" in run.stdout and "faster-whisper/base word timestamps" in run.stdout
    saved = json.loads((tmp_path / "map" / "map.json").read_text())
    (row,) = saved["rows"]
    assert row["model"] == "faster-whisper/tiny.en" and row["min_chunk_s"] == 1.0 and row["pareto"] is True
    assert row["wer"] <= 0.15 and 0 < row["mean_word_latency"] < 10 and row["words_matched"] >= 15
    assert (tmp_path / "map" / "map.png").stat().st_size > 10_000 and (tmp_path / "map" / "map.csv").is_file()
    assert len(list((tmp_path / "data" / "alignments").glob("*.json"))) == 1  # cached per audio hash
    bad = subprocess.run([sys.executable, "-m", "explorer", "stream-bench", "--models", "faster-whisper/tiny.en", "--chunks", "0"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--chunks" in bad.stderr

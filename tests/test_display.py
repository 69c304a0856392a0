"""explorer/display.py: how numbers read in every tab, checked directly; its JavaScript twin in
the browser component passes the same vectors (tests/vectors/display.json)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from explorer import display
from tests.node_tests import run_node_tests
from tests.running_app import ROOT

VECTORS = json.loads((ROOT / "tests" / "vectors" / "display.json").read_text())["cases"]
NODE_TESTS = "custom_components/browser_asr/tests/display.test.mjs"


@pytest.mark.parametrize("case", VECTORS, ids=[f"{c['fn']}({c['in']})" for c in VECTORS])
def test_vector(case):
    value = float(case["in"]) if isinstance(case["in"], str) else case["in"]
    assert getattr(display, case["fn"])(value) == case["out"]


def test_the_js_twin_passes_the_same_vectors():
    assert f"# pass {len(VECTORS)}" in run_node_tests(NODE_TESTS)


def test_numpy_and_pandas_missing_values_read_as_a_dash():
    assert display.percent(np.float64(0.5)) == "50.0 %"
    assert display.rtfx(np.nan) == display.seconds(pd.NA) == display.count(None) == display.MISSING
    assert display.money("not a number") == display.MISSING


def test_a_results_table_is_formatted_by_column_name_and_the_rest_kept():
    table = pd.DataFrame({
        "model": ["tiny", "base"], "wer": [1.0, 0.80312], "wer: clean": [0.05, np.nan], "rtfx": [6.425722, 12.0],
        "ttft_seconds": [0.884, None], "audio_seconds": [7.1, 754.2], "substitutions": [1234, 0],
        "cost_per_audio_hour": [0.00412, np.nan], "error": [None, "failed: no speech"],
    })  # fmt: skip
    shown = display.frame(table)
    assert shown.to_dict("list") == {
        "model": ["tiny", "base"], "wer": ["100.0 %", "80.3 %"], "wer: clean": ["5.0 %", "–"], "rtfx": ["6.4×", "12.0×"],
        "ttft_seconds": ["884 ms", "–"], "audio_seconds": ["7.10 s", "12 min 34 s"], "substitutions": ["1,234", "0"],
        "cost_per_audio_hour": ["$0.0041", "–"], "error": ["", "failed: no speech"],
    }  # fmt: skip
    assert table["wer"].tolist() == [1.0, 0.80312]  # the machine values are left alone


def test_plot_points_are_rounded_as_the_tables_show_them():
    table = pd.DataFrame({"model": ["a", "b", "c"], "wer": [0.0423, 0.1, None], "rtfx": [6.425722, 12.34, 3.0]})
    points = display.plot_points(table)
    assert points.to_dict("list") == {"model": ["a", "b"], "rtfx": [6.4, 12.3], "wer_percent": [4.2, 10.0]}
    assert display.plot_points(pd.DataFrame()).empty


def test_every_figure_column_of_the_tabs_has_a_format():
    """The columns Compare, Evaluate, Batch and the Arena's leaderboard show: each figure among them is formatted."""
    from explorer.arena import LEADERBOARD_COLUMNS as ARENA_COLUMNS
    from explorer.ui import batch, compare, evaluate

    text = {"model", "against", "normalizer", "text", "environment", "id", "kind", "reference", "hypothesis", "error",
            "file", "status", "dataset", "preview"}  # fmt: skip
    for name in [*compare.TABLE_COLUMNS, *evaluate.LEADERBOARD_COLUMNS, *evaluate.ROW_COLUMNS, *batch.TABLE_COLUMNS, *ARENA_COLUMNS]:
        assert name in text or display.column_format(name) is not None, name
    assert not re.search(r"\d\.\d{3,}", display.frame(pd.DataFrame({"rtfx": [6.425722], "processing_seconds": [2.786123]})).to_csv())
    arena = display.frame(pd.DataFrame({"rating": [1034.567], "lower": [987.2], "votes": [1234], "win_rate": [0.6123]}))
    assert arena.iloc[0].tolist() == ["1,035", "987", "1,234", "61.2 %"]


def _job(n: int, batch: str, name: str, status: str, text: str = "", audio: float = 7.1, processing: float = 1.0, error: str = ""):
    from explorer.jobs import Job
    from explorer.types import Metrics, TranscribeOptions, Transcription

    metrics = Metrics(audio, 0.0, processing, None, None, "segment", 1, audio / processing)
    result = Transcription("faster-whisper/tiny.en", text, (), "en", TranscribeOptions(), metrics) if status == "completed" else None
    return Job(f"id{n}", n, "s", batch, name, "faster-whisper/tiny.en", TranscribeOptions(), status, audio if status != "failed" else 0.0,
               0.0, error=error, result=result)  # fmt: skip


def test_the_batch_table_reads_in_place_and_each_batch_has_a_summary_line():
    from explorer.ui.batch import batch_summary, jobs_frame, short_name

    long = "librivox-austen-pride-and-prejudice-chapter-one-read-by-a-volunteer-0870.wav"
    words = "and mister john dashwood had then leisure to consider how much"
    jobs = [
        _job(1, "b1", "a.wav", "completed", "hello there", audio=10.0, processing=2.0),
        _job(2, "b2", long, "completed", words, audio=60.0, processing=4.0),
        _job(3, "b2", "notes.wav", "failed", error="The file is not audio: no decoder recognises it"),
        _job(4, "b2", "c.wav", "queued"),
    ]
    frame = jobs_frame(jobs)
    assert frame["preview"].tolist() == ["hello there", "and mister john dashwood had then leisure to …", "", ""]
    assert frame["file"][1] == short_name(long) and len(short_name(long)) == 32 and short_name(long).endswith("-0870.wav")
    assert frame["RTFx"].tolist()[:2] == ["5.0×", "15.0×"] and frame["audio"][1] == "1 min 0 s"
    summary = batch_summary(jobs)
    newest, older = summary.split("</li>")[:2]
    assert "Batch 2" in newest and "3 files" in newest and "1 min 7 s of audio" in newest
    assert "RTFx 15.0×" in newest  # total audio / total processing of its completed jobs
    assert "1 failed (notes.wav: The file is not audio: no decoder recognises it)" in newest
    assert "Batch 1" in older and "1 file ·" in older and "0 failed" in older

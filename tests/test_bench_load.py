"""The load tool's bounded slice (`bench/bench_load.py --quick`) on a real app: 1 and 4 concurrent
clients send real speech to /transcribe with QUEUE_MAX_SIZE 1. Every request is served or refused
with Gradio's queue-full message; none fails or hangs. No timing is asserted (that is the bench's table)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from bench_load import classify, is_queue_full, slope_per_minute  # noqa: E402


def test_quick_load_serves_or_refuses_every_request_and_none_fails_or_hangs(models_dir, tmp_path):
    out = tmp_path / "load.json"
    run = subprocess.run(
        [sys.executable, "bench/bench_load.py", "--quick", "--models-dir", str(models_dir), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    levels = report["levels"]
    assert [lv["clients"] for lv in levels] == [1, 4]
    for lv in levels:
        assert lv["sent"] == lv["clients"] * 2  # the count bound: two requests per client
        assert lv["served"] + lv["refused"] == lv["sent"]
        assert lv["failed"] == lv["hung"] == 0, lv["errors"]
        assert lv["served"] >= 1 and lv["p50_s"] > 0
        assert all(is_queue_full(text) for text in lv["refusals"]), lv["refusals"]
    # Four clients at once against one worker and a queue of one: some are turned away, with the message.
    assert levels[1]["refused"] >= 1 and levels[1]["refusals"]
    assert levels[0]["refused"] == 0


def test_outcomes_are_classified_by_the_queue_full_texts_only():
    assert classify({"text": "mister quilter"}, None) == ("served", "")
    assert classify(None, Exception("Queue is full! Please try again."))[0] == "refused"
    assert classify(None, Exception("Queue is full. Max size is 32 and size is 32."))[0] == "refused"
    assert classify(None, Exception("Queue is fullish"))[0] == "failed"
    assert classify(None, ValueError("Connection refused"))[0] == "failed"
    assert classify(None, TimeoutError())[0] == "hung"
    assert classify({"text": "  "}, None)[0] == "failed"  # an empty transcript of real speech is no answer
    assert classify(None, None)[0] == "failed"


def test_slope_is_per_minute_least_squares():
    assert slope_per_minute([0, 30, 60, 90], [100, 101, 102, 103]) == pytest.approx(2.0)
    assert abs(slope_per_minute([0, 60, 120], [5, 5, 5])) < 1e-9
    assert slope_per_minute([10], [1]) == 0.0

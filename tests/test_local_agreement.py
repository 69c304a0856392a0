"""The streaming policy on the shared vectors, in Python here and in Node for its JS twin."""

from __future__ import annotations

import ast
import json
import re
from array import array
from pathlib import Path

import numpy as np
import pytest

from explorer.local_agreement import (
    CommitLatency,
    Hypothesis,
    HypothesisBuffer,
    OnlineASRProcessor,
    agreement_key,
    commit_latency,
)
from explorer.types import Word
from tests.node_tests import run_node_tests

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "local_agreement.json").read_text())["cases"]
NODE_TESTS = "custom_components/browser_asr/tests/"


def words(rows) -> list[Word]:
    return [Word(start, end, text) for start, end, text in rows]


def check_words(actual, expected, what: str) -> None:
    """An expected word is its text, or [start, end, text] to check times too."""
    assert [w.text for w in actual] == [e if isinstance(e, str) else e[2] for e in expected], what
    for w, e in zip(actual, expected):
        if not isinstance(e, str):
            assert (w.start, w.end) == pytest.approx((e[0], e[1]), abs=1e-9), what


def check_buffer_state(buffer: HypothesisBuffer, expect: dict, what: str) -> None:
    if "last_committed_time" in expect:
        assert buffer.last_committed_time == pytest.approx(expect["last_committed_time"], abs=1e-9), what
    if "last_committed_word" in expect:
        assert buffer.last_committed_word == expect["last_committed_word"], what
    if "committed_in_buffer" in expect:
        check_words(buffer.committed_in_buffer, expect["committed_in_buffer"], what)


def run_hypothesis_buffer(case: dict) -> None:
    buffer = HypothesisBuffer(**case.get("options", {}))
    for i, step in enumerate(case["steps"]):
        what, op = f"step {i} ({step['op']})", step["op"]
        if op == "insert":
            buffer.insert(words(step["words"]), step["offset"])
        elif op == "flush":
            check_words(buffer.flush(), step["expect"], what)
        elif op == "complete":
            check_words(buffer.complete(), step["expect"], what)
        elif op == "pop_committed":
            buffer.pop_committed(step["time"])
        elif op == "force_before":
            check_words(buffer.force_before(step["time"]), step["expect"], what)
        elif op == "state":
            check_buffer_state(buffer, step["expect"], what)
        else:
            raise ValueError(f"unknown op {op}")


def check_processor(processor: OnlineASRProcessor, expect: dict, what: str) -> None:
    if "buffer_time_offset" in expect:
        assert processor.buffer_time_offset == pytest.approx(expect["buffer_time_offset"], abs=1e-9), what
    if "buffer_seconds" in expect:
        assert processor.buffer_seconds == pytest.approx(expect["buffer_seconds"], abs=1e-9), what
    if "all_committed" in expect:
        check_words(processor.committed, expect["all_committed"], what)
    if "prompt" in expect:
        assert processor.prompt() == expect["prompt"], what
    if "ready" in expect:
        assert processor.ready == expect["ready"], what
    if "forced_words" in expect:
        assert processor.forced_words == expect["forced_words"], what


def run_processor(case: dict) -> None:
    processor = OnlineASRProcessor(**case.get("options", {}))
    for i, step in enumerate(case["steps"]):
        what, op = f"step {i} ({step['op']})", step["op"]
        if op == "insert_audio":
            processor.insert_audio([0.0] * round(step["seconds"] * processor.sample_rate))
            if "expect_ready" in step:
                assert processor.ready == step["expect_ready"], what
        elif op == "process_iter":
            seen = {}

            def transcribe(audio, prompt, step=step):
                seen.update(audio=audio, prompt=prompt)
                return Hypothesis(words(step["words"]), step["segment_ends"])

            result = processor.process_iter(transcribe)
            expect = step["expect"]
            assert isinstance(seen["audio"], array), what
            if "prompt" in expect:
                assert seen["prompt"] == expect["prompt"], what
            if "audio_seconds" in expect:
                assert len(seen["audio"]) / processor.sample_rate == pytest.approx(expect["audio_seconds"]), what
            if "committed" in expect:
                check_words(result.committed, expect["committed"], f"{what} committed")
            if "unconfirmed" in expect:
                check_words(result.unconfirmed, expect["unconfirmed"], f"{what} unconfirmed")
            check_processor(processor, expect, what)
        elif op == "finish":
            result = processor.finish()
            check_words(result.committed, step["expect"]["committed"], what)
            assert result.unconfirmed == (), what
        elif op == "state":
            check_processor(processor, step["expect"], what)
        elif op == "hypothesis_state":
            check_buffer_state(processor.hypothesis, step["expect"], what)
        else:
            raise ValueError(f"unknown op {op}")


def run_commit_latency(case: dict) -> None:
    got = commit_latency([tuple(e) for e in case["events"]], case["stream_start"])
    for name, want in case["expect"].items():
        value = getattr(got, name)
        assert value is None if want is None else value == pytest.approx(want, abs=1e-9), name


def run_agreement_key(case: dict) -> None:
    assert [agreement_key(text) for text, _ in case["pairs"]] == [key for _, key in case["pairs"]]


RUNNERS = {
    "hypothesis_buffer": run_hypothesis_buffer,
    "processor": run_processor,
    "commit_latency": run_commit_latency,
    "agreement_key": run_agreement_key,
}


def test_the_vectors_cover_every_kind():
    assert {case["kind"] for case in VECTORS} == set(RUNNERS)


@pytest.mark.parametrize("case", VECTORS, ids=[f"{c['kind']}: {c['name']}" for c in VECTORS])
def test_vector(case):
    RUNNERS[case["kind"]](case)


def test_the_js_twin_passes_the_same_vectors():
    tap = run_node_tests(NODE_TESTS)
    for case in VECTORS:  # every vector ran there too
        assert re.search(rf"^ok \d+ - {re.escape(case['kind'] + ': ' + case['name'])}$", tap, re.M), case["name"]


def test_audio_may_be_numpy_and_is_passed_as_a_float32_copy():
    processor = OnlineASRProcessor()
    processor.insert_audio(np.arange(16000, dtype=np.float32))
    assert processor.ready
    seen = []

    def transcribe(audio, prompt):
        seen.append(np.frombuffer(audio, dtype=np.float32))
        return Hypothesis([])

    step = processor.process_iter(transcribe)
    assert step.committed == step.unconfirmed == ()
    assert not processor.ready
    processor.insert_audio(np.zeros(10, dtype=np.float64))
    assert len(seen[0]) == 16000 and seen[0][-1] == 15999  # the copy did not grow
    assert processor.buffer_seconds == pytest.approx(16010 / 16000)


def test_words_keep_their_probability_when_shifted():
    buffer = HypothesisBuffer()
    hypothesis = [Word(0.0, 0.5, "hi", 0.9)]
    buffer.insert(hypothesis, 1.0)
    buffer.flush()
    buffer.insert(hypothesis, 1.0)
    assert buffer.flush() == [Word(1.0, 1.5, "hi", 0.9)]


def test_apply_hypothesis_is_the_policy_step_without_a_callback():
    processor = OnlineASRProcessor()
    processor.insert_audio([0.0] * 16000)
    processor.apply_hypothesis(Hypothesis([Word(0.0, 0.4, "hello")]))
    step = processor.apply_hypothesis(Hypothesis([Word(0.0, 0.4, "hello"), Word(0.5, 0.9, "world")]))
    assert [w.text for w in step.committed] == ["hello"] and [w.text for w in step.unconfirmed] == ["world"]


def test_commit_latency_is_a_dataclass():
    assert commit_latency([], 0.0) == CommitLatency(None, None)


def test_the_policy_module_imports_only_the_standard_library_and_explorer_types():
    tree = ast.parse((ROOT / "explorer" / "local_agreement.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"__future__", "math", "unicodedata", "array", "dataclasses", "typing", "explorer.types"}

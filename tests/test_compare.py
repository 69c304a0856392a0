"""Comparison of several models' transcripts: real tiny.en and base runs on a LibriVox clip."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace

import pandas as pd
import pytest

from explorer.audio import load_audio
from explorer.compare import COLUMNS, REFERENCE, alignments, compare, compare_rows
from explorer.scoring import score
from explorer.types import TranscribeOptions

TINY, BASE = "faster-whisper/tiny.en", "faster-whisper/base"
OPTIONS = TranscribeOptions(language="en", beam_size=1)


@pytest.fixture(scope="module")
def clip(clips):
    return clips[0]


@pytest.fixture(scope="module")
def results(service, clip):
    audio = load_audio(clip.path)
    return [service.transcribe(key, audio, OPTIONS) for key in (TINY, BASE)]


def counts(steps) -> dict[str, int]:
    return {op: sum(1 for s in steps if s.op == op) for op in ("substitute", "delete", "insert")}


def test_rows_score_every_model_against_the_reference(results, clip):
    rows = compare_rows(results, clip.reference, "en")
    assert list(rows.columns) == COLUMNS
    assert list(rows["model"]) == [TINY, BASE]
    for t, row in zip(results, rows.itertuples()):
        expected = score(clip.reference, t.text, "en")
        assert row.against == REFERENCE and row.text == t.text
        assert row.wer == pytest.approx(expected.wer) and row.cer == pytest.approx(expected.cer)
        assert (row.substitutions, row.deletions, row.insertions) == (
            expected.substitutions,
            expected.deletions,
            expected.insertions,
        )
        assert row.normalizer == "open-asr-leaderboard"
        assert row.wer <= 0.2
        assert row.rtfx == pytest.approx(t.metrics.rtfx) and row.rtfx > 0
        assert row.audio_seconds == pytest.approx(t.metrics.audio_seconds)
        assert row.itl_unit == t.metrics.itl_unit


def test_without_reference_or_pivot_there_are_no_scores(results):
    rows = compare_rows(results, "  ", None)
    assert rows["against"].isna().all() and rows["wer"].isna().all() and rows["cer"].isna().all()
    assert (rows["rtfx"] > 0).all()
    assert alignments(results, None) == {}
    c = compare(results)
    assert c.against is None and not c.scored and c.language == "en"  # detected language picks the normaliser


def test_a_pivot_model_takes_the_place_of_the_reference(results, clip):
    tiny, base = results
    rows = compare_rows(results, None, "en", against=BASE).set_index("model")
    assert (rows["against"] == BASE).all()
    assert math.isnan(rows.loc[BASE, "wer"])  # the pivot's own row has nothing to score
    assert rows.loc[TINY, "wer"] == pytest.approx(score(base.text, tiny.text, "en").wer)
    # An explicit pivot wins over a reference; an absent one is an error.
    assert compare_rows(results, clip.reference, "en", against=BASE).set_index("model").loc[TINY, "against"] == BASE
    with pytest.raises(ValueError, match="no-such/model"):
        compare_rows(results, clip.reference, "en", against="no-such/model")
    assert set(alignments(results, None, "en", against=BASE)) == {TINY}


def test_alignment_steps_match_the_score_counts(results, clip):
    steps = alignments(results, clip.reference, "en")
    assert set(steps) == {TINY, BASE}
    for t in results:
        expected = score(clip.reference, t.text, "en")
        assert counts(steps[t.model]) == {
            "substitute": expected.substitutions,
            "delete": expected.deletions,
            "insert": expected.insertions,
        }
        assert sum(s.op != "insert" for s in steps[t.model]) == expected.reference_words
    # A made-up hypothesis with one error of each kind.
    words = "john dashwood had then leisure to consider how much there might be prudently in his power to do for"
    edited = replace(results[0], text=f"{words} them all")
    edited_steps = alignments([edited], f"and {words} him", "en")[TINY]
    assert counts(edited_steps) == {"substitute": 1, "delete": 1, "insert": 1}


def test_csv_and_json_exports_round_trip(results, clip):
    c = compare(results, clip.reference, "en", options=OPTIONS)
    back = pd.read_csv(io.StringIO(c.to_csv()))
    pd.testing.assert_frame_equal(back, c.frame, check_dtype=False)
    data = json.loads(c.to_json())
    assert data["reference"] == clip.reference and data["against"] == REFERENCE
    assert data["options"] == {
        "language": "en",
        "task": "transcribe",
        "beam_size": 1,
        "word_timestamps": False,
        "vad_filter": True,
        "prompt": None,
    }
    assert data["results"] == json.loads(json.dumps([t.to_dict() for t in results]))
    assert [r["model"] for r in data["rows"]] == [TINY, BASE]
    assert data["rows"][0]["wer"] == pytest.approx(score(clip.reference, results[0].text, "en").wer)
    assert set(data["alignments"]) == {TINY, BASE}
    op, ref, hyp = data["alignments"][BASE][0]
    assert op in ("equal", "substitute", "insert", "delete") and isinstance(ref, str) and isinstance(hyp, str)
    # Without scores the missing values are JSON nulls, not NaN.
    unscored = json.loads(compare(results).to_json())
    assert unscored["rows"][0]["wer"] is None and unscored["alignments"] == {}

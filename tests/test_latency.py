"""Word latency (explorer.latency): the pure functions on hand-made timelines."""

from __future__ import annotations

import pytest

from explorer.latency import (
    OWN_TIMES, CommitEvent, ReferenceAlignment, events_from, match_words, pooled, stream_latency, summarize, word_latencies,
)  # fmt: skip
from explorer.types import Word

REFERENCE = ReferenceAlignment(
    "hand-made",
    (Word(0.0, 0.4, " He"), Word(0.4, 0.9, " was"), Word(0.9, 1.2, " not"), Word(1.2, 2.0, " twenty-five.")),
)


def test_latency_is_emission_minus_the_reference_word_end():
    events = [CommitEvent(2.0, 0.5, " he"), CommitEvent(2.0, 0.8, " was"), CommitEvent(3.5, 1.3, " not")]
    assert word_latencies(events, REFERENCE.words) == pytest.approx([1.6, 1.1, 2.3])


def test_without_a_reference_the_streams_own_word_ends_are_used():
    events = [CommitEvent(2.0, 0.5, "he"), CommitEvent(3.0, 1.0, "was")]
    assert word_latencies(events) == pytest.approx([1.5, 2.0])
    assert stream_latency(events, 1.0, 2.0).alignment == OWN_TIMES


def test_words_are_matched_after_whispers_normaliser():
    # Case, punctuation and a hyphen do not stop a match; a wrong word and an extra word do.
    assert match_words(["HE", "was,", "nut", "really", "twenty-five"], [w.text for w in REFERENCE.words]) == [0, 1, None, None, 3]


def test_a_word_the_normaliser_splits_takes_its_first_match():
    assert match_words(["don't", "go"], ["do", "not", "go"]) == [0, 2]
    assert match_words(["uh", "go"], ["go"]) == [None, 0]  # a filler gives no token


def test_unmatched_words_have_no_latency_and_count_as_committed_only():
    events = [CommitEvent(1.0, 0.4, "he"), CommitEvent(1.5, 0.9, "is"), CommitEvent(2.2, 1.2, "not")]
    report = stream_latency(events, processing_seconds=0.5, audio_seconds=2.0, reference=REFERENCE, wer=0.25)
    assert (report.words_matched, report.words_committed) == (2, 3)
    assert report.mean_word_latency == pytest.approx((0.6 + 1.0) / 2)  # "is" ≠ "was"
    assert report.first_commit_latency == pytest.approx(1.0)
    assert report.compute_ratio == pytest.approx(0.25)
    assert report.wer == 0.25 and report.alignment == "hand-made"


def test_percentiles():
    report = summarize([1.0, 2.0, 3.0, 4.0, None, 5.0], 0.5, 1.0, 4.0)
    assert report.mean_word_latency == pytest.approx(3.0)
    assert report.p50_word_latency == pytest.approx(3.0)
    assert report.p90_word_latency == pytest.approx(4.6)  # linear interpolation, as numpy does
    assert (report.words_matched, report.words_committed) == (5, 6)


def test_nothing_committed_gives_no_figures():
    report = stream_latency([], 1.0, 0.0, REFERENCE)
    assert report.first_commit_latency is None and report.mean_word_latency is None and report.p90_word_latency is None
    assert report.words_committed == 0 and report.compute_ratio is None


def test_pooled_streams_weigh_every_word_alike():
    report = pooled([[1.0], [2.0, 3.0, None]], [0.5, None], processing_seconds=3.0, audio_seconds=6.0, wer=0.1)
    assert report.mean_word_latency == pytest.approx(2.0)
    assert report.first_commit_latency == pytest.approx(0.5)
    assert report.compute_ratio == pytest.approx(0.5)
    assert (report.words_matched, report.words_committed) == (3, 4)


def test_browser_events_rows_are_read_and_bad_rows_skipped():
    rows = [[2.0, 0.5, "he"], [2.5, float("nan"), "x"], ["a", 1, "b"], [3.0, 1.0], [3.0, 1.0, "was"]]
    assert events_from(rows) == [CommitEvent(2.0, 0.5, "he"), CommitEvent(3.0, 1.0, "was")]

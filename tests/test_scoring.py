"""Scoring against jiwer itself, on hand-made cases (table-driven, as jiwer's own tests are): Whisper's
plain normalisers, which jiwer aligns. The default English scoring (the Open ASR Leaderboard's) is
tested against the leaderboard's own results in test_scoring_leaderboard.py."""

import jiwer
import pytest

from explorer.scoring import AlignedWord, align, normalize, score


@pytest.mark.parametrize(
    "reference, hypothesis, normalised_ref, normalised_hyp",
    [
        ("He was not an ill-disposed young man.", "he was not an ill disposed young man", "he was not an ill disposed young man", "he was not an ill disposed young man"),
        ("It cost twenty-five dollars", "it cost $25", "it cost $25", "it cost $25"),
        ("I don't know", "I do not know", "i do not know", "i do not know"),
        ("We won't GO!", "we will go", "we will not go", "we will go"),
        ("Mr. Smith arrived", "mister smith arrived", "mister smith arrived", "mister smith arrived"),
        ("the cat sat", "a cat sat down", "the cat sat", "a cat sat down"),
    ],
)
def test_english_normalisation_then_jiwer(reference, hypothesis, normalised_ref, normalised_hyp):
    s = score(reference, hypothesis, normalizer="whisper-english")
    assert s.normalizer == "whisper-english"
    plain = lambda text: normalize(text, normalizer="whisper-english")  # noqa: E731
    assert (plain(reference), plain(hypothesis)) == (normalised_ref, normalised_hyp)
    assert s.wer == pytest.approx(jiwer.wer(normalised_ref, normalised_hyp))
    assert s.cer == pytest.approx(jiwer.cer(normalised_ref, normalised_hyp))


def test_counts_and_corpus_wer_is_total_errors_over_total_words():
    refs = ["a b c d", "e f"]
    hyps = ["a x c d e", "f"]  # 1 substitution + 1 insertion, then 1 deletion
    s = score(refs, hyps, normalizer="whisper-english")  # the leaderboard's would join "a b c d" into "abcd"
    assert (s.substitutions, s.insertions, s.deletions, s.hits) == (1, 1, 1, 4)
    assert s.reference_words == 6 and s.word_errors == 3
    assert s.wer == pytest.approx(3 / 6)  # not the mean of 2/4 and 1/2
    assert s.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert s.cer == pytest.approx(jiwer.cer(refs, hyps))


@pytest.mark.parametrize(
    "reference, hypothesis, wer",
    [
        ("", "", 0.0),  # jiwer 4: nothing said, nothing heard
        ("", "hello there", 2.0),  # jiwer 4: an empty reference counts the inserted words
        ("hello there", "", 1.0),
        ("?!", "", 0.0),  # a reference that normalises to nothing
    ],
)
def test_empty_reference_or_hypothesis_as_jiwer_4_defines_them(reference, hypothesis, wer):
    s = score(reference, hypothesis)
    assert s.wer == wer
    assert s.wer == jiwer.wer(normalize(reference), normalize(hypothesis))


def test_other_languages_use_the_basic_normaliser_and_say_so():
    s = score("Héllo, Wörld!", "héllo wörld", language="de")
    assert s.normalizer == "whisper-basic" and s.wer == 0.0
    assert score("Hello", "hello", language="en").normalizer == "open-asr-leaderboard"


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score(["a", "b"], ["a"])


def test_alignment_marks_each_error():
    assert align("The cat sat on the mat.", "the bat sat on the mat today") == (
        AlignedWord("equal", "the", "the"),
        AlignedWord("substitute", "cat", "bat"),
        AlignedWord("equal", "sat", "sat"),
        AlignedWord("equal", "on", "on"),
        AlignedWord("equal", "the", "the"),
        AlignedWord("equal", "mat", "mat"),
        AlignedWord("insert", "", "today"),
    )
    assert align("red green blue", "red blue") == (
        AlignedWord("equal", "red", "red"),
        AlignedWord("delete", "green", ""),
        AlignedWord("equal", "blue", "blue"),
    )
    assert align("", "") == ()
    assert align("", "hi") == (AlignedWord("insert", "", "hi"),)

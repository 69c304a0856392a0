"""The default English score against the Open ASR Leaderboard's own scorer.

Expected values: each case was run through the leaderboard's code at
github.com/huggingface/open_asr_leaderboard commit d1e99b2 (normalizer/ at that commit, kaldialign
0.12), outside this repo: ``normalizer.data_utils.normalizer`` (its EnglishTextNormalizer) on the
reference and the hypothesis, then ``kaldialign.batch_error_rate(..., merge_compounds=True)`` as
``normalizer.eval_utils.score_results`` calls it. The normalised texts, the counts and the WER
below are its output, copied as literals. The whole table as one corpus went through
``score_results`` itself: 3 errors over 57 words, WER 5.26 %.
"""

import pytest

from explorer.scoring import LEADERBOARD, align, corpus_wer, normalize, score

# name, reference, hypothesis, leaderboard's normalised reference and hypothesis,
# substitutions, deletions, insertions, reference words, WER
CASES = [
    ("plain", "The cat sat on the mat.", "the cat sat on a mat today",
     "the cat sat on the mat", "the cat sat on a mat today", 1, 0, 1, 6, 0.3333333333333333),
    # spoken digits are joined into one number; spelled digits are joined the same way
    ("digits", "Dial five five for help.", "dial 5 5 for help",
     "dial 55 for help", "dial 55 for help", 0, 0, 0, 4, 0.0),
    # "555 1234" matches "5551234" through compound merging
    ("digits-grouped", "Call five five five, one two three four.", "call 555-1234",
     "call 5551234", "call 555 1234", 0, 0, 0, 2, 0.0),
    # only the British->American spelling map differs from Whisper's normaliser without it
    ("spelling", "The colour of the harbour.", "the color of the harbor",
     "the color of the harbor", "the color of the harbor", 0, 0, 0, 5, 0.0),
    ("acronym", "The B.B.C. reported it.", "the BBC reported it",
     "the bbc reported it", "the bbc reported it", 0, 0, 0, 4, 0.0),
    # the collapsed acronym is one reference word, so a wrong one is one error
    ("acronym-partial", "I live in the U.S.A. now", "I live in the US now",
     "i live in the usa now", "i live in the us now", 1, 0, 0, 6, 0.16666666666666666),
    ("names", "Stephen met Geoffrey and Kathryn.", "Steven met Jeffrey and Katherine.",
     "steven met jeffrey and catherine", "steven met jeffrey and catherine", 0, 0, 0, 5, 0.0),
    ("compound-table", "Send me an e-mail about the Wi-Fi.", "send me an email about the wifi",
     "send me an email about the wifi", "send me an email about the wifi", 0, 0, 0, 7, 0.0),
    ("compound-merge", "The white paper is out.", "the whitepaper is out",
     "the white paper is out", "the whitepaper is out", 0, 0, 0, 5, 0.0),
    ("compound-merge-split", "Our notebook stays in the lighthouse.", "our note book stays in the light house",
     "our notebook stays in the lighthouse", "our note book stays in the light house", 0, 0, 0, 6, 0.0),
    ("fillers", "Ah, I see.", "I see", "i see", "i see", 0, 0, 0, 2, 0.0),
    # "'s" is "is" only after it, he, what...: a possessive keeps its "s", which merges with "john"
    ("possessive", "What's John's plan?", "what is johns plan",
     "what is john s plan", "what is johns plan", 0, 0, 0, 5, 0.0),
]  # fmt: skip
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("name, ref, hyp, norm_ref, norm_hyp, subs, dels, ins, words, wer", CASES, ids=IDS)
def test_scores_as_the_leaderboard_does(name, ref, hyp, norm_ref, norm_hyp, subs, dels, ins, words, wer):
    assert (normalize(ref).strip(), normalize(hyp).strip()) == (norm_ref, norm_hyp)
    s = score(ref, hyp)
    assert s.normalizer == LEADERBOARD
    assert (s.substitutions, s.deletions, s.insertions, s.reference_words) == (subs, dels, ins, words)
    assert s.wer == pytest.approx(wer)
    assert s.hits == words - subs - dels  # the counts add up to the WER reported
    assert s.wer == pytest.approx(s.word_errors / s.reference_words)


@pytest.mark.parametrize("name, ref, hyp, norm_ref, norm_hyp, subs, dels, ins, words, wer", CASES, ids=IDS)
def test_each_rule_changes_the_score_from_whispers_plain_normaliser(name, ref, hyp, norm_ref, norm_hyp, subs, dels, ins, words, wer):
    plain = score(ref, hyp, normalizer="whisper-english")
    assert plain.normalizer == "whisper-english"
    if name == "plain":
        assert plain.wer == pytest.approx(wer)
    else:
        assert plain.wer != pytest.approx(wer), "the case does not exercise a leaderboard rule"


def test_the_spelling_case_differs_by_the_spelling_map_alone():
    _, ref, hyp, *_ = CASES[IDS.index("spelling")]
    assert normalize(ref, normalizer="whisper-english") != normalize(hyp, normalizer="whisper-english")
    # colour/harbour are the only words that differ, and the map makes them the same
    assert [a for a, b in zip(normalize(ref, normalizer="whisper-english").split(), normalize(hyp).split()) if a != b] == ["colour", "harbour"]


def test_corpus_is_total_errors_over_total_words_as_score_results_gives():
    s = corpus_wer([c[1] for c in CASES], [c[2] for c in CASES])
    assert (s.substitutions, s.deletions, s.insertions, s.reference_words) == (2, 0, 1, 57)
    assert round(100 * s.wer, 2) == 5.26


@pytest.mark.parametrize("name, ref, hyp, norm_ref, norm_hyp, subs, dels, ins, words, wer", CASES, ids=IDS)
def test_alignment_agrees_with_the_counts(name, ref, hyp, norm_ref, norm_hyp, subs, dels, ins, words, wer):
    steps = align(ref, hyp)
    ops = [s.op for s in steps]
    assert (ops.count("substitute"), ops.count("delete"), ops.count("insert")) == (subs, dels, ins)
    assert sum(len(s.reference.split()) for s in steps) == words
    assert " ".join(s.reference for s in steps if s.reference) == norm_ref
    assert " ".join(s.hypothesis for s in steps if s.hypothesis) == norm_hyp


def test_a_merged_compound_is_one_equal_step():
    assert align("The white paper is out.", "the whitepaper was out")[1:3] == (
        align("white paper", "whitepaper")[0],
        align("is", "was")[0],
    )
    assert align("white paper", "whitepaper")[0].op == "equal"
    assert align("is", "was")[0].op == "substitute"


def test_whispers_normalisers_stay_selectable(monkeypatch):
    assert score("Dial five five", "dial 5 5", normalizer="whisper-english").word_errors == 2
    assert score("Héllo, Wörld!", "héllo wörld", language="de").normalizer == "whisper-basic"
    monkeypatch.setenv("WER_NORMALIZER", "whisper-english")
    assert score("colour", "color").normalizer == "whisper-english"
    assert score("colour", "color", normalizer=LEADERBOARD).wer == 0.0
    monkeypatch.setenv("WER_NORMALIZER", "nope")
    with pytest.raises(ValueError, match="unknown normalizer 'nope'"):
        score("a", "a")

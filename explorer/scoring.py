"""Word and character error rates over normalised text.

English is scored as the Open ASR Leaderboard scores it ("open-asr-leaderboard", the default):
Whisper's English normaliser (numbers, contractions, titles, punctuation, casing, British->American
spellings) with the leaderboard's additions (more filler words, joined compounds and spelled
letters/digits, name variants; see ``explorer.leaderboard_text``), then an alignment by kaldialign
with ``merge_compounds`` (a split compound matches its joined form at no cost). Whisper's own
normalisers stay selectable: "whisper-english" (as before: transformers' English normaliser with
no spelling map, aligned by jiwer) and "whisper-basic" (other languages' default). Every score says
which normaliser it used. Pick one per call (``normalizer=``) or for the process with the
``WER_NORMALIZER`` environment variable (the CLI's ``--normalizer``).

Corpus scores are total errors over total reference words (not a mean of per-utterance rates); an
empty reference counts its inserted words, as jiwer 4 does (the leaderboard drops such utterances).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal, Optional, Sequence, Union, get_args

import jiwer

Normalizer = Literal["open-asr-leaderboard", "whisper-english", "whisper-basic"]
NORMALIZERS: tuple[Normalizer, ...] = get_args(Normalizer)
LEADERBOARD: Normalizer = "open-asr-leaderboard"
ENV_VAR = "WER_NORMALIZER"


def _leaderboard_english() -> Callable[[str], str]:
    """Whisper's EnglishTextNormalizer (transformers) run with the leaderboard's rules: its own
    steps in its own order, with the leaderboard's additions placed where the leaderboard's
    normalizer.py places them (compounds just before numbers are read; names, then spelled
    letters, just after spellings)."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    from explorer import leaderboard_text as rules

    norm = EnglishTextNormalizer(rules.spellings())
    norm.ignore_patterns = r"\b(" + "|".join(rules.FILLERS) + r")\b"
    # "'s" -> " is" only after IS_CONTRACTORS; the rule keeps its place among the replacers
    contraction = r"\b(" + "|".join(rules.IS_CONTRACTORS) + r")'s\b"
    norm.replacers = {
        (contraction if pattern == r"'s\b" else pattern): (r"\1 is" if pattern == r"'s\b" else replacement)
        for pattern, replacement in norm.replacers.items()
    }
    read_numbers, map_spellings = norm.standardize_numbers, norm.standardize_spellings
    norm.standardize_numbers = lambda s: read_numbers(rules.join_compounds(s))
    norm.standardize_spellings = lambda s: rules.collapse_letters(rules.map_words(map_spellings(s), rules.NAMES))
    return norm


@lru_cache(maxsize=None)
def _normalizer(name: Normalizer) -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    if name == LEADERBOARD:
        return _leaderboard_english()
    if name == "whisper-english":
        # As this app always had it: no British->American spelling map.
        return EnglishTextNormalizer({})
    return BasicTextNormalizer()


def normalizer_for(language: Optional[str], normalizer: Optional[str] = None) -> Normalizer:
    """The normaliser to use: `normalizer` if given, else $WER_NORMALIZER if set, else by
    language (English: the leaderboard's; others: Whisper's basic one)."""
    name = normalizer or os.environ.get(ENV_VAR, "").strip()
    if name:
        if name not in NORMALIZERS:
            raise ValueError(f"unknown normalizer {name!r} (expected one of {', '.join(NORMALIZERS)})")
        return name  # type: ignore[return-value]
    return LEADERBOARD if language in (None, "en") else "whisper-basic"


def normalize(text: str, language: Optional[str] = "en", normalizer: Optional[str] = None) -> str:
    return _normalizer(normalizer_for(language, normalizer))(text)


def normalize_english(text: str) -> str:
    return normalize(text, "en")


@dataclass(frozen=True)
class AlignedWord:
    """One step of the word alignment: equal, substitute, insert or delete. With the leaderboard's
    compound merging an "equal" step may pair a split compound with its joined form
    ("white paper" / "whitepaper")."""

    op: Literal["equal", "substitute", "insert", "delete"]
    reference: str  # "" for an insertion
    hypothesis: str  # "" for a deletion


@dataclass(frozen=True)
class Score:
    wer: float
    cer: float
    hits: int  # reference words matched (a merged compound counts its reference words)
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int  # hits + substitutions + deletions
    char_errors: int
    reference_chars: int
    normalizer: Normalizer

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


Texts = Union[str, Sequence[str]]


def _as_list(texts: Texts) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def _word_counts(name: Normalizer, refs: list[str], hyps: list[str]) -> tuple[int, int, int, int]:
    """(hits, substitutions, deletions, insertions) over the corpus."""
    if name == LEADERBOARD:
        # The leaderboard's scorer: kaldialign.batch_error_rate(..., merge_compounds=True) over
        # whitespace-split words (eval_utils.score_results); it counts every reference word.
        from kaldialign import batch_error_rate

        r = batch_error_rate([r.split() for r in refs], [h.split() for h in hyps], merge_compounds=True)
        return r["ref_len"] - r["sub"] - r["del"], r["sub"], r["del"], r["ins"]
    words = jiwer.process_words(refs, hyps)
    return words.hits, words.substitutions, words.deletions, words.insertions


def score(
    references: Texts, hypotheses: Texts, language: Optional[str] = "en", normalizer: Optional[str] = None
) -> Score:
    """WER and CER of one utterance (two strings) or a corpus (two equal-length lists)."""
    refs, hyps = _as_list(references), _as_list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    name = normalizer_for(language, normalizer)
    norm = _normalizer(name)
    refs, hyps = [norm(r) for r in refs], [norm(h) for h in hyps]
    hits, subs, dels, ins = _word_counts(name, refs, hyps)
    reference_words = hits + subs + dels
    chars = jiwer.process_characters(refs, hyps)
    return Score(
        wer=(subs + dels + ins) / max(reference_words, 1),  # jiwer 4: an empty reference divides by 1
        cer=chars.cer,
        hits=hits,
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        reference_words=reference_words,
        char_errors=chars.substitutions + chars.deletions + chars.insertions,
        reference_chars=chars.hits + chars.substitutions + chars.deletions,
        normalizer=name,
    )


def corpus_wer(
    references: Sequence[str], hypotheses: Sequence[str], language: Optional[str] = "en", normalizer: Optional[str] = None
) -> Score:
    return score(list(references), list(hypotheses), language, normalizer)


def align(
    reference: str, hypothesis: str, language: Optional[str] = "en", normalizer: Optional[str] = None
) -> tuple[AlignedWord, ...]:
    """The word alignment of one utterance after normalisation, for showing errors word by word."""
    name = normalizer_for(language, normalizer)
    norm = _normalizer(name)
    ref, hyp = norm(reference).split(), norm(hypothesis).split()
    if name == LEADERBOARD:
        from kaldialign import align as kaldi_align

        steps = []
        for r, h in kaldi_align(ref, hyp, "", merge_compounds=True):  # words are never "", so "" marks a gap
            if not r:
                steps.append(AlignedWord("insert", "", h))
            elif not h:
                steps.append(AlignedWord("delete", r, ""))
            else:  # a merged compound comes as space-joined words on one side
                steps.append(AlignedWord("equal" if r.replace(" ", "") == h.replace(" ", "") else "substitute", r, h))
        return tuple(steps)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    ref, hyp = out.references[0], out.hypotheses[0]
    steps = []
    for chunk in out.alignments[0]:
        r = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        h = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "insert":
            steps += [AlignedWord("insert", "", w) for w in h]
        elif chunk.type == "delete":
            steps += [AlignedWord("delete", w, "") for w in r]
        else:  # equal and substitute chunks pair words one to one
            steps += [AlignedWord(chunk.type, a, b) for a, b in zip(r, h)]
    return tuple(steps)

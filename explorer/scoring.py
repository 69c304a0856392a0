"""Word and character error rates, computed once by jiwer over normalised text.

English is normalised with Whisper's English normaliser (numbers, contractions, titles,
punctuation, casing), as the Open ASR Leaderboard does; other languages with Whisper's basic
normaliser. Every score says which normaliser it used. Corpus scores are total errors over total
reference words (not a mean of per-utterance rates); empty references follow jiwer 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal, Optional, Sequence, Union

import jiwer

Normalizer = Literal["whisper-english", "whisper-basic"]


@lru_cache(maxsize=None)
def _normalizer(name: Normalizer) -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    if name == "whisper-english":
        # The British->American spelling table ships with Whisper checkpoints (normalizer.json), not
        # with transformers; without it only spelling variants go unnormalised.
        return EnglishTextNormalizer({})
    return BasicTextNormalizer()


def normalizer_for(language: Optional[str]) -> Normalizer:
    return "whisper-english" if language in (None, "en") else "whisper-basic"


def normalize(text: str, language: Optional[str] = "en") -> str:
    return _normalizer(normalizer_for(language))(text)


def normalize_english(text: str) -> str:
    return normalize(text, "en")


@dataclass(frozen=True)
class AlignedWord:
    """One step of the word alignment: equal, substitute, insert or delete."""

    op: Literal["equal", "substitute", "insert", "delete"]
    reference: str  # "" for an insertion
    hypothesis: str  # "" for a deletion


@dataclass(frozen=True)
class Score:
    wer: float
    cer: float
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    char_errors: int
    reference_chars: int
    normalizer: Normalizer

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


Texts = Union[str, Sequence[str]]


def _as_list(texts: Texts) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def score(references: Texts, hypotheses: Texts, language: Optional[str] = "en") -> Score:
    """WER and CER of one utterance (two strings) or a corpus (two equal-length lists)."""
    refs, hyps = _as_list(references), _as_list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    name = normalizer_for(language)
    norm = _normalizer(name)
    refs, hyps = [norm(r) for r in refs], [norm(h) for h in hyps]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return Score(
        wer=words.wer,
        cer=chars.cer,
        hits=words.hits,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        reference_words=words.hits + words.substitutions + words.deletions,
        char_errors=chars.substitutions + chars.deletions + chars.insertions,
        reference_chars=chars.hits + chars.substitutions + chars.deletions,
        normalizer=name,
    )


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str], language: Optional[str] = "en") -> Score:
    return score(list(references), list(hypotheses), language)


def align(reference: str, hypothesis: str, language: Optional[str] = "en") -> tuple[AlignedWord, ...]:
    """The word alignment of one utterance after normalisation, for showing errors word by word."""
    norm = _normalizer(normalizer_for(language))
    out = jiwer.process_words(norm(reference), norm(hypothesis))
    ref, hyp = out.references[0], out.hypotheses[0]
    steps: list[AlignedWord] = []
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

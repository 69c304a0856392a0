"""Word error rate with Whisper's English normaliser, computed by jiwer."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import jiwer


@lru_cache(maxsize=1)
def _english_normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # The British->American spelling table ships with Whisper checkpoints (normalizer.json), not
    # with transformers; without it only spelling variants go unnormalised.
    return EnglishTextNormalizer({})


def normalize_english(text: str) -> str:
    return _english_normalizer()(text)


@dataclass(frozen=True)
class CorpusScore:
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> CorpusScore:
    """Total errors / total reference words, after normalisation (as open_asr_leaderboard does)."""
    refs = [normalize_english(r) for r in references]
    hyps = [normalize_english(h) for h in hypotheses]
    out = jiwer.process_words(refs, hyps)
    words = out.hits + out.substitutions + out.deletions
    return CorpusScore(out.wer, out.substitutions, out.deletions, out.insertions, words)

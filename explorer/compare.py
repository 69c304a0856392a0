"""Several models' transcripts of one audio, side by side: scores, word alignments and exports.

Scores are against the reference text, or, when a model key is named as ``against`` (the pivot),
against that model's transcript: a way to see where models disagree when there is no reference.
The pivot's own row has no scores. Pure functions over ``Transcription`` values; no UI here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import pandas as pd

from explorer.metrics import cost_per_audio_hour
from explorer.scoring import AlignedWord, align, score
from explorer.types import TranscribeOptions, Transcription

REFERENCE = "reference"  # `against` value: score against the reference text
COLUMNS = [
    "model",
    "text",
    "against",
    "wer",
    "cer",
    "substitutions",
    "deletions",
    "insertions",
    "ttft_seconds",
    "itl_seconds",
    "itl_unit",
    "rtfx",
    "processing_seconds",
    "load_seconds",
    "audio_seconds",
    "cost_per_audio_hour",
    "normalizer",
    "environment",
]


def target(
    results: Sequence[Transcription], reference: Optional[str], against: Optional[str] = None
) -> tuple[Optional[str], Optional[str]]:
    """What the scores are against, as (label, text): a named model's transcript, else the
    reference; (None, None) when there is neither. A named model must be among the results."""
    if against and against != REFERENCE:
        pivot = next((r for r in results if r.model == against), None)
        if pivot is None:
            raise ValueError(f"cannot score against {against!r}: it has no result among the compared models")
        return against, pivot.text
    if reference and reference.strip():
        return REFERENCE, reference
    return None, None


def scoring_language(results: Sequence[Transcription], language: Optional[str]) -> Optional[str]:
    """The language that picks the normaliser: the requested one, else the first one detected."""
    return language or next((r.language for r in results if r.language), None)


def _row(t: Transcription, label: Optional[str], text: Optional[str], language: Optional[str],
         price_per_hour: Optional[float] = None) -> dict:  # fmt: skip
    s = score(text, t.text, language) if text is not None and t.model != label else None
    m = t.metrics
    return {
        "model": t.model,
        "text": t.text,
        "against": label,
        "wer": s.wer if s else None,
        "cer": s.cer if s else None,
        "substitutions": s.substitutions if s else None,
        "deletions": s.deletions if s else None,
        "insertions": s.insertions if s else None,
        "ttft_seconds": m.ttft_seconds,
        "itl_seconds": m.itl_seconds,
        "itl_unit": m.itl_unit,
        "rtfx": m.rtfx,
        "processing_seconds": m.processing_seconds,
        "load_seconds": m.load_seconds,
        "audio_seconds": m.audio_seconds,
        "cost_per_audio_hour": cost_per_audio_hour(price_per_hour, m.rtfx),
        "normalizer": s.normalizer if s else None,
        "environment": t.environment.label() if t.environment else None,
    }


def row_records(
    results: Sequence[Transcription],
    reference: Optional[str] = None,
    language: Optional[str] = None,
    against: Optional[str] = None,
    price_per_hour: Optional[float] = None,
) -> list[dict]:
    """One dict per model (the COLUMNS), plain Python values, None where there is no score (or,
    for the cost per hour of audio, no DEVICE_PRICE_PER_HOUR)."""
    label, text = target(results, reference, against)
    language = scoring_language(results, language)
    return [_row(t, label, text, language, price_per_hour) for t in results]


def compare_rows(
    results: Sequence[Transcription],
    reference: Optional[str] = None,
    language: Optional[str] = None,
    against: Optional[str] = None,
) -> pd.DataFrame:
    """One row per model: transcript, WER/CER and error counts (NaN without a target), timing."""
    return _frame(row_records(results, reference, language, against))


# Figures that may be missing (not streamed, no DEVICE_PRICE_PER_HOUR): NaN, as a CSV reads back.
FLOAT_COLUMNS = {"ttft_seconds": float, "itl_seconds": float, "cost_per_audio_hour": float}


def _frame(rows: Sequence[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS).astype(FLOAT_COLUMNS)


def alignments(
    results: Sequence[Transcription],
    reference: Optional[str] = None,
    language: Optional[str] = None,
    against: Optional[str] = None,
) -> dict[str, tuple[AlignedWord, ...]]:
    """Per model, its word alignment to the target (the pivot model itself left out); {} without one."""
    label, text = target(results, reference, against)
    if text is None:
        return {}
    language = scoring_language(results, language)
    return {t.model: align(text, t.text, language) for t in results if t.model != label}


@dataclass(frozen=True, eq=False)
class Comparison:
    """Everything one comparison computed, computed once; the exports are views of it."""

    reference: Optional[str]
    against: Optional[str]  # "reference", a model key, or None when nothing is scored
    language: Optional[str]  # the language the normaliser was chosen for
    results: tuple[Transcription, ...]
    rows: tuple[dict, ...]
    alignments: dict[str, tuple[AlignedWord, ...]] = field(default_factory=dict)
    options: Optional[TranscribeOptions] = None  # as requested; each result has its own, as used

    @property
    def frame(self) -> pd.DataFrame:
        return _frame(self.rows)

    @property
    def scored(self) -> bool:
        return self.against is not None

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "against": self.against,
            "language": self.language,
            "options": asdict(self.options) if self.options else None,
            "rows": [dict(r) for r in self.rows],
            "results": [t.to_dict() for t in self.results],
            "alignments": {k: [[w.op, w.reference, w.hypothesis] for w in v] for k, v in self.alignments.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False)


def compare(
    results: Sequence[Transcription],
    reference: Optional[str] = None,
    language: Optional[str] = None,
    against: Optional[str] = None,
    options: Optional[TranscribeOptions] = None,
    price_per_hour: Optional[float] = None,
) -> Comparison:
    """Score and align every result against the reference, or against the model named by `against`."""
    results = tuple(results)
    label, _ = target(results, reference, against)
    return Comparison(
        reference=reference if reference and reference.strip() else None,
        against=label,
        language=scoring_language(results, language),
        results=results,
        rows=tuple(row_records(results, reference, language, against, price_per_hour)),
        alignments=alignments(results, reference, language, against),
        options=options,
    )

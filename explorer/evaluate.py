"""Dataset evaluation: several models on a set of utterances with references.

A dataset is a folder of audio files with same-named ``.txt`` references, or a CSV/TSV/JSONL
manifest with an audio path and a reference per row (paths relative to the manifest). One code
path serves the CLI (``python -m explorer eval``) and, later, the UI.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from explorer.audio import load_audio
from explorer.scoring import score
from explorer.service import ModelService
from explorer.types import TranscribeOptions

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".webm", ".m4a"}
AUDIO_COLUMNS = ("audio", "path", "file", "audio_path")
REFERENCE_COLUMNS = ("reference", "text", "transcript", "sentence")


class DatasetError(ValueError):
    """The dataset cannot be read; the message says which file or row and why."""


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: Path
    reference: str


def _pick(row: dict, names: Sequence[str], what: str, where: str) -> str:
    for name in names:
        if name in row and row[name] is not None:
            return str(row[name])
    raise DatasetError(f"{where}: no {what} column (expected one of {', '.join(names)})")


def _from_rows(rows: list[dict], base: Path, where: str) -> list[Utterance]:
    utterances = []
    for i, row in enumerate(rows, 1):
        audio = Path(_pick(row, AUDIO_COLUMNS, "audio", f"{where} row {i}"))
        audio = audio if audio.is_absolute() else base / audio
        if not audio.is_file():
            raise DatasetError(f"{where} row {i}: audio file {audio} does not exist")
        reference = _pick(row, REFERENCE_COLUMNS, "reference", f"{where} row {i}").strip()
        utterances.append(Utterance(str(row.get("id") or audio.stem), audio, reference))
    return utterances


def load_dataset(source: Path | str) -> list[Utterance]:
    source = Path(source)
    if source.is_dir():
        audio = sorted(p for p in source.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        missing = [p.name for p in audio if not p.with_suffix(".txt").is_file()]
        if missing:
            raise DatasetError(f"{source}: no .txt reference beside {', '.join(missing[:5])}")
        found = [Utterance(p.stem, p, p.with_suffix(".txt").read_text(encoding="utf-8").strip()) for p in audio]
    elif source.suffix.lower() in (".csv", ".tsv"):
        with source.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if source.suffix.lower() == ".tsv" else ","))
        found = _from_rows(rows, source.parent, source.name)
    elif source.suffix.lower() == ".jsonl":
        rows = []
        for i, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{source.name} line {i}: not JSON ({exc})") from None
        found = _from_rows(rows, source.parent, source.name)
    else:
        raise DatasetError(f"{source}: expected a folder, or a .csv, .tsv or .jsonl manifest")
    if not found:
        raise DatasetError(f"{source}: no utterances found")
    return found


@dataclass(frozen=True)
class UtteranceResult:
    model: str
    id: str
    reference: str
    hypothesis: str
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    audio_seconds: float
    processing_seconds: float


def evaluate(
    service: ModelService,
    models: Sequence[str],
    utterances: Sequence[Utterance],
    options: TranscribeOptions = TranscribeOptions(),
    language: Optional[str] = "en",
    on_result: Optional[Callable[[UtteranceResult], None]] = None,
) -> pd.DataFrame:
    """Per-utterance results of every model; each model is warmed up on the first utterance first,
    so load time and first-call costs stay out of its RTFx."""
    audios = [load_audio(u.audio) for u in utterances]
    results = []
    for key in models:
        service.transcribe(key, audios[0], options)  # warm-up, excluded
        for utt, audio in zip(utterances, audios):
            t = service.transcribe(key, audio, options)
            s = score(utt.reference, t.text, language)
            result = UtteranceResult(
                key, utt.id, utt.reference, t.text, s.wer, s.substitutions, s.deletions, s.insertions,
                s.reference_words, audio.duration, t.metrics.processing_seconds,
            )
            results.append(result)
            if on_result:
                on_result(result)
    return pd.DataFrame([asdict(r) for r in results])


def summarize(rows: pd.DataFrame, language: Optional[str] = "en") -> pd.DataFrame:
    """Per model: corpus WER/CER (total errors / total reference words), counts, RTFx."""
    summary = []
    for key, group in rows.groupby("model", sort=False):
        s = score(list(group["reference"]), list(group["hypothesis"]), language)
        audio, processing = group["audio_seconds"].sum(), group["processing_seconds"].sum()
        summary.append(
            {
                "model": key,
                "wer": s.wer,
                "cer": s.cer,
                "substitutions": s.substitutions,
                "deletions": s.deletions,
                "insertions": s.insertions,
                "reference_words": s.reference_words,
                "utterances": len(group),
                "audio_seconds": audio,
                "processing_seconds": processing,
                "rtfx": audio / processing if processing > 0 else None,
                "normalizer": s.normalizer,
            }
        )
    return pd.DataFrame(summary).sort_values("wer", kind="stable").reset_index(drop=True)

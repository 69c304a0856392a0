"""Word latency of a stream, as the streaming literature defines it (whisper_streaming, Macháček
et al. 2023): for each committed word, the time it was emitted minus the time the word ends in
the audio. Computation-aware: emission times are read off the real clock (or the simulated
timeline, see ``explorer.simulate``) with every model call included.

Where a word ends comes from a *reference alignment* of the whole file (word timestamps from one
full offline pass of a bigger model), not from the stream's own hypotheses, whose times move
between passes. The committed words are matched to the alignment's words with jiwer after
Whisper's normaliser (``explorer.scoring``), word by word: only words the two agree on have a
latency; the report says how many matched of how many committed, and which alignment it used.

Everything here is pure; ``reference_alignment`` (the offline pass, cached per audio hash) is the
one side effect, at the end of the module.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import jiwer
import numpy as np

from explorer import scoring
from explorer.types import TranscribeOptions, Word

if TYPE_CHECKING:
    from explorer.audio import Audio
    from explorer.service import ModelService

log = logging.getLogger(__name__)

__all__ = [
    "CommitEvent", "ReferenceAlignment", "StreamLatency", "match_words", "word_latencies",
    "summarize", "stream_latency", "pooled", "reference_alignment", "events_from",
]  # fmt: skip


@dataclass(frozen=True)
class CommitEvent:
    """One committed word: when it was emitted and where the stream itself put its end, both in
    seconds from the stream's start (the browser posts these as ``[emit, word_end, word]``)."""

    emitted: float
    word_end: float
    text: str


@dataclass(frozen=True)
class ReferenceAlignment:
    """Word end times of a whole file, and what produced them (stated in every report)."""

    source: str  # e.g. "faster-whisper/base word timestamps, offline pass, beam 5"
    words: tuple[Word, ...]


@dataclass(frozen=True)
class StreamLatency:
    """A stream's latency figures (seconds); None where there is nothing to measure."""

    alignment: str  # which word end times the latencies are against
    first_commit_latency: Optional[float]  # stream start to the first committed word
    mean_word_latency: Optional[float]
    p50_word_latency: Optional[float]
    p90_word_latency: Optional[float]
    words_matched: int  # committed words found in the alignment (they have a latency)
    words_committed: int
    compute_ratio: Optional[float]  # model compute seconds / audio seconds (> 1: cannot keep up)
    wer: Optional[float]  # of the final committed text, when a reference transcript is known

    def to_dict(self) -> dict:
        return asdict(self)


OWN_TIMES = "the stream's own word timestamps (no reference alignment)"


def events_from(rows: Iterable[Sequence]) -> list[CommitEvent]:
    """``[emit, word_end, word]`` rows (the browser's ``events``) as CommitEvents; rows that are
    not two finite numbers and a string are skipped."""
    events = []
    for row in rows:
        if isinstance(row, (list, tuple)) and len(row) == 3:
            emit, end, text = row
            if all(isinstance(v, (int, float)) and np.isfinite(v) for v in (emit, end)) and isinstance(text, str):
                events.append(CommitEvent(float(emit), float(end), text))
    return events


def _normalizer_name(language: Optional[str]) -> str:
    return "whisper-english" if language in (None, "en") else "whisper-basic"


def _tokens(words: Sequence[str], language: Optional[str]) -> tuple[list[str], list[int]]:
    """Each word normalised on its own (so every token knows its word): the tokens, and for each
    the index of the word it came from. A word may give none ("uh") or several ("don't")."""
    name = _normalizer_name(language)
    tokens, owners = [], []
    for i, word in enumerate(words):
        for token in scoring.normalize(word, language, name).split():
            tokens.append(token)
            owners.append(i)
    return tokens, owners


def match_words(committed: Sequence[str], reference: Sequence[str], language: Optional[str] = "en") -> list[Optional[int]]:
    """For each committed word, the index of the reference word it matches (jiwer's alignment of
    the normalised words, "equal" steps only), or None."""
    hyp, hyp_owner = _tokens(committed, language)
    ref, ref_owner = _tokens(reference, language)
    matched: list[Optional[int]] = [None] * len(committed)
    if not hyp or not ref:
        return matched
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    for chunk in out.alignments[0]:
        if chunk.type != "equal":
            continue
        for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
            word = hyp_owner[chunk.hyp_start_idx + k]
            if matched[word] is None:  # a word of several tokens takes its first match
                matched[word] = ref_owner[chunk.ref_start_idx + k]
    return matched


def word_latencies(
    events: Sequence[CommitEvent], reference: Optional[Sequence[Word]] = None, language: Optional[str] = "en"
) -> list[Optional[float]]:
    """Per committed word: emission time minus the end of its word in ``reference`` (None when it
    matches none); without a reference, minus the stream's own word end."""
    if reference is None:
        return [e.emitted - e.word_end for e in events]
    matched = match_words([e.text for e in events], [w.text for w in reference], language)
    return [None if m is None else e.emitted - reference[m].end for e, m in zip(events, matched)]


def summarize(
    latencies: Sequence[Optional[float]],
    first_commit_latency: Optional[float],
    processing_seconds: float,
    audio_seconds: float,
    wer: Optional[float] = None,
    alignment: str = OWN_TIMES,
) -> StreamLatency:
    found = np.array([x for x in latencies if x is not None], dtype=float)
    stat = (lambda f: float(f(found))) if found.size else (lambda f: None)
    return StreamLatency(
        alignment=alignment,
        first_commit_latency=first_commit_latency,
        mean_word_latency=stat(np.mean),
        p50_word_latency=stat(lambda a: np.percentile(a, 50)),
        p90_word_latency=stat(lambda a: np.percentile(a, 90)),
        words_matched=int(found.size),
        words_committed=len(latencies),
        compute_ratio=processing_seconds / audio_seconds if audio_seconds > 0 else None,
        wer=wer,
    )


def stream_latency(
    events: Sequence[CommitEvent],
    processing_seconds: float,
    audio_seconds: float,
    reference: Optional[ReferenceAlignment] = None,
    wer: Optional[float] = None,
    language: Optional[str] = "en",
) -> StreamLatency:
    """One stream's figures from its commit events (times from the stream's start)."""
    latencies = word_latencies(events, reference.words if reference else None, language)
    first = min((e.emitted for e in events), default=None)
    return summarize(latencies, first, processing_seconds, audio_seconds, wer, reference.source if reference else OWN_TIMES)


def pooled(
    latencies: Sequence[Sequence[Optional[float]]],
    first_commit_latencies: Sequence[Optional[float]],
    processing_seconds: float,
    audio_seconds: float,
    wer: Optional[float] = None,
    alignment: str = OWN_TIMES,
) -> StreamLatency:
    """Several streams (a dataset) as one: every word's latency pooled, the first-commit latency
    averaged over the streams that committed, compute over all the audio, ``wer`` the corpus's."""
    firsts = [x for x in first_commit_latencies if x is not None]
    words = [x for stream in latencies for x in stream]
    return summarize(words, float(np.mean(firsts)) if firsts else None, processing_seconds, audio_seconds, wer, alignment)


# -- the side effect: a reference alignment by one full offline pass -----------------------------
def largest_ready_model(service: "ModelService") -> str:
    """The biggest faster-whisper model that runs here without a download (word timestamps)."""
    from explorer import catalog

    ready = [
        m for m in catalog.MODELS
        if m.engine == "faster-whisper" and service.availability[m.key].status not in ("unavailable", "downloadable")
    ]  # fmt: skip
    if not ready:
        raise ValueError("no faster-whisper model is ready here for a reference alignment")
    return max(ready, key=lambda m: m.size_mb).key


def audio_hash(samples: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()


def reference_alignment(
    service: "ModelService",
    audio: "Audio",
    language: Optional[str] = "en",
    model: Optional[str] = None,
    cache_dir: Optional[Path] = None,
) -> ReferenceAlignment:
    """Word timestamps from one full offline pass (beam 5, no VAD) of ``model`` (default: the
    largest ready faster-whisper model), cached in ``cache_dir`` per audio hash and model."""
    key = model or largest_ready_model(service)
    options = TranscribeOptions(language=language, beam_size=5, word_timestamps=True, vad_filter=False)
    source = f"{key} word timestamps, offline pass, beam 5"
    cached = cache_dir / f"{audio_hash(audio.samples)}-{key.replace('/', '_')}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        data = json.loads(cached.read_text())
        return ReferenceAlignment(data["source"], tuple(Word(**w) for w in data["words"]))
    result = service.transcribe(key, audio, options, interactive=False)
    words = tuple(w for s in result.segments for w in s.words)
    if result.segments and not words:
        raise ValueError(f"{key} gives no word timestamps: it cannot make a reference alignment")
    alignment = ReferenceAlignment(source, words)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(asdict(alignment)))
    return alignment

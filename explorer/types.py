"""Typed values shared by every layer: what engines emit, what the service returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Optional, Union

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: Optional[float] = None


@dataclass(frozen=True)
class Segment:
    """A stretch of transcript with audio times in seconds."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Token:
    """A piece of text as an engine decodes it (one or a few subword tokens)."""

    text: str


# Engines yield these as they are produced. Token-streaming engines yield Tokens and then the
# Segments that cover them; segment-level engines (faster-whisper) yield only Segments.
Emission = Union[Token, Segment]


@dataclass(frozen=True)
class TranscribeOptions:
    language: Optional[str] = None  # None = auto-detect (or the model's only language)
    task: Literal["transcribe", "translate"] = "transcribe"
    beam_size: int = 1
    word_timestamps: bool = False
    vad_filter: bool = True
    # Text the decoder is conditioned on (Whisper's initial prompt): streaming passes the
    # committed text whose audio has left the buffer. None or "" = no prompt.
    prompt: Optional[str] = None

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', not {self.task!r}")
        if not 1 <= int(self.beam_size) <= 16:
            raise ValueError(f"beam_size must be between 1 and 16, not {self.beam_size}")


@dataclass(frozen=True)
class Metrics:
    """Timing of one run; see explorer.metrics for the definitions."""

    audio_seconds: float
    load_seconds: float
    processing_seconds: float
    ttft_seconds: Optional[float]
    itl_seconds: Optional[float]
    itl_unit: Literal["token", "segment"]
    emissions: int
    rtfx: Optional[float]
    # Files decoded together in one batched model call (batch jobs); processing_seconds is then
    # this file's share of the call by audio duration, and there are no per-emission times.
    batch_size: int = 1


@dataclass(frozen=True)
class Transcription:
    """The result of one request: text, timing and how it was made."""

    model: str
    text: str
    segments: tuple[Segment, ...]
    language: Optional[str]
    options: TranscribeOptions
    metrics: Metrics
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return asdict(self)

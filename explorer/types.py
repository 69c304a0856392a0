"""Typed values shared by every layer: what engines emit, what the service returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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
class RunEnvironment:
    """How and where one result was computed (see explorer.environment): results are the same
    computation only where these are equal."""

    engine: str  # the catalog's engine name
    libraries: str  # e.g. "faster-whisper 1.2.1, ctranslate2 4.8.5"
    device: str  # cpu | cuda
    compute_type: str  # int8, float16, float32, bfloat16, q8 ...
    threads: int  # CPU threads of the engine's kernels
    cpu: str
    isa: str  # the kernel-selecting flags present, space-separated
    gpu: Optional[str] = None

    def label(self) -> str:
        """One line for a details row."""
        where = self.gpu if self.device == "cuda" and self.gpu else f"{self.cpu} ({self.isa or 'baseline ISA'})"
        return f"{self.libraries} · {self.device} {self.compute_type} · {self.threads} threads · {where}"

    def differences(self, other: "RunEnvironment") -> list[str]:
        """The fields in which two environments differ, as "field: a ≠ b"."""
        return [
            f"{f.name}: {getattr(self, f.name)} ≠ {getattr(other, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]

    @classmethod
    def from_dict(cls, data: dict) -> "RunEnvironment":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


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
    # False when the engine produced everything at the end (transformers' beam search cannot
    # stream): TTFT and ITL are then None, not figures that would look like streaming.
    streamed: bool = True


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
    environment: Optional[RunEnvironment] = None

    def to_dict(self) -> dict:
        return asdict(self)

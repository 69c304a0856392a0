"""The one small interface every engine implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal, Optional, Protocol, Union

import numpy as np

from explorer.config import all_cores
from explorer.types import Emission, TranscribeOptions


@dataclass(frozen=True)
class LanguageInfo:
    """Yielded once by engines that detect (or are told) the language; not a timed emission."""

    code: str
    probability: Optional[float] = None


@dataclass(frozen=True)
class Runtime:
    """Where and how to run: chosen by the service from settings and the hardware."""

    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: Optional[str] = None  # faster-whisper: int8 / float16 / float32 ...
    token: Optional[str] = None  # Hugging Face token, for gated repos
    trust_remote_code: bool = False
    # Threads of the CPU kernels (CTranslate2's cpu_threads, onnxruntime's intra-op threads,
    # torch's): an explicit number, since outputs can depend on it (Settings.cpu_threads).
    cpu_threads: int = field(default_factory=all_cores)


class Engine(Protocol):
    # What one timed emission is: a decoded token, or a whole segment.
    emits: Literal["token", "segment"]
    # True when the engine skips non-speech itself under options.vad_filter (faster-whisper's
    # Silero VAD); otherwise the service gates silent audio before calling it.
    filters_non_speech: bool
    # The precision the weights run at (int8, float16, float32, bfloat16, q8 ...), for the record.
    compute_type: str
    # False when beam search (beam_size > 1) produces every emission only at the end
    # (transformers cannot stream beams): the service then reports no TTFT/ITL for such runs.
    streams_beam_search: bool

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> Iterator[Union[Emission, LanguageInfo]]:
        """Yield emissions as they are produced from 16 kHz mono float32 audio.

        Token engines yield ``Token``s while decoding and then the ``Segment``s covering them;
        segment engines yield ``Segment``s only. The concatenated segment texts are the transcript.
        """
        ...

    def close(self) -> None:
        """Release memory (GPU included)."""
        ...

    # Optional, for batch jobs (faster-whisper has it): `batch_window_seconds`,
    # `can_batch(options) -> bool` and `transcribe_batch(audios, options, step_files,
    # between_steps) -> list[list[Segment]]` decode several short files in one batched call, in
    # steps (calling between_steps() before each) when step_files > 0; the service uses them when present.

"""faster-whisper (CTranslate2): segment-level streaming from its lazy segment generator."""

from __future__ import annotations

from typing import Iterator, Union

import numpy as np

from explorer.engines.base import LanguageInfo, Runtime
from explorer.types import Emission, Segment, TranscribeOptions, Word


class FasterWhisperEngine:
    # faster-whisper's public API yields whole segments, so timing is per segment.
    emits = "segment"
    filters_non_speech = True  # its own Silero VAD, under vad_filter

    def __init__(self, model, english_only: bool):
        self.model = model
        self.english_only = english_only

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> Iterator[Union[Emission, LanguageInfo]]:
        segments, info = self.model.transcribe(
            audio,
            language="en" if self.english_only else options.language,
            task="transcribe" if self.english_only else options.task,
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps,
            vad_filter=options.vad_filter,
            # Each window decoded on its own: previous text as prompt is the main cause of
            # Whisper's repetition loops on long audio.
            condition_on_previous_text=False,
        )
        yield LanguageInfo(info.language, info.language_probability)
        for s in segments:
            words = tuple(Word(w.start, w.end, w.word, w.probability) for w in (s.words or ()))
            yield Segment(s.start, s.end, s.text, words)

    def close(self) -> None:
        del self.model


def load(spec, weights: str, runtime: Runtime) -> FasterWhisperEngine:
    from faster_whisper import WhisperModel

    compute_type = runtime.compute_type or ("float16" if runtime.device == "cuda" else "int8")
    model = WhisperModel(weights, device=runtime.device, compute_type=compute_type)
    return FasterWhisperEngine(model, english_only=not spec.multilingual)

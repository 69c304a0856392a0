"""Voice activity: the Silero VAD that ships inside faster-whisper (runs offline, on onnxruntime)."""

from __future__ import annotations

import numpy as np

from explorer.types import SAMPLE_RATE


def speech_regions(samples: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch of speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if samples.size < SAMPLE_RATE // 10:
        return []
    stamps = get_speech_timestamps(samples, VadOptions())
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def speech_seconds(samples: np.ndarray) -> float:
    return sum(end - start for start, end in speech_regions(samples))

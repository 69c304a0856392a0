"""Non-speech clips for the robustness probe: what does a model "hear" in silence, noise and tones?

Whisper-family models are known to hallucinate text on non-speech audio ("Thank you.",
"Subtitles by ..."). The probe feeds a standard set of generated clips with an empty reference
and counts the words each model produces per minute of non-speech. The clips are deterministic
(fixed seed), so every run and every machine probes with the same samples.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from explorer.types import SAMPLE_RATE

CLIP_SECONDS = 10.0


def _db(level_dbfs: float) -> float:
    return 10 ** (level_dbfs / 20)


def silence(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)


def room_tone(n: int, rng: np.random.Generator) -> np.ndarray:
    """Very quiet white noise (-60 dBFS RMS): an idle microphone."""
    return (rng.standard_normal(n) * _db(-60)).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(n) * _db(-20)).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by shaping white noise's spectrum (-20 dBFS RMS): fans, traffic, rain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    return (pink / np.sqrt(np.mean(pink**2)) * _db(-20)).astype(np.float32)


def tone(n: int, rng: np.random.Generator) -> np.ndarray:
    """A steady 440 Hz sine at -12 dBFS peak: a test tone, a ringing phone."""
    t = np.arange(n) / SAMPLE_RATE
    return (np.sin(2 * np.pi * 440 * t) * _db(-12)).astype(np.float32)


def mains_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """50 Hz with odd harmonics at -20 dBFS, plus faint noise: a badly grounded recorder."""
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 3, 5, 7))
    hum = hum / np.max(np.abs(hum)) * _db(-20)
    return (hum + rng.standard_normal(n) * _db(-50)).astype(np.float32)


def beeps(n: int, rng: np.random.Generator) -> np.ndarray:
    """1 kHz beeps, 200 ms on, 800 ms off: a reversing truck, a heart monitor."""
    t = np.arange(n) / SAMPLE_RATE
    gate = (t % 1.0) < 0.2
    return (np.sin(2 * np.pi * 1000 * t) * gate * _db(-12)).astype(np.float32)


GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "silence": silence,
    "room-tone": room_tone,
    "white-noise": white_noise,
    "pink-noise": pink_noise,
    "tone-440hz": tone,
    "mains-hum": mains_hum,
    "beeps": beeps,
}


def non_speech_clips(seconds: float = CLIP_SECONDS, seed: int = 0) -> dict[str, np.ndarray]:
    """The standard probe set: name -> 16 kHz mono float32 samples, the same on every call."""
    n = int(seconds * SAMPLE_RATE)
    return {name: make(n, np.random.default_rng([seed, i])) for i, (name, make) in enumerate(GENERATORS.items())}


def words_per_minute(words: int, seconds: float) -> float:
    """Hallucination rate: words transcribed per minute of non-speech audio."""
    return words / (seconds / 60) if seconds > 0 else 0.0

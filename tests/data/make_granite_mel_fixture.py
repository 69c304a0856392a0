"""Writes tests/data/granite_mel_torchaudio.npz: torchaudio's real output for Granite's features.

Run it with a REAL torchaudio (none installs beside the project's torch 2.13), in a scratch venv
outside the repository:

    python3 -m venv /tmp/ta
    /tmp/ta/bin/pip install torch==2.9.1 'torchaudio==2.9.*' numpy soundfile transformers==4.57.6
    /tmp/ta/bin/python tests/data/make_granite_mel_fixture.py

(seen: torch 2.9.1+cu128, torchaudio 2.9.1+cu128, run on the CPU.) The fixture holds, for a real
speech excerpt and a synthetic signal (both rebuilt by ``inputs()``, which the test imports):
``*_mel``, ``torchaudio.transforms.MelSpectrogram`` with the parameters Granite's extractor passes
(power, (80, frames)); ``*_features``, the ``input_features`` of transformers 4.57.6's
``GraniteSpeechFeatureExtractor`` (default config, as ibm-granite/granite-4.0-1b-speech's), which
uses that torchaudio transform. ``tests/test_granite_features.py`` checks ours against both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
FIXTURE = Path(__file__).with_name("granite_mel_torchaudio.npz")
# What GraniteSpeechFeatureExtractor() passes to torchaudio.transforms.MelSpectrogram
MEL_KWARGS = dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=80)


def inputs() -> dict[str, np.ndarray]:
    """The two float32 signals: 0.2 s of LibriVox speech (21 frames) and 1800 samples (not a
    whole number of hops; 12 frames) of a chirp over a 440 Hz tone, clicks and silence."""
    import soundfile as sf

    audio, rate = sf.read(SPEECH, dtype="float32")
    assert rate == 16000
    speech = audio[8000:11200]  # 0.5-0.7 s: "...was not..."
    t = np.arange(1800, dtype=np.float64) / 16000
    synthetic = 0.3 * np.sin(2 * np.pi * (200 * t + 30000 * t**2)) + 0.1 * np.sin(2 * np.pi * 440 * t)
    synthetic[::97] += 0.5  # clicks: broadband energy
    synthetic[1200:1500] = 0.0  # silence: the extractor's floor at max - 8 (log10)
    return {"speech": np.ascontiguousarray(speech), "synthetic": synthetic.astype(np.float32)}


def main() -> None:
    import torch
    import torchaudio
    from transformers import GraniteSpeechFeatureExtractor

    melspec = torchaudio.transforms.MelSpectrogram(**MEL_KWARGS)
    extractor = GraniteSpeechFeatureExtractor()
    assert extractor.melspec_kwargs == MEL_KWARGS, extractor.melspec_kwargs
    out = {}
    for name, signal in inputs().items():
        with torch.no_grad():
            out[f"{name}_mel"] = melspec(torch.from_numpy(signal)).numpy()
        out[f"{name}_features"] = extractor(signal)["input_features"][0].numpy()
    np.savez_compressed(FIXTURE, **out)
    print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}: wrote {FIXTURE}", file=sys.stderr)
    for key, value in out.items():
        print(key, value.shape, value.dtype, file=sys.stderr)


if __name__ == "__main__":
    main()

"""Granite speech's mel spectrogram without torchaudio.

transformers 4.57.6's ``GraniteSpeechFeatureExtractor`` asks torchaudio for one thing only:
``torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400,
hop_length=160, n_mels=80)`` (the values come from the checkpoint's preprocessor config), every
other argument at torchaudio's default. It then takes ``log10``, clips and stacks the result itself.
No torchaudio release installs beside the pinned torch 2.13 (the registry's torchaudio 2.11 is a
CUDA build for torch 2.11 and fails at import), so without this Granite could not run at all.

``MelSpectrogram`` below computes the same thing on torch alone: ``torch.stft`` with a periodic
Hann window of ``win_length`` zero-padded to ``n_fft``, centred with reflect padding, not
normalised, power 2, then the HTK-scale triangular filters of torchaudio's ``melscale_fbanks``
(no area normalisation), built by transformers' own ``audio_utils.mel_filter_bank``, which
ports that function. ``tests/test_granite_features.py`` checks it against torchaudio 2.9's real
output (a fixture saved with torchaudio).

``install()`` leaves a working torchaudio alone; only when torchaudio is missing, or installed but
failing to import, does it give the extractor's module this class in torchaudio's place. The
extractor's own code runs unchanged either way, on the device it is handed (``device=`` in the
processor call: the CPU here, the GPU on a CUDA Space), as it would with torchaudio.
"""

from __future__ import annotations

import threading
import types
from typing import Callable, Optional

import torch

_lock = threading.Lock()
_backend: Optional[str] = None  # "torchaudio" or "torch", once install() has run


class MelSpectrogram(torch.nn.Module):
    """``torchaudio.transforms.MelSpectrogram`` for the arguments Granite's extractor passes, with
    torchaudio's defaults (``f_min=0``, ``f_max=sample_rate/2``, ``power=2``, ``center=True``,
    ``pad_mode="reflect"``, ``norm=None``, ``mel_scale="htk"``). Input (..., time), output
    (..., n_mels, frames), like torchaudio's."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        win_length: Optional[int] = None,
        hop_length: Optional[int] = None,
        n_mels: int = 128,
    ) -> None:
        from transformers.audio_utils import mel_filter_bank

        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.register_buffer("window", torch.hann_window(self.win_length))
        # (n_fft // 2 + 1, n_mels), the layout of torchaudio's ``MelScale.fb``
        bank = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=sample_rate / 2,
            sampling_rate=sample_rate,
            norm=None,
            mel_scale="htk",
        )
        self.register_buffer("fb", torch.from_numpy(bank).float())

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spec.abs().pow(2.0)
        power = power.reshape(shape[:-1] + power.shape[-2:])
        return torch.matmul(power.transpose(-1, -2), self.fb).transpose(-1, -2)


def torchaudio_works() -> bool:
    """Whether ``import torchaudio`` succeeds and offers ``transforms.MelSpectrogram``."""
    try:
        import torchaudio

        return callable(torchaudio.transforms.MelSpectrogram)
    except Exception:  # not installed, or a build for another torch (e.g. OSError: libc10_cuda.so)
        return False


def _requires_backends_but_torchaudio(original: Callable) -> Callable:
    def requires_backends(obj, backends):
        backends = [backends] if not isinstance(backends, (list, tuple)) else backends
        return original(obj, [b for b in backends if b != "torchaudio"])

    return requires_backends


def install() -> str:
    """Make transformers' ``GraniteSpeechFeatureExtractor`` usable; returns the mel backend it
    will use: ``"torchaudio"`` (a working one, left as it is) or ``"torch"`` (``MelSpectrogram``)."""
    global _backend
    with _lock:
        if _backend is not None:
            return _backend
        if torchaudio_works():
            _backend = "torchaudio"
            return _backend
        from transformers.utils import import_utils

        if import_utils.is_torchaudio_available():
            # Installed but failing to import: transformers still counts it as available (it checks
            # only that the package exists), and the extractor's module would then fail on its own
            # ``import torchaudio``. Tell transformers the truth: torchaudio cannot be used here.
            import_utils._torchaudio_available = False
        from transformers.models.granite_speech import feature_extraction_granite_speech as module

        module.torchaudio = types.SimpleNamespace(transforms=types.SimpleNamespace(MelSpectrogram=MelSpectrogram))
        module.requires_backends = _requires_backends_but_torchaudio(module.requires_backends)
        _backend = "torch"
        return _backend

"""Cohere Transcribe (``CohereLabs/cohere-transcribe-03-2026``) through its remote code.

transformers < 5.4 (this project pins 4.57) has no native Cohere ASR class, so the model runs the
code shipped in its repository: that needs ``trust_remote_code=True``, which is granted only when
``Runtime.trust_remote_code`` is set (the service sets it for allow-listed repos only).

The model card's API for that path is a single ``model.transcribe(processor=..., audio_arrays=...,
sample_rates=..., language=...)`` returning one string per input; it chunks long audio itself.
It is a batch call with no token stream and no timestamps, so this engine emits one ``Segment``
[0, duration] with the whole text (``emits="segment"``).

Options: the model has no language detection (the card makes ``language`` required); with
``language=None`` the engine uses the catalog's first language (English) and says so with
``LanguageInfo``. ``task="translate"`` is refused; ``beam_size``, ``word_timestamps`` and
``vad_filter`` are not offered by ``transcribe()`` and are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Union

import numpy as np

from explorer.engines.base import LanguageInfo, Runtime
from explorer.engines.streaming import free_memory, set_torch_threads, torch_dtype_name
from explorer.types import SAMPLE_RATE, Emission, Segment, TranscribeOptions

if TYPE_CHECKING:
    from explorer.catalog import ModelSpec


class RemoteCodeRefused(PermissionError):
    """The model needs trust_remote_code and the runtime does not grant it."""


def load(spec: "ModelSpec", weights: str, runtime: Runtime) -> "CohereEngine":
    if not runtime.trust_remote_code:
        raise RemoteCodeRefused(
            f"{spec.hub_repo or spec.key} runs Python code from its model repository "
            "(trust_remote_code); it is loaded only when that is allowed for this repo "
            "(TRUST_REMOTE_CODE_MODELS)"
        )
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    set_torch_threads(runtime.cpu_threads)
    device = "cuda" if runtime.device == "cuda" else "cpu"
    processor = AutoProcessor.from_pretrained(weights, trust_remote_code=True, token=runtime.token)
    # float32 as in the card: its transcribe() moves the features to the device without casting
    # them to the model's dtype, so a half-precision model would get float32 inputs.
    model = AutoModelForSpeechSeq2Seq.from_pretrained(weights, trust_remote_code=True, token=runtime.token)
    if not hasattr(model, "transcribe"):
        raise RuntimeError(f"{spec.key}: the repository's code has no transcribe() method")
    model.to(device).eval()
    return CohereEngine(spec, model, processor, device)


class CohereEngine:
    emits = "segment"
    filters_non_speech = False
    streams_beam_search = True  # beam_size is ignored: its one segment is the same either way

    def __init__(self, spec: "ModelSpec", model, processor, device: str) -> None:
        self.spec = spec
        self.compute_type = torch_dtype_name(model)
        self.model = model
        self.processor = processor
        self.device = device

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> Iterator[Union[Emission, LanguageInfo]]:
        if options.task != "transcribe":
            raise ValueError(f"{self.spec.name} only transcribes (task={options.task!r} is not supported)")
        language = options.language or self.spec.languages[0]
        if language not in self.spec.languages:
            raise ValueError(
                f"{self.spec.name} does not support language {language!r}; "
                f"supported: {', '.join(self.spec.languages)}"
            )
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        yield LanguageInfo(language)
        if len(audio) == 0:
            return
        texts = self.model.transcribe(
            processor=self.processor, audio_arrays=[audio], sample_rates=[SAMPLE_RATE], language=language
        )
        yield Segment(0.0, len(audio) / SAMPLE_RATE, texts[0])

    def close(self) -> None:
        self.model = None
        self.processor = None
        free_memory(self.device)

"""Engine adapters: each turns one runtime's output into the same timed emissions.

An engine module exposes ``load(spec, weights, runtime) -> Engine``. Imports of heavy
libraries happen inside ``load`` so that listing the catalog never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from explorer.engines.base import Engine, LanguageInfo, Runtime

if TYPE_CHECKING:
    from explorer.catalog import ModelSpec

# engine name (as used in the catalog) -> module implementing it
ENGINE_MODULES = {
    "faster-whisper": "explorer.engines.faster_whisper",
    "transformers": "explorer.engines.transformers_whisper",
    "granite": "explorer.engines.granite",
    "cohere": "explorer.engines.cohere",
    "qwen-asr": "explorer.engines.qwen",
    "onnx": "explorer.engines.onnx_whisper",
}

# engine name -> the Python packages it needs, for availability checks without importing them.
# Granite's feature extractor uses torchaudio when a working one is installed, else the torch-only
# mel spectrogram in explorer/engines/granite_features.py: torchaudio is not required.
ENGINE_PACKAGES = {
    "faster-whisper": ("faster_whisper",),
    "transformers": ("transformers",),
    "granite": ("transformers",),
    "cohere": ("transformers",),
    "qwen-asr": ("qwen_asr",),
    "onnx": ("transformers", "optimum", "onnxruntime"),
}


def load_engine(spec: "ModelSpec", weights: str, runtime: Runtime) -> Engine:
    module = importlib.import_module(ENGINE_MODULES[spec.engine])
    return module.load(spec, weights, runtime)


__all__ = ["Engine", "LanguageInfo", "Runtime", "load_engine", "ENGINE_MODULES", "ENGINE_PACKAGES"]

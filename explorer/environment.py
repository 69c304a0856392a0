"""What a result was computed on: the RunEnvironment (explorer.types) that every result carries.

The same model, weights and options can write different words on another CPU or at another
thread count (a matrix product split differently rounds differently, and ISAs pick different
kernels), so a claim that two runs are "the same computation" holds only for equal environments.
``python -m explorer env`` prints this machine's.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata
from typing import Optional

from explorer.types import RunEnvironment

# CPU flags that select different kernels in CTranslate2, oneDNN/MKL and onnxruntime.
KERNEL_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve",
)  # fmt: skip

# The libraries whose versions decide each engine's kernels (catalog engine name -> packages).
ENGINE_LIBRARIES = {
    "faster-whisper": ("faster-whisper", "ctranslate2"),
    "transformers": ("transformers", "torch"),
    "granite": ("transformers", "torch"),
    "cohere": ("transformers", "torch"),
    "qwen-asr": ("qwen-asr", "transformers", "torch"),
    "onnx": ("optimum-onnx", "onnxruntime"),
}


@lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=None)
def isa_flags() -> str:
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return " ".join(f for f in KERNEL_FLAGS if f in flags)


@lru_cache(maxsize=None)
def library_versions(engine: str) -> str:
    found = []
    for package in ENGINE_LIBRARIES.get(engine, (engine,)):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def gpu_name(device: str) -> Optional[str]:
    if device != "cuda":
        return None
    try:
        import torch

        return torch.cuda.get_device_name(torch.cuda.current_device()) if torch.cuda.is_available() else None
    except Exception:  # torch absent or a driver problem: the rest of the record still holds
        return None


def describe(engine: str, device: str, compute_type: str, threads: int) -> RunEnvironment:
    return RunEnvironment(
        engine=engine,
        libraries=library_versions(engine),
        device=device,
        compute_type=compute_type,
        threads=threads,
        cpu=cpu_model(),
        isa=isa_flags(),
        gpu=gpu_name(device),
    )

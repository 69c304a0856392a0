"""Model calls that borrow a GPU on a ZeroGPU Space (``spaces.GPU``), each asking for a duration
computed from its audio and its model.

What ZeroGPU does with a decorated call (read from ``spaces`` 0.51.3, ``zero/wrappers.py``): the
call's duration callable gets the call's own arguments; the arguments are pickled to a worker
process forked from the app (a worker is reused only while its GPU stays allocated), the result
(or each item a generator yields) is pickled back, and a call that outlives its duration is cut
off. Elsewhere ``spaces.GPU`` returns the function unchanged and the calls run in-process. So:

- What crosses a call is plain CPU values: an ``EngineRef`` (which model, its weights path, its
  ``Runtime``), float32 numpy samples and ``TranscribeOptions`` in; ``Token``, ``Segment`` and
  ``LanguageInfo`` dataclasses out. An engine object never crosses.
- Off ZeroGPU the call finds the service's own engine in this process's registry
  (``register``). On ZeroGPU the service keeps a CPU copy (CTranslate2's CUDA use is not
  intercepted by ZeroGPU, and a torch model moved to CUDA after start-up is not packed for the
  workers), and the call loads a CUDA copy inside the worker from the same weights, kept there
  while the worker lives; the duration asks for that load too.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional

import numpy as np

from explorer import catalog
from explorer.engines import Engine, Runtime, load_engine
from explorer.types import TranscribeOptions

SAMPLE_RATE = 16000

# Seconds a GPU call asks for, per engine: a fixed part (worker start, loading the CUDA copy) and
# seconds per second of audio (a pessimistic RTFx on an H200 slice: 20 for CTranslate2, 12 for
# transformers Whisper, 8 for the LLM-based models and for ONNX, which runs on the CPU there).
# Not measured on ZeroGPU (no GPU here): estimates that keep a 30-minute file under the cap.
GPU_COST = {
    "faster-whisper": (10.0, 1 / 20),
    "transformers": (15.0, 1 / 12),
    "granite": (30.0, 1 / 8),
    "cohere": (30.0, 1 / 8),
    "qwen-asr": (30.0, 1 / 8),
    "onnx": (10.0, 1 / 8),
}
MIN_GPU_SECONDS = 10  # a short clip still pays the worker's start


def on_zero_gpu() -> bool:
    try:
        from spaces.config import Config
    except ImportError:  # pragma: no cover - spaces is in requirements.txt
        return False
    return Config.zero_gpu


@dataclass(frozen=True)
class EngineRef:
    """A loaded model as it crosses into a GPU call: enough to find it, or to load it there."""

    key: str  # catalog key
    engine: str  # catalog engine name: what the duration table is keyed by
    weights: str  # the local folder (or Hub id) it was loaded from
    runtime: Runtime  # how the call runs it (on ZeroGPU: on CUDA, in the worker)
    instance: int  # this process's registry key for the service's own engine
    load_in_call: bool = False  # ZeroGPU: load a copy inside the worker rather than use the registry
    max_seconds: float = 300.0  # Settings.zero_gpu_max_seconds: the most one call may ask for


def gpu_seconds(engine: str, audio_seconds: float, beam_size: int = 1, max_seconds: float = 300.0) -> int:
    """Seconds one GPU call asks for: the engine's fixed part plus its cost per audio second (beam
    search costs more), at least MIN_GPU_SECONDS, at most max_seconds (beyond it the scheduler
    refuses the call as an illegal duration)."""
    fixed, per_second = GPU_COST.get(engine, (30.0, 1 / 4))
    beams = 1 + 0.25 * (max(1, beam_size) - 1)
    return int(min(max_seconds, max(MIN_GPU_SECONDS, math.ceil(fixed + audio_seconds * per_second * beams))))


# -- this process's engines ------------------------------------------------------------------
_REGISTERED: dict[int, Engine] = {}
_LOADED_HERE: dict[tuple, Engine] = {}  # copies loaded inside calls (ZeroGPU workers)
_LOCK = threading.Lock()
_NEXT = itertools.count(1)


def register(engine: Engine) -> int:
    """Make the service's engine findable by GPU calls in this process (and forks of it)."""
    with _LOCK:
        instance = next(_NEXT)
        _REGISTERED[instance] = engine
    return instance


def forget(ref: Optional[EngineRef]) -> None:
    if ref is not None:
        with _LOCK:
            _REGISTERED.pop(ref.instance, None)


def make_ref(key: str, weights: str, runtime: Runtime, instance: int, max_seconds: float) -> EngineRef:
    spec = catalog.get(key)
    if on_zero_gpu():  # the call runs in a worker that has the GPU the app process lacks
        return EngineRef(key, spec.engine, weights, replace(runtime, device="cuda"), instance, True, max_seconds)
    return EngineRef(key, spec.engine, weights, runtime, instance, False, max_seconds)


def _engine(ref: EngineRef) -> Engine:
    if not ref.load_in_call:
        engine = _REGISTERED.get(ref.instance)
        if engine is not None:
            return engine
    place = (ref.key, ref.weights, ref.runtime)
    with _LOCK:
        engine = _LOADED_HERE.get(place)
        if engine is None:
            # One copy per model in a worker: a new model there replaces the old one.
            for old in _LOADED_HERE.values():
                old.close()
            _LOADED_HERE.clear()
            engine = _LOADED_HERE[place] = load_engine(catalog.get(ref.key), ref.weights, ref.runtime)
    return engine


def _duration(ref: EngineRef, samples: np.ndarray, options: TranscribeOptions) -> int:
    return gpu_seconds(ref.engine, len(samples) / SAMPLE_RATE, options.beam_size, ref.max_seconds)


def _batch_duration(ref: EngineRef, batch: list[np.ndarray], options: TranscribeOptions, step_files: int = 0,
                    between_steps: Optional[Callable[[], None]] = None) -> int:
    return gpu_seconds(ref.engine, sum(len(s) for s in batch) / SAMPLE_RATE, options.beam_size, ref.max_seconds)


def _run_engine(ref: EngineRef, samples: np.ndarray, options: TranscribeOptions) -> Iterator:
    yield from _engine(ref).transcribe(samples, options)


def _run_engine_batch(ref: EngineRef, batch: list[np.ndarray], options: TranscribeOptions, step_files: int = 0,
                      between_steps: Optional[Callable[[], None]] = None) -> list:
    """step_files/between_steps: the batch's steps, between which the caller's device slot may go
    to an interactive request (off ZeroGPU only: a callback does not pickle)."""
    return _engine(ref).transcribe_batch(batch, options, step_files, between_steps)


try:  # On a ZeroGPU Space this borrows a GPU for each call; elsewhere spaces.GPU is a no-op.
    import spaces

    run_engine = spaces.GPU(_run_engine, duration=_duration)
    run_engine_batch = spaces.GPU(_run_engine_batch, duration=_batch_duration)
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    run_engine, run_engine_batch = _run_engine, _run_engine_batch

"""The one thin layer between UI and engines: loads and caches models, runs them, reads the clock.

``ModelService.stream`` runs a model on normalised audio and yields an ``Update`` per emission,
the last one carrying the ``Transcription`` whose metrics come from ``explorer.metrics``.

Emission times belong to the producer: the engine runs in a thread of its own (``TimedRun``),
which stamps each emission with the clock as the engine yields it and stamps the engine's end,
so the time a reader spends on each update (a Gradio handler posting it) is never billed to
TTFT, ITL, processing or RTFx.
"""

from __future__ import annotations

import contextvars
import gc
import logging
import queue
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional, Sequence

from explorer import catalog, environment, gpu, metrics, vad
from explorer.audio import Audio, AudioSource, load_audio
from explorer.config import Settings
from explorer.engines import Engine, LanguageInfo, Runtime, load_engine
from explorer.types import Emission, RunEnvironment, Segment, Token, TranscribeOptions, Transcription

log = logging.getLogger(__name__)

# Below this there is nothing a model could transcribe; engines may even fail on it.
MIN_AUDIO_SECONDS = 0.1

ProgressFn = Callable[[Optional[float], str], None]
_ENGINE_LOADS = threading.Lock()


class ModelError(RuntimeError):
    """A model cannot be used: unavailable, failed to download or to load. User-facing message."""


@dataclass(frozen=True)
class Update:
    text: str  # the transcript so far
    elapsed: float  # seconds since the request started (after model load)
    emission: Optional[Emission] = None
    result: Optional[Transcription] = None  # set on the last update only


@dataclass
class LoadedModel:
    key: str
    engine: Engine
    device: str
    load_seconds: float
    environment: RunEnvironment
    in_use: int = 0
    runs: int = 0
    loaded_at: float = field(default_factory=time.time)
    ref: Optional[gpu.EngineRef] = None  # what a GPU call is given instead of the engine (explorer.gpu)


class DeviceSlots:
    """At most NUM_WORKERS model runs at once, shared by interactive requests and batch workers;
    a batch worker waits while any interactive request waits, and hands its slot over between the
    steps of a batched call (``hand_over``), so a big batch never starves the UI: an interactive
    request waits at most for the step already running. A request decoding its audio
    (``expected``) already counts: batch work starts no new step meanwhile, so the slot is free
    when the request asks for it, and the decode has the CPU to itself."""

    # How long batch work waits, once a request's decode has ended, for that request to ask for
    # the slot (it does so at once, unless it failed) before taking up its steps again.
    EXPECT_GRACE_SECONDS = 0.05

    def __init__(self, slots: int):
        self._cond = threading.Condition()
        self._slots = slots
        self._free = slots
        self._interactive_waiting = 0
        self._expected = 0  # requests decoding their audio, about to ask for a slot

    @contextmanager
    def expected(self) -> Iterator[None]:
        """An interactive request on its way to a slot (decoding its audio): batch work waits."""
        with self._cond:
            self._expected += 1
        try:
            yield
        finally:
            with self._cond:  # no notify: batch work looks again after EXPECT_GRACE_SECONDS
                self._expected -= 1

    def _batch_waits(self) -> bool:
        return bool(self._interactive_waiting or self._expected)

    @contextmanager
    def hold(self, interactive: bool = True) -> Iterator[None]:
        with self._cond:
            self._interactive_waiting += interactive
            try:
                while self._free == 0 or (not interactive and self._batch_waits()):
                    self._cond.wait(None if interactive else self.EXPECT_GRACE_SECONDS)
            finally:
                self._interactive_waiting -= interactive
            self._free -= 1
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    @property
    def interactive_waiting(self) -> int:
        with self._cond:
            return self._interactive_waiting

    @property
    def running(self) -> int:
        """Model runs holding a slot now (interactive or batch)."""
        with self._cond:
            return self._slots - self._free

    def hand_over(self) -> float:
        """For batch work holding a slot, between two steps: if an interactive request waits, let
        it have the slot, and take one back once no interactive request waits. Returns the
        seconds spent without the slot (0 when nobody waited)."""
        with self._cond:
            if not self._batch_waits():
                return 0.0
            start = time.perf_counter()
            self._free += 1
            self._cond.notify_all()
            while self._free == 0 or self._batch_waits():
                self._cond.wait(self.EXPECT_GRACE_SECONDS)
            self._free -= 1
            return time.perf_counter() - start


def step_sizes(files: int, step_files: int) -> list[int]:
    """The decoder batch each of `files` files is in when a batched call decodes them
    `step_files` at a time, in order (0: all in one)."""
    step = step_files if step_files > 0 else files
    return [min(step, files - i // step * step) for i in range(files)]


class TimedRun:
    """Runs an engine's emission iterator in a thread of its own and hands each item over with
    the clock reading taken when the engine produced it (``perf_counter`` seconds); ``ended`` is
    the reading when the engine finished. The engine never waits for the reader.

    Leaving the ``with`` block early (the reader went away) asks the engine to stop at its next
    emission, closes its iterator in its own thread (which cancels a transformers generation) and
    waits for that, so the model is never released while it still runs.
    """

    _END = object()

    def __init__(self, items: Iterator) -> None:
        self._items = items
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._stop = threading.Event()
        # A copy of the caller's context: ZeroGPU's spaces.GPU finds the Gradio request in it.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._drain,), name="explorer-engine", daemon=True)
        self.ended: Optional[float] = None

    def _drain(self) -> None:
        try:
            for item in self._items:
                self._queue.put((item, time.perf_counter()))
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the reader, which re-raises it
            self._queue.put((exc, time.perf_counter()))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()
            self._queue.put((self._END, time.perf_counter()))

    def __enter__(self) -> "TimedRun":
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[tuple[object, float]]:
        while self.ended is None:
            item, stamp = self._queue.get()
            if item is self._END:
                self.ended = stamp
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item, stamp

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def resolve_device(setting: str, engine: str) -> str:
    if setting != "auto":
        return setting
    if engine == "faster-whisper":
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_used_fraction() -> float:
    """Share of GPU memory in use by anything (torch and CTranslate2 alike)."""
    import torch

    free, total = torch.cuda.mem_get_info()
    return 1 - free / total


def _reporting_tqdm(progress: ProgressFn):
    from tqdm.auto import tqdm

    class ReportingTqdm(tqdm):
        def update(self, n=1):
            out = super().update(n)
            if self.total:
                progress(self.n / self.total, f"{self.desc or 'downloading'} {self.n}/{self.total}")
            return out

    return ReportingTqdm


class ModelService:
    def __init__(self, settings: Settings, online: Optional[bool] = None):
        self.settings = settings
        self.online = catalog.hub_reachable(settings) if online is None else online
        self.availability = catalog.check_all(settings, self.online)
        self.failed: dict[str, str] = {}
        self._loaded: "OrderedDict[str, LoadedModel]" = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self.slots = DeviceSlots(settings.num_workers)

    # -- catalog -----------------------------------------------------------------------------
    def models(self) -> list[dict]:
        rows = []
        for spec in catalog.MODELS:
            avail = self.availability[spec.key]
            rows.append(
                {
                    "key": spec.key,
                    "name": spec.name,
                    "engine": spec.engine,
                    "source": spec.source,
                    "languages": list(spec.languages),
                    "gated": spec.gated,
                    "trust_remote_code": spec.trust_remote_code,
                    "status": avail.status,
                    "reason": catalog.without_paths(self.failed.get(spec.key) or avail.reason),  # public: no paths
                    "loaded": spec.key in self._loaded,
                }
            )
        return rows

    def health(self) -> dict:
        with self._lock:
            loaded = [
                {"key": m.key, "device": m.device, "load_seconds": round(m.load_seconds, 3), "runs": m.runs, "in_use": m.in_use}
                for m in self._loaded.values()
            ]
        counts: dict[str, int] = {}
        for a in self.availability.values():
            counts[a.status] = counts.get(a.status, 0) + 1
        return {
            "status": "ok",
            "hub_online": self.online,
            "default_model": self.settings.default_model,
            "loaded_models": loaded,
            "failed_models": dict(self.failed),
            "availability": counts,
            "num_workers": self.settings.num_workers,
            "models_running": self.slots.running,  # model calls holding a device slot now
            "requests_waiting": self.slots.interactive_waiting,  # interactive requests waiting for one
        }

    # -- model cache -------------------------------------------------------------------------
    def _download(self, spec: catalog.ModelSpec, progress: Optional[ProgressFn]) -> str:
        """Fetch a "downloadable" model. Only reached when the Hub answered at start: offline
        (or with HF_HUB_OFFLINE=1) such models are "unavailable" and fail before any request."""
        from huggingface_hub import snapshot_download

        kwargs = {"tqdm_class": _reporting_tqdm(progress)} if progress else {}
        try:
            return snapshot_download(
                spec.hub_repo, token=self.settings.hf_token, allow_patterns=spec.hub_files, **kwargs
            )
        except Exception as exc:
            raise ModelError(f"could not download {spec.hub_repo}: {type(exc).__name__}: {exc}") from exc

    def _evict(self, reserve_gpu: bool) -> None:
        """Drop idle models, least recently used first, until there is room for one more."""

        def over() -> bool:
            if len(self._loaded) >= self.settings.max_loaded_models:
                return True
            if reserve_gpu and any(m.device == "cuda" for m in self._loaded.values()):
                return gpu_used_fraction() > self.settings.gpu_memory_utilization
            return False

        while over():
            idle = next((m for m in self._loaded.values() if m.in_use == 0), None)
            if idle is None:  # every model is busy: allow going over rather than break a request
                return
            log.info("evicting %s", idle.key)
            del self._loaded[idle.key]
            gpu.forget(idle.ref)
            idle.engine.close()
            gc.collect()
            if idle.device == "cuda":
                import torch

                torch.cuda.empty_cache()

    def _available(self, spec: catalog.ModelSpec) -> catalog.Availability:
        """The one place that decides whether a model can run here at all."""
        avail = self.availability[spec.key]
        if avail.status == "unavailable":
            raise ModelError(f"{spec.name} is unavailable: {catalog.without_paths(avail.reason)}")
        return avail

    def _load(self, spec: catalog.ModelSpec, progress: Optional[ProgressFn]) -> LoadedModel:
        avail = self._available(spec)
        start = time.perf_counter()
        weights = self._download(spec, progress) if avail.status == "downloadable" else avail.weights
        # On ZeroGPU the app process has no GPU: its copy is a CPU one, the GPU calls load their own.
        device = "cpu" if gpu.on_zero_gpu() else resolve_device(self.settings.device, spec.engine)
        runtime = Runtime(
            device=device,
            compute_type=self.settings.compute_type,
            token=self.settings.hf_token,
            trust_remote_code=spec.trust_remote_code and spec.hub_repo in self.settings.remote_code_allowlist,
            cpu_threads=self.settings.cpu_threads,
        )
        with self._lock:
            self._evict(reserve_gpu=device == "cuda")
        if progress:
            progress(None, f"loading {spec.name} on {device}")
        try:
            # One engine load at a time (downloads may overlap): transformers' lazy imports are
            # not thread-safe (two first loads at once failed with "cannot import name
            # 'AutoProcessor'"), and two loads at once would also double the memory peak.
            with _ENGINE_LOADS:
                engine = load_engine(spec, weights, runtime)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.failed[spec.key] = reason
            log.exception("loading %s failed", spec.key)
            raise ModelError(f"{spec.name} failed to load: {catalog.without_paths(reason)}") from exc
        self.failed.pop(spec.key, None)
        env = environment.describe(spec.engine, device, engine.compute_type, runtime.cpu_threads)
        ref = gpu.make_ref(spec.key, weights, runtime, gpu.register(engine), self.settings.zero_gpu_max_seconds)
        return LoadedModel(spec.key, engine, device, time.perf_counter() - start, env, ref=ref)

    def _claim(self, key: str) -> Optional[LoadedModel]:
        """Mark a cached model in use (call holding _lock): found and claimed in one step, so an
        eviction in another thread cannot close it between the two."""
        model = self._loaded.get(key)
        if model is not None:
            self._loaded.move_to_end(key)
            model.in_use += 1
        return model

    @contextmanager
    def checkout(self, key: str, progress: Optional[ProgressFn] = None) -> Iterator[tuple[LoadedModel, float]]:
        """Borrow a loaded model (loading it if needed); yields it and this request's load time."""
        spec = catalog.get(key)
        load_seconds = 0.0
        with self._lock:
            model = self._claim(key)
            lock = self._load_locks.setdefault(key, threading.Lock())
        if model is None:
            with lock:  # one load per model at a time; others wait for it
                with self._lock:
                    model = self._claim(key)
                if model is None:
                    model = self._load(spec, progress)
                    load_seconds = model.load_seconds
                    with self._lock:
                        self._loaded[key] = model
                        model.in_use += 1
        try:
            yield model, load_seconds
        finally:
            with self._lock:
                model.in_use -= 1
                model.runs += 1

    def preload(self, key: str) -> None:
        with self.checkout(key):
            pass

    # -- the request path: check, decode, run ----------------------------------------------------
    def check(self, key: str, options: TranscribeOptions = TranscribeOptions()) -> tuple[catalog.ModelSpec, TranscribeOptions, list[str]]:
        """Whether this model can take this request, before anything runs: the model is known and
        available here (else ModelError), and the options fit it (else ValueError). Returns the
        options as they will be used and what had to be ignored to get there."""
        try:
            spec = catalog.get(key)
        except KeyError as exc:
            raise ModelError(str(exc).strip("'\"")) from None
        self._available(spec)
        options, warnings = self._fit_options(spec, options)
        return spec, options, warnings

    def decode(self, source: AudioSource, name: Optional[str] = None) -> Audio:
        """Audio from anything a request can send, within the settings' limits (MAX_UPLOAD_MB,
        MAX_AUDIO_SECONDS); AudioError with a user-facing message otherwise. While it decodes,
        batch work starts no new step (the request is about to ask for a slot)."""
        with self.slots.expected():
            return load_audio(source, max_seconds=self.settings.max_audio_seconds, max_bytes=self.settings.max_upload_bytes, name=name)

    # -- running -----------------------------------------------------------------------------
    def _fit_options(self, spec: catalog.ModelSpec, options: TranscribeOptions) -> tuple[TranscribeOptions, list[str]]:
        """Check options against the model; say plainly what had to be ignored."""
        warnings = []
        if options.language:
            if not spec.multilingual:
                if options.language != spec.languages[0]:
                    warnings.append(f"{spec.name} only knows {spec.languages[0]}: language {options.language!r} ignored")
                options = replace(options, language=spec.languages[0])
            elif options.language not in spec.languages:
                raise ValueError(
                    f"{spec.name} does not support language {options.language!r}; "
                    f"supported: {', '.join(spec.languages)}"
                )
        if options.task == "translate" and not spec.translates:
            warnings.append(f"{spec.name} does not translate: translate ignored, transcribing")
            options = replace(options, task="transcribe")
        return options, warnings

    def stream(
        self,
        key: str,
        audio: Audio,
        options: TranscribeOptions = TranscribeOptions(),
        progress: Optional[ProgressFn] = None,
        interactive: bool = True,
    ) -> Iterator[Update]:
        spec, options, warnings = self.check(key, options)
        warnings = list(audio.warnings) + warnings
        with self.slots.hold(interactive), self.checkout(key, progress) as (model, load_seconds):
            engine = model.engine
            start = time.perf_counter()
            times: list[float] = []
            tokens: list[str] = []
            segments: list[Segment] = []
            language = None if spec.multilingual else spec.languages[0]

            if audio.duration < MIN_AUDIO_SECONDS:
                warnings.append(f"audio is {audio.duration:.3f} s long: nothing to transcribe")
                items: Iterator = iter(())
            elif options.vad_filter and not engine.filters_non_speech and not vad.speech_regions(audio.samples):
                # Engines without a VAD of their own would hallucinate on silence.
                warnings.append("no speech detected (Silero VAD): empty transcript")
                items = iter(())
            else:
                items = gpu.run_engine(model.ref, audio.samples, options)

            with TimedRun(items) as run:
                for item, stamp in run:
                    elapsed = stamp - start
                    if isinstance(item, LanguageInfo):
                        language = options.language or item.code
                        continue
                    if isinstance(item, Segment):
                        segments.append(item)
                    else:
                        tokens.append(item.text)
                    if (engine.emits == "token") == isinstance(item, Token):
                        times.append(elapsed)
                    # Token engines' tokens add up to their segments' text, and arrive first.
                    text = "".join(tokens) if engine.emits == "token" else "".join(s.text for s in segments)
                    yield Update(text.strip(), elapsed, item)
            processing = run.ended - start
            streamed = options.beam_size == 1 or engine.streams_beam_search
            env = model.environment
        result = Transcription(
            model=key,
            text="".join(s.text for s in segments).strip(),
            segments=tuple(segments),
            language=language,
            options=options,
            metrics=metrics.compute(times, engine.emits, audio.duration, processing, load_seconds, streamed=streamed),
            warnings=tuple(warnings),
            environment=env,
        )
        yield Update(result.text, processing, None, result)

    def transcribe(
        self,
        key: str,
        audio: Audio,
        options: TranscribeOptions = TranscribeOptions(),
        progress: Optional[ProgressFn] = None,
        interactive: bool = True,
    ) -> Transcription:
        for update in self.stream(key, audio, options, progress, interactive):
            if update.result is not None:
                return update.result
        raise AssertionError("stream ended without a result")  # stream always yields one

    @staticmethod
    def batchable(engine: Engine, audio: Audio, options: TranscribeOptions) -> bool:
        """Whether this file can share a batched call: a batching engine, options it can batch
        with, one decoder window of audio, and speech in it (else there is nothing to decode)."""
        if not hasattr(engine, "transcribe_batch") or not engine.can_batch(options):
            return False
        if not MIN_AUDIO_SECONDS <= audio.duration <= engine.batch_window_seconds:
            return False
        return not options.vad_filter or bool(vad.speech_regions(audio.samples))

    def transcribe_batch(
        self, key: str, audios: Sequence[Audio], options: TranscribeOptions = TranscribeOptions()
    ) -> list[Transcription]:
        """Batch work (lower priority than interactive requests): files that can share one
        batched model call do; the rest run one by one. Results are in the order given."""
        spec, options, warnings = self.check(key, options)
        with self.slots.hold(interactive=False):
            with self.checkout(key) as (model, load_seconds):
                together = [i for i, a in enumerate(audios) if self.batchable(model.engine, a, options)]
                results: dict[int, Transcription] = {}
                if len(together) > 1:
                    # Between the call's steps the slot goes to any interactive request that waits:
                    # that time is not this call's, and leaves its processing time.
                    handed_over = [0.0]

                    def between_steps() -> None:
                        handed_over[0] += self.slots.hand_over()

                    step_files = self.settings.batch_step_files
                    start = time.perf_counter()
                    if model.ref.load_in_call:  # ZeroGPU: a callback cannot cross into the GPU worker; one call
                        step_files, between_steps = 0, None
                    batch = gpu.run_engine_batch(
                        model.ref, [audios[i].samples for i in together], options, step_files, between_steps
                    )
                    took = time.perf_counter() - start - handed_over[0]
                    seconds = metrics.batch_shares([audios[i].duration for i in together], took)
                    sizes = step_sizes(len(together), step_files)
                    for i, segments, share, size in zip(together, batch, seconds, sizes):
                        results[i] = Transcription(
                            model=key,
                            text="".join(s.text for s in segments).strip(),
                            segments=tuple(segments),
                            language=options.language or spec.languages[0],
                            options=options,
                            metrics=metrics.compute([], "segment", audios[i].duration, share, load_seconds, size),
                            warnings=tuple(audios[i].warnings) + tuple(warnings),
                            environment=model.environment,
                        )
                        load_seconds = 0.0  # counted once, on the first file
        for i, audio in enumerate(audios):  # the slot is free again: one by one, like any request
            if i not in results:
                results[i] = self.transcribe(key, audio, options, interactive=False)
        return [results[i] for i in range(len(audios))]

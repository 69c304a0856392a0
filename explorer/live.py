"""Live streaming on the server: audio arrives in chunks (a microphone in the Browser tab, or an
API client through ``/v1/live``) and the Python LocalAgreement-2 twin (``explorer.local_agreement``)
commits words as two passes agree, with any ready model (faster-whisper's word timestamps, or
transformers/ONNX segments with spread word times, see ``explorer.simulate``).

A pass holds a model slot (``ModelService``'s ``DeviceSlots``) only while it runs; audio pushed
while a pass runs is kept for the next one (all that arrived, as whisper_streaming's server does).
An API client's push runs the passes in its own call and answers with their result. The page's
microphone cannot wait: Gradio keeps only the newest chunk sent to a stream event while its handler
runs, so a handler that waited for a pass lost audio (1-2 s of a 10 s take, in 2 of 5 runs on
2 cores); its push returns at once and the passes run on a thread of the stream's own. Either way
no pass starts without new audio, so a client that leaves stops the stream's work after the pass
in flight; its stream is then closed by ``LIVE_STREAM_IDLE_SECONDS`` (or by the Gradio session
ending). Closing runs one last pass over audio that arrived after the previous one. Every stream
has a time limit (``LIVE_STREAM_MAX_SECONDS`` of audio) and there are at most ``MAX_LIVE_STREAMS``
open, at most ``MAX_LIVE_STREAMS_PER_SESSION`` per owner (a Gradio session, an API client's address).

Latency (``explorer.latency``): stream time 0 is the capture of the first sample, taken as the
arrival of the first chunk less its duration (a real-time client sends audio once captured);
each committed word's emission is the end of the pass that committed it, on the server's clock.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from explorer.audio import Audio, to_mono_16k
from explorer.latency import CommitEvent, StreamLatency, reference_alignment, stream_latency
from explorer.local_agreement import OnlineASRProcessor
from explorer.simulate import _join, hypothesis_from
from explorer.types import SAMPLE_RATE, TranscribeOptions

if TYPE_CHECKING:
    from explorer.config import Settings
    from explorer.service import ModelService


class LiveStreamError(ValueError):
    """A stream that cannot be opened or used (limits, unknown id, closed): a user-facing message."""


class TooManyStreams(LiveStreamError):
    """MAX_LIVE_STREAMS or MAX_LIVE_STREAMS_PER_SESSION reached: try again later."""


class NoSuchStream(LiveStreamError):
    """Closed, timed out, never opened, or another owner's."""


# Closed by the client or by the time limit: someone reads the final text, so the audio that came
# after the last pass is transcribed. Not when the client left (idle, session ended).
FINAL_PASS_REASONS = ("finished", "time limit")


@dataclass(frozen=True)
class LiveUpdate:
    stream_id: str
    committed: str  # all committed text so far: it only grows
    unconfirmed: str  # the latest hypothesis' tail, may still change
    audio_seconds: float  # audio received
    passes: int
    closed: bool = False
    latency: Optional[StreamLatency] = None  # on the final update
    reason: str = ""  # why it closed: "finished", "time limit", "idle", "session ended"

    def to_dict(self) -> dict:
        return asdict(self)


class LiveStream:
    """One client's stream: its audio buffer, LocalAgreement state and commit events."""

    def __init__(self, service: "ModelService", key: str, options: TranscribeOptions, min_chunk_seconds: float,
                 max_seconds: float, owner: str, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.id = secrets.token_urlsafe(16)
        self.service, self.key, self.owner = service, key, owner
        self.options = replace(options, word_timestamps=True)
        self.max_seconds = max_seconds
        self.clock = clock
        self.processor = OnlineASRProcessor(min_chunk_seconds)
        self.samples: list[np.ndarray] = []  # all audio received (the reference alignment at the end)
        self.received = 0
        self.passed = 0  # samples received when the last pass took its input
        self.start: Optional[float] = None  # clock reading of stream time 0
        self.last_seen = clock()
        self.events: list[CommitEvent] = []
        self.unconfirmed = ""
        self.passes = 0
        self.processing = 0.0
        self.closed: Optional[LiveUpdate] = None
        self.failed: Optional[Exception] = None  # a background pass's error, raised to the next push
        self._lock = threading.Lock()  # the buffers
        self._pass = threading.Lock()  # one pass at a time

    @property
    def audio_seconds(self) -> float:
        return self.received / SAMPLE_RATE

    @property
    def busy(self) -> bool:
        """A pass is running (in a push's call or on the stream's thread)."""
        return self._pass.locked()

    def update(self) -> LiveUpdate:
        return self.closed or LiveUpdate(self.id, _join(self.processor.committed), self.unconfirmed, self.audio_seconds, self.passes)

    def push(self, samples: np.ndarray, wait: bool = True) -> LiveUpdate:
        """Take 16 kHz mono float32 audio; run passes while a chunk of new audio is ready and no
        other call is running one. ``wait=False``: those passes run on a thread and the call returns
        at once with the latest state. Past the time limit the audio is refused (the stream ends)."""
        if self.closed:
            raise LiveStreamError(f"stream {self.id} is closed ({self.closed.reason})")
        if self.failed:  # a background pass failed: said once, to the next push
            failed, self.failed = self.failed, None
            raise failed
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            now = self.clock()
            self.last_seen = now
            if self.start is None and len(samples):
                self.start = now - len(samples) / SAMPLE_RATE
            room = max(0, round(self.max_seconds * SAMPLE_RATE) - self.received)
            over = len(samples) > room
            samples = samples[:room]
            self.samples.append(samples)
            self.received += len(samples)
            self.processor.insert_audio(samples)
        if self._pass.acquire(blocking=False):
            if wait:
                self._run_passes(background=False)
            else:
                threading.Thread(target=self._run_passes, args=(True,), name=f"live-{self.id[:6]}", daemon=True).start()
        if over:
            return self.close("time limit")
        return self.update()

    def _run_passes(self, background: bool) -> None:
        """While new audio is ready: a pass. Called holding ``_pass``, which it releases."""
        try:
            while self.processor.ready and not self.closed:
                self._run_pass()
        except Exception as exc:
            if not background:
                raise
            self.failed = exc
        finally:
            self._pass.release()

    def _run_pass(self) -> None:
        def transcribe(buffer, prompt: str):
            result = self.service.transcribe(
                self.key, Audio(np.frombuffer(buffer, dtype=np.float32)), replace(self.options, prompt=prompt or None)
            )
            return hypothesis_from(result.segments)

        t0 = self.clock()
        with self._lock:  # the processor takes the audio that has arrived; the copy runs unlocked
            buffer, prompt = self.processor.pass_input()
            self.passed = self.received
        hypothesis = transcribe(buffer, prompt)
        with self._lock:
            step = self.processor.apply_hypothesis(hypothesis)
            at = self.clock()
            self.processing += at - t0
            self.passes += 1
            self.events.extend(CommitEvent(at - self.start, w.end, w.text) for w in step.committed)
            self.unconfirmed = _join(step.unconfirmed)

    def close(self, reason: str = "finished", align: bool = False, reference_text: Optional[str] = None) -> LiveUpdate:
        """Make the unconfirmed tail final and report. ``align``: word latency against a reference
        alignment of the stream's audio (one offline pass of the largest ready model), else against
        the stream's own word times; ``reference_text``: the WER of the committed text."""
        if self.closed:
            return self.closed
        with self._pass:  # a pass in flight ends first
            if self.closed:
                return self.closed
            if reason in FINAL_PASS_REASONS and self.received > self.passed and not self.failed:
                try:
                    self._run_pass()  # the words said just before the end, heard once more
                except Exception:  # noqa: BLE001 - the text stays as the last pass left it; closing must not fail
                    pass
            with self._lock:
                agreed = tuple(self.processor.committed)
                tail = self.processor.finish().committed
                at = self.clock() - (self.start if self.start is not None else self.clock())
                self.events.extend(CommitEvent(at, w.end, w.text) for w in tail)
                text = _join(agreed + tail)
                audio = np.concatenate(self.samples) if self.samples else np.zeros(0, np.float32)
                self.samples = []
        alignment = None
        if align and len(audio) / SAMPLE_RATE >= 0.5:
            alignment = reference_alignment(self.service, Audio(audio), self.options.language)
        wer = None
        if reference_text is not None:
            from explorer.scoring import score

            wer = score(reference_text, text, self.options.language).wer
        latency = stream_latency(self.events, self.processing, self.audio_seconds, alignment, wer, self.options.language)
        self.closed = LiveUpdate(self.id, text, "", self.audio_seconds, self.passes, True, latency, reason)
        return self.closed


class LiveStreams:
    """The open streams, bounded overall and per owner; idle and finished ones are dropped."""

    def __init__(self, service: "ModelService", settings: "Settings", clock: Callable[[], float] = time.monotonic):
        self.service, self.settings, self.clock = service, settings, clock
        self._streams: dict[str, LiveStream] = {}
        self._lock = threading.Lock()

    def open(self, owner: str, key: str, options: TranscribeOptions, min_chunk_seconds: float = 1.0) -> LiveStream:
        if not 0.2 <= min_chunk_seconds <= 10:
            raise LiveStreamError("min_chunk must be between 0.2 and 10 seconds")
        _, options, _ = self.service.check(key, options)  # ModelError / ValueError before anything is held
        self.reap()
        with self._lock:
            if len(self._streams) >= self.settings.max_live_streams:
                raise TooManyStreams(f"{self.settings.max_live_streams} live streams are open (MAX_LIVE_STREAMS): try again later")
            mine = sum(s.owner == owner for s in self._streams.values())
            if mine >= self.settings.max_live_streams_per_session:
                raise TooManyStreams(
                    f"this session has {mine} live streams open (MAX_LIVE_STREAMS_PER_SESSION): close one first"
                )
            stream = LiveStream(self.service, key, options, min_chunk_seconds, self.settings.live_stream_max_seconds, owner, self.clock)
            self._streams[stream.id] = stream
        return stream

    def get(self, stream_id: str, owner: Optional[str] = None) -> LiveStream:
        """The open stream, if ``owner`` (when given) opened it; else LiveStreamError."""
        with self._lock:
            stream = self._streams.get(stream_id or "")
        if stream is None or (owner is not None and stream.owner != owner):
            raise NoSuchStream("no such live stream (closed, timed out or never opened)")
        return stream

    def close(self, stream_id: str, owner: Optional[str] = None, reason: str = "finished", **kwargs) -> LiveUpdate:
        stream = self.get(stream_id, owner)
        try:
            return stream.close(reason, **kwargs)
        finally:
            with self._lock:
                self._streams.pop(stream.id, None)

    def reap(self) -> int:
        """Close the streams idle over LIVE_STREAM_IDLE_SECONDS; returns how many."""
        now = self.clock()
        with self._lock:
            idle = [s for s in self._streams.values() if now - s.last_seen > self.settings.live_stream_idle_seconds]
            for s in idle:
                del self._streams[s.id]
        for s in idle:
            s.close("idle")
        return len(idle)

    def start_reaper(self) -> threading.Thread:
        """A daemon thread running ``reap`` four times per idle timeout."""

        def loop() -> None:
            while True:
                time.sleep(self.settings.live_stream_idle_seconds / 4)
                self.reap()

        thread = threading.Thread(target=loop, name="live-stream-reaper", daemon=True)
        thread.start()
        return thread

    def open_count(self) -> int:
        with self._lock:
            return len(self._streams)


def as_16k(sample_rate: int, samples: np.ndarray) -> np.ndarray:
    """A chunk as a client sends it (any rate, int or float, mono or frames × channels) as 16 kHz mono float32."""
    data = np.asarray(samples)
    if data.dtype.kind in "iu":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    mono, _ = to_mono_16k(data.astype(np.float32), int(sample_rate))
    return mono.astype(np.float32)

"""Server-side streaming: a file fed to LocalAgreement-2 as if it were arriving live.

The audio "arrives" at real-time pace from the moment the stream starts. Before each pass the
simulation waits until at least ``min_chunk_seconds`` of new audio exists, inserts all the audio
that has arrived by then (more than a chunk when the model is slower than real time, as in
whisper_streaming's simulation) and runs one ``OnlineASRProcessor.process_iter`` over the buffer.
After the last audio, ``finish`` makes the unconfirmed tail final.

Latency is measured as the browser's streaming tab measures it (``commit_latency`` over one event
per word committed by agreement: the commit time and the word's end in stream time; the tail made
final by ``finish`` is not an event), so the two can be compared on one clip.

``realtime=False`` never sleeps and takes exactly ``min_chunk_seconds`` per pass, so the passes
(and the text) do not depend on the machine's speed. Its times (steps, latencies) are on a
simulated timeline: a pass starts once its last sample has arrived and the previous pass has
ended, and lasts as long as the model call really took. With a model faster than real time this
is the real-time schedule; with a slower one, lag grows as a queue of chunks would, where a
real-time run instead takes all that arrived in one pass. ``wall_seconds`` is always the real time
the simulation took.

Word latency (``explorer.latency``): every committed word, the tail made final by ``finish``
included (emitted when the stream ends), is a ``CommitEvent``; the report's ``latency`` scores
them against a reference alignment when one is given, else against the stream's own word times.

Engines without word timestamps (transformers, ONNX) give Whisper segments with times: their words
get times spread over the segment by length (``word_times`` says "interpolated"), which is coarser
than faster-whisper's, so LocalAgreement's time filter is looser there.
"""

from __future__ import annotations

import math
import time
from array import array
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from explorer.audio import Audio
from explorer.latency import CommitEvent, ReferenceAlignment, StreamLatency, stream_latency
from explorer.local_agreement import Hypothesis, OnlineASRProcessor, commit_latency
from explorer.types import SAMPLE_RATE, Segment, TranscribeOptions, Word

if TYPE_CHECKING:
    from explorer.service import ModelService

__all__ = ["StreamReport", "StreamStepRecord", "simulate_stream", "stream_passes"]


@dataclass(frozen=True)
class StreamStepRecord:
    """One pass over the buffer (the last record is ``finish``, with no model call)."""

    time: float  # seconds from stream start to the end of this pass
    audio_seconds: float  # stream audio that had arrived and was inserted
    buffer_seconds: float  # audio the model transcribed in this pass
    committed: str  # all committed text so far
    unconfirmed: str  # the hypothesis' tail, not yet agreed on
    processing_seconds: float  # the model call


@dataclass(frozen=True)
class StreamReport:
    model: str
    options: TranscribeOptions
    realtime: bool  # False: waits were simulated, times are on the simulated timeline
    min_chunk_seconds: float
    trim_seconds: float
    text: str  # every committed word, the finished tail included
    words: tuple[Word, ...]  # stream times
    steps: tuple[StreamStepRecord, ...]
    first_commit_latency: Optional[float]  # stream start to the first commit, seconds
    mean_commit_lag: Optional[float]  # mean of commit time minus the word's end in the stream
    iterations: int  # model passes over the buffer
    trims: int  # times the buffer was cut at a segment end
    audio_seconds: float
    wall_seconds: float  # real time the whole simulation took
    processing_seconds: float  # sum of the model calls
    events: tuple[CommitEvent, ...] = ()  # one per committed word, the finished tail included
    latency: Optional[StreamLatency] = None  # word latency (explorer.latency), WER unset
    word_times: str = "engine"  # "engine" or "interpolated" (spread over segments by length)

    def to_dict(self) -> dict:
        return asdict(self)


def _join(words: Sequence[Word]) -> str:
    """Words as text: faster-whisper's carry their own leading space (and none inside a word,
    as in " ill" "-disposed"); words without any are joined with spaces."""
    if any(w.text[:1].isspace() for w in words):
        return "".join(w.text for w in words).strip()
    return " ".join(w.text.strip() for w in words)


def spread_words(segment: Segment) -> tuple[Word, ...]:
    """A segment's words with times spread over it in proportion to their length: for engines
    that time segments but not words."""
    texts = segment.text.split()
    total = sum(len(t) for t in texts)
    words, at = [], segment.start
    for text in texts:
        end = at + (segment.end - segment.start) * len(text) / total
        words.append(Word(at, end, " " + text))
        at = end
    return tuple(words)


def hypothesis_from(segments: Sequence[Segment]) -> Hypothesis:
    """An engine's segments (times relative to the buffer) as LocalAgreement's timed words;
    segments without words get them spread over their time."""
    words = [w for s in segments for w in (s.words or spread_words(s))]
    return Hypothesis(words, [s.end for s in segments])


def stream_passes(
    service: "ModelService",
    key: str,
    audio: Audio,
    options: TranscribeOptions = TranscribeOptions(),
    min_chunk_seconds: float = 1.0,
    trim_seconds: float = 15.0,
    realtime: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    tick_seconds: Optional[float] = None,
    reference: Optional[ReferenceAlignment] = None,
) -> Iterator[Union[StreamStepRecord, StreamReport, None]]:
    """Stream ``audio`` through ``key`` with LocalAgreement-2: yields each pass's record as it is
    made, then the report (whose last record, ``finish``, is yielded only there).

    Every model call runs inside a ``next()``, so whoever iterates owns the work: closing the
    generator stops the stream at once (no thread goes on without it). With ``tick_seconds``, a
    real-time wait for audio is cut into waits of at most that long, each followed by a ``None``,
    so that a consumer (a Gradio handler) can be closed between model calls within about a tick.

    The model is loaded before the stream starts, so no pass pays for the load. ``reference``:
    the file's reference alignment for the word latency (else the stream's own word times).
    """
    samples = np.asarray(audio.samples, dtype=np.float32).reshape(-1)
    total = len(samples)
    chunk = max(1, round(min_chunk_seconds * SAMPLE_RATE))
    ask = replace(options, word_timestamps=True)
    processor = OnlineASRProcessor(min_chunk_seconds, trim_seconds)
    service.preload(key)

    word_times = ["engine"]

    def transcribe(buffer: array, prompt: str) -> Hypothesis:
        result = service.transcribe(
            key, Audio(np.frombuffer(buffer, dtype=np.float32)), replace(ask, prompt=prompt or None), interactive=True
        )
        if any(s.text.strip() and not s.words for s in result.segments):
            word_times[0] = "interpolated"
        return hypothesis_from(result.segments)

    steps: list[StreamStepRecord] = []
    events: list[CommitEvent] = []  # both times from the stream's start
    processing = 0.0
    trims = 0
    taken = 0  # samples inserted so far
    skipped = 0.0  # waits not slept (realtime=False): the simulated timeline runs ahead of the clock
    start = clock()

    def now() -> float:
        return clock() - start + skipped

    while taken < total:
        due = min(taken + chunk, total)  # a chunk of new audio, or the end of the stream
        wait = due / SAMPLE_RATE - now()
        if wait > 0 and not realtime:
            skipped += wait
        while realtime and wait > 0:
            sleep(min(wait, tick_seconds or wait))
            wait = due / SAMPLE_RATE - now()
            if wait > 0 and tick_seconds:
                yield None
        # Real time: everything that has arrived, more than a chunk when the model fell behind.
        arrived = max(due, min(total, math.floor(now() * SAMPLE_RATE))) if realtime else due
        processor.insert_audio(samples[taken:arrived])
        taken = arrived
        buffer_seconds, offset = processor.buffer_seconds, processor.buffer_time_offset
        t0 = clock()
        step = processor.process_iter(transcribe)
        spent = clock() - t0
        processing += spent
        trims += processor.buffer_time_offset != offset
        at = now()
        events.extend(CommitEvent(at, w.end, w.text) for w in step.committed)
        record = StreamStepRecord(
            at, taken / SAMPLE_RATE, buffer_seconds, _join(processor.committed), _join(step.unconfirmed), spent
        )
        steps.append(record)
        yield record

    iterations = len(steps)
    agreed = len(events)
    agreed_words = tuple(processor.committed)
    tail = processor.finish().committed  # finish() also forgets the committed words
    words = agreed_words + tail
    text = _join(words)
    at = now()
    events.extend(CommitEvent(at, w.end, w.text) for w in tail)
    steps.append(StreamStepRecord(at, total / SAMPLE_RATE, 0.0, text, "", 0.0))
    latency = commit_latency([(e.emitted, e.word_end) for e in events[:agreed]], 0.0)
    yield StreamReport(
        model=key,
        options=ask,
        realtime=realtime,
        min_chunk_seconds=min_chunk_seconds,
        trim_seconds=trim_seconds,
        text=text,
        words=words,
        steps=tuple(steps),
        first_commit_latency=latency.first_commit_latency,
        mean_commit_lag=latency.mean_commit_lag,
        iterations=iterations,
        trims=trims,
        audio_seconds=total / SAMPLE_RATE,
        wall_seconds=clock() - start,
        processing_seconds=processing,
        events=tuple(events),
        latency=stream_latency(events, processing, total / SAMPLE_RATE, reference, language=options.language),
        word_times=word_times[0],
    )


def simulate_stream(
    service: "ModelService",
    key: str,
    audio: Audio,
    options: TranscribeOptions = TranscribeOptions(),
    min_chunk_seconds: float = 1.0,
    trim_seconds: float = 15.0,
    realtime: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_step: Optional[Callable[[StreamStepRecord], None]] = None,
    reference: Optional[ReferenceAlignment] = None,
) -> StreamReport:
    """``stream_passes`` run to its end; ``on_step`` sees each pass's record as it is made."""
    passes = stream_passes(service, key, audio, options, min_chunk_seconds, trim_seconds, realtime, clock, sleep, reference=reference)
    for item in passes:
        if isinstance(item, StreamReport):
            return item
        if on_step and item is not None:
            on_step(item)
    raise AssertionError("stream_passes ends with its report")

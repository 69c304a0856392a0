"""faster-whisper (CTranslate2): segment-level streaming from its lazy segment generator."""

from __future__ import annotations

from typing import Iterator, Sequence, Union

import numpy as np

from explorer.engines.base import LanguageInfo, Runtime
from explorer.types import SAMPLE_RATE, Emission, Segment, TranscribeOptions, Word


class FasterWhisperEngine:
    # faster-whisper's public API yields whole segments, so timing is per segment.
    emits = "segment"
    filters_non_speech = True  # its own Silero VAD, under vad_filter
    streams_beam_search = True  # segments come out of its generator as they are decoded, beams or not

    def __init__(self, model, english_only: bool, compute_type: str):
        self.model = model
        self.english_only = english_only
        self.compute_type = compute_type

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> Iterator[Union[Emission, LanguageInfo]]:
        segments, info = self.model.transcribe(
            audio,
            language="en" if self.english_only else options.language,
            task="transcribe" if self.english_only else options.task,
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps,
            vad_filter=options.vad_filter,
            # Each window decoded on its own: previous text as prompt is the main cause of
            # Whisper's repetition loops on long audio. An explicit prompt still conditions the
            # first window (all of a streaming buffer).
            condition_on_previous_text=False,
            initial_prompt=options.prompt or None,
        )
        yield LanguageInfo(info.language, info.language_probability)
        for s in segments:
            words = tuple(Word(w.start, w.end, w.word, w.probability) for w in (s.words or ()))
            yield Segment(s.start, s.end, s.text, words)

    # Files up to one 30 s decoder window can share one batched decoder call.
    batch_window_seconds = 30.0

    def can_batch(self, options: TranscribeOptions) -> bool:
        """A batch decodes with one language: it must be known (or the model English-only)."""
        return self.english_only or options.language is not None

    def transcribe_batch(self, audios: Sequence[np.ndarray], options: TranscribeOptions) -> list[list[Segment]]:
        """Several short files in one batched generate call (cross-file batching).

        The files are laid end to end and each one is named as a clip, so BatchedInferencePipeline
        computes their features separately and decodes them as one batch; its `seek` (the clip's
        start in frames) says which file a segment belongs to. Each file is decoded whole, as one
        window: callers pass only files of at most `batch_window_seconds`.
        """
        from faster_whisper import BatchedInferencePipeline

        starts = np.cumsum([0] + [len(a) for a in audios[:-1]])
        clips = [{"start": s / SAMPLE_RATE, "end": (s + len(a)) / SAMPLE_RATE} for s, a in zip(starts, audios)]
        segments, _ = BatchedInferencePipeline(self.model).transcribe(
            np.concatenate(audios),
            language="en" if self.english_only else options.language,
            task="transcribe" if self.english_only else options.task,
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps,
            vad_filter=False,
            clip_timestamps=clips,
            initial_prompt=options.prompt or None,
            batch_size=len(audios),
            without_timestamps=False,
        )
        # The same arithmetic as faster-whisper's seek: seconds -> samples -> seconds -> frames.
        fps = self.model.frames_per_second
        index = {int(int(c["start"] * SAMPLE_RATE) / SAMPLE_RATE * fps): i for i, c in enumerate(clips)}
        out: list[list[Segment]] = [[] for _ in audios]
        for s in segments:
            i = index[s.seek]
            offset = clips[i]["start"]
            words = tuple(Word(w.start - offset, w.end - offset, w.word, w.probability) for w in (s.words or ()))
            out[i].append(Segment(s.start - offset, s.end - offset, s.text, words))
        return out

    def close(self) -> None:
        del self.model


def load(spec, weights: str, runtime: Runtime) -> FasterWhisperEngine:
    from faster_whisper import WhisperModel

    compute_type = runtime.compute_type or ("float16" if runtime.device == "cuda" else "int8")
    # cpu_threads given explicitly: left at 0, CTranslate2 takes OMP_NUM_THREADS (which Ray sets
    # to an actor's CPU count), and its words can change with the thread count.
    model = WhisperModel(weights, device=runtime.device, compute_type=compute_type, cpu_threads=runtime.cpu_threads)
    return FasterWhisperEngine(model, english_only=not spec.multilingual, compute_type=compute_type)

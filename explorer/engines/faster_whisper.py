"""faster-whisper (CTranslate2): segment-level streaming from its lazy segment generator."""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Union

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

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        options: TranscribeOptions,
        step_files: int = 0,
        between_steps: Optional[Callable[[], None]] = None,
    ) -> list[list[Segment]]:
        """Several short files in one batched generate call (cross-file batching).

        The files are laid end to end and each one is named as a clip, so BatchedInferencePipeline
        computes their features separately and decodes them as one batch; its `seek` (the clip's
        start in frames) says which file a segment belongs to. Each file is decoded whole, as one
        window: callers pass only files of at most `batch_window_seconds`.

        With `step_files` > 0 the call runs in steps, calling `between_steps` before each: on CPU
        every file is encoded alone (one step each: batching gains nothing there, the encoder's
        cost grows with the files), and the files are decoded `step_files` at a time (one step per
        group: the decoder is where batching pays). Every file is padded to one 30 s window either
        way, so each file's words are those of the one-call batch.
        """
        from faster_whisper import BatchedInferencePipeline

        starts = np.cumsum([0] + [len(a) for a in audios[:-1]])
        clips = [{"start": s / SAMPLE_RATE, "end": (s + len(a)) / SAMPLE_RATE} for s, a in zip(starts, audios)]
        model = _SteppedEncoder(self.model, between_steps) if step_files > 0 and between_steps else self.model
        segments, _ = BatchedInferencePipeline(model).transcribe(
            np.concatenate(audios),
            language="en" if self.english_only else options.language,
            task="transcribe" if self.english_only else options.task,
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps,
            vad_filter=False,
            clip_timestamps=clips,
            initial_prompt=options.prompt or None,
            batch_size=step_files if step_files > 0 else len(audios),
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


class _SteppedEncoder:
    """A WhisperModel for BatchedInferencePipeline whose encode() calls `between_steps` before
    each model step: before each file's encoding on CPU (the encoder outputs are then joined into
    the group's), or once before the whole group's on a GPU (where batching the encoder pays), and
    before the group's decoding. Everything else is the model's own."""

    def __init__(self, model, between_steps: Callable[[], None]):
        self._model = model
        self._between_steps = between_steps

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def encode(self, features: np.ndarray):
        import ctranslate2

        if self._model.model.device != "cpu":
            self._between_steps()
            encoded = self._model.encode(features)
        else:
            parts = []
            for one in features:
                self._between_steps()
                parts.append(np.asarray(self._model.encode(one)))
            encoded = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))
        self._between_steps()  # the group's decoding, which follows, is a step of its own
        return encoded


def load(spec, weights: str, runtime: Runtime) -> FasterWhisperEngine:
    from faster_whisper import WhisperModel

    compute_type = runtime.compute_type or ("float16" if runtime.device == "cuda" else "int8")
    # cpu_threads given explicitly: left at 0, CTranslate2 takes OMP_NUM_THREADS (which Ray sets
    # to an actor's CPU count), and its words can change with the thread count.
    model = WhisperModel(weights, device=runtime.device, compute_type=compute_type, cpu_threads=runtime.cpu_threads)
    return FasterWhisperEngine(model, english_only=not spec.multilingual, compute_type=compute_type)

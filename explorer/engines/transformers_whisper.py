"""Whisper through Hugging Face transformers, with real token streaming.

``model.generate`` runs in a background thread (``streaming.GenerationThread``); each token is
decoded and yielded as a ``Token`` as soon as the streamer receives it. Generation always asks for
timestamps (``return_timestamps=True``), so once it ends the engine yields Whisper's own segments
with their times. Audio longer than 30 s goes through transformers' sequential long-form decoding.

Which streamed tokens are kept. Long-form decoding (and short-form decoding with timestamps)
cuts each 30-second window after its last *completed* segment: a segment that was still open when
the window ended is thrown away and decoded again from its start in the next window. Tokens of the
first segment of a window are always kept, so they are yielded at once; tokens of a later segment
are held until the timestamp that closes it arrives (then yielded), and dropped if the window ends
first. The yielded tokens are therefore exactly the text of the final segments.

Options: ``language`` (None: detected from the first 30 s on multilingual models; English-only
models ignore it), ``task`` (transcribe/translate, multilingual models only), ``beam_size``
(transformers cannot stream beam search: with ``beam_size > 1`` generation runs without a
streamer and the tokens are yielded only when it ends — honest timing, not fake streaming).
``word_timestamps`` is ignored: transformers' token timestamps need cross-attention DTW in eager
attention; segments carry no words. ``vad_filter`` does not apply. ``prompt`` becomes
``prompt_ids`` (Whisper's previous-text prompt, on the first window of long-form audio): the
streamer's first ids of a window are then the prompt and the start tokens, which ``_WindowFilter``
skips, and the returned sequences and segments hold only the generated tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional, Union

import numpy as np

from explorer.engines.base import LanguageInfo, Runtime
from explorer.engines.streaming import (
    GenerationControl,
    GenerationThread,
    IncrementalDecoder,
    clamp_span,
    free_memory,
    set_torch_threads,
    torch_device_dtype,
    torch_dtype_name,
)
from explorer.types import SAMPLE_RATE, Emission, Segment, Token, TranscribeOptions

if TYPE_CHECKING:
    from explorer.catalog import ModelSpec

WINDOW_FRAMES = 3000  # log-mel frames in Whisper's 30-second window
MAX_STALLED_WINDOWS = 2  # long-form windows in a row that do not advance before giving up


def load(spec: "ModelSpec", weights: str, runtime: Runtime) -> "WhisperEngine":
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    set_torch_threads(runtime.cpu_threads)
    device, dtype = torch_device_dtype(runtime.device, "float16")
    processor = AutoProcessor.from_pretrained(weights, token=runtime.token)
    model = AutoModelForSpeechSeq2Seq.from_pretrained(weights, token=runtime.token, dtype=dtype)
    model.to(device).eval()
    return WhisperEngine(spec, model, processor, device)


def _complete_generation_config(model, tokenizer, multilingual: bool) -> None:
    """Fill what Whisper's generate needs from the tokenizer when the checkpoint's
    generation_config lacks it (checkpoints rebuilt offline often do)."""
    from explorer.catalog import WHISPER_LANGUAGES

    gc = model.generation_config
    vocab = tokenizer.get_vocab()
    if getattr(gc, "no_timestamps_token_id", None) is None and "<|notimestamps|>" in vocab:
        gc.no_timestamps_token_id = vocab["<|notimestamps|>"]
    if not multilingual:
        gc.is_multilingual = False
        return
    if not getattr(gc, "lang_to_id", None):
        lang_to_id = {f"<|{c}|>": vocab[f"<|{c}|>"] for c in WHISPER_LANGUAGES if f"<|{c}|>" in vocab}
        tasks = {t: vocab.get(f"<|{t}|>") for t in ("transcribe", "translate")}
        if lang_to_id and None not in tasks.values():
            gc.lang_to_id = lang_to_id
            gc.task_to_id = tasks
            gc.is_multilingual = True


class WhisperEngine:
    emits = "token"
    filters_non_speech = False
    streams_beam_search = False  # beam search runs without a streamer: its tokens come at the end

    def __init__(self, spec: "ModelSpec", model, processor, device: str, compute_type: Optional[str] = None) -> None:
        self.spec = spec
        self.compute_type = compute_type or torch_dtype_name(model)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = device
        self.multilingual = spec.multilingual
        _complete_generation_config(model, self.tokenizer, self.multilingual)
        gc = model.generation_config
        if getattr(gc, "no_timestamps_token_id", None) is None:
            raise RuntimeError(
                f"{spec.key}: the generation config has no no_timestamps_token_id and the tokenizer "
                "no <|notimestamps|> token, so Whisper timestamps (and long-form audio) cannot work"
            )
        self.timestamp_begin = gc.no_timestamps_token_id + 1
        self.special_ids = special_token_ids(self.tokenizer)
        self.lang_to_id: dict[str, int] = dict(getattr(gc, "lang_to_id", None) or {}) if self.multilingual else {}

    # -- helpers -------------------------------------------------------------------------------

    def _decode(self, ids: list[int]) -> str:
        ids = [i for i in ids if i < self.timestamp_begin]
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _features(self, audio: np.ndarray):
        fe = self.processor.feature_extractor
        kwargs = dict(sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        if len(audio) > fe.n_samples:  # long form: keep every frame (no 30 s truncation)
            kwargs.update(truncation=False, padding="longest")
        inputs = fe(audio, **kwargs)
        features = inputs["input_features"].to(self.device, dtype=self.model.dtype)
        return features, inputs["attention_mask"].to(self.device)

    def _detect_language(self, features) -> Optional[LanguageInfo]:
        """Whisper's language detection on the first 30 s (what generate itself would run)."""
        import torch

        if not self.lang_to_id:
            return None
        start = torch.tensor([[self.model.generation_config.decoder_start_token_id]], device=self.device)
        with torch.inference_mode():
            logits = self.model(
                input_features=features[:, :, :WINDOW_FRAMES], decoder_input_ids=start, use_cache=False
            ).logits[0, -1]
        tokens = list(self.lang_to_id)
        ids = torch.tensor([self.lang_to_id[t] for t in tokens], device=logits.device)
        probs = logits[ids].float().softmax(-1)
        best = int(probs.argmax())
        return LanguageInfo(tokens[best].strip("<|>"), float(probs[best]))

    # -- the engine ----------------------------------------------------------------------------

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> Iterator[Union[Emission, LanguageInfo]]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        duration = len(audio) / SAMPLE_RATE
        if len(audio) == 0:
            return
        features, attention_mask = self._features(audio)

        kwargs: dict = dict(
            input_features=features, attention_mask=attention_mask, return_timestamps=True, return_segments=True
        )
        if self.multilingual and self.lang_to_id:
            language = options.language
            if language is None:
                info = self._detect_language(features)
                if info is not None:
                    language = info.code
                    yield info
            elif f"<|{language}|>" in self.lang_to_id:
                yield LanguageInfo(language)
            else:
                raise ValueError(f"{self.spec.name} does not know language {language!r}")
            kwargs.update(language=language, task=options.task)
        elif not self.multilingual:
            yield LanguageInfo(self.spec.languages[0])
        if options.prompt:
            kwargs["prompt_ids"] = self.processor.get_prompt_ids(options.prompt, return_tensors="pt").to(self.device)
        stream = options.beam_size == 1
        if not stream:
            kwargs["num_beams"] = options.beam_size

        def run(control: GenerationControl):
            stalled = {"seek": -1, "count": 0}

            def progress(p_batch) -> None:  # called once per 30 s window
                control.raise_if_cancelled()
                seek = int(p_batch[0, 0])
                stalled["count"] = stalled["count"] + 1 if seek <= stalled["seek"] else 0
                stalled["seek"] = max(seek, stalled["seek"])
                if stalled["count"] >= MAX_STALLED_WINDOWS:
                    raise RuntimeError(f"Whisper long-form decoding stopped advancing at {seek / 100:.2f} s")

            return self.model.generate(
                **kwargs,
                streamer=control.streamer,
                stopping_criteria=control.stopping_criteria,
                monitor_progress=progress,
            )

        decoder = IncrementalDecoder(self._decode)
        with GenerationThread(run, stream_tokens=stream) as generation:
            window = _WindowFilter(self.timestamp_begin, self.special_ids)
            for event in generation:
                for ids in window.feed(event):
                    for token_id in ids:
                        piece = decoder.add([token_id])
                        if piece:
                            yield Token(piece)
            output = generation.result

        segments = self._segments(output, duration)
        if not stream:  # beam search: the tokens exist only now
            for segment_ids in segments_ids(output, self.timestamp_begin, self.special_ids):
                for token_id in segment_ids:
                    piece = decoder.add([token_id])
                    if piece:
                        yield Token(piece)
        tail = decoder.flush()
        if tail:
            yield Token(tail)
        yield from segments

    def _segments(self, output, duration: float) -> list[Segment]:
        found = []
        for seg in output["segments"][0] if isinstance(output, dict) else []:
            text = self._decode([int(i) for i in seg["tokens"]])
            start, end = clamp_span(float(seg["start"]), float(seg["end"]), duration)
            found.append(Segment(start, end, text))
        if not found:
            sequences = output["sequences"] if isinstance(output, dict) else output
            text = self._decode([int(i) for i in sequences[0]])
            found.append(Segment(0.0, duration, text))
        return found

    def close(self) -> None:
        self.model = None
        self.processor = None
        self.tokenizer = None
        free_memory(self.device)


def special_token_ids(tokenizer) -> set[int]:
    """Ids of every special token (control tokens such as <|en|> are flagged special in the vocab)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
    return ids


def segments_ids(output, timestamp_begin: int, special_ids: set[int]) -> list[list[int]]:
    """The text token ids of each final segment (no timestamps, no special tokens)."""
    if not isinstance(output, dict):
        rows = [output[0].tolist()]
    else:
        rows = [seg["tokens"].tolist() for seg in output["segments"][0]] or [output["sequences"][0].tolist()]
    return [[i for i in row if i < timestamp_begin and i not in special_ids] for row in rows]


class _WindowFilter:
    """Decides which streamed ids are final, mirroring how transformers cuts each window.

    In a window, ``<|t1|> text <|t2|><|t3|> text <|t4|> ...``: a pair of consecutive timestamps
    separates segments. The first segment is always kept; a later segment is kept once a timestamp
    closes it, and dropped (to be decoded again) if the window ends while it is open.
    """

    def __init__(self, timestamp_begin: int, special_ids: set[int]) -> None:
        self.timestamp_begin = timestamp_begin
        self.special_ids = special_ids
        self._reset()

    def _reset(self) -> None:
        self.first_segment = True
        self.previous_was_timestamp = False
        self.pending: list[int] = []

    def feed(self, event) -> Iterator[list[int]]:
        if event.kind == "prompt":
            self._reset()
            return
        if event.kind == "call_end":
            self.pending = []  # an open segment: transformers decodes it again in the next window
            return
        for token_id in event.ids:
            if token_id >= self.timestamp_begin:
                if self.previous_was_timestamp:
                    self.first_segment = False  # a pair: a new segment starts
                elif self.pending:
                    yield self.pending  # this timestamp closes a held segment: it is final
                    self.pending = []
                self.previous_was_timestamp = True
                continue
            self.previous_was_timestamp = False
            if token_id in self.special_ids:
                continue
            if self.first_segment:
                yield [token_id]
            else:
                self.pending.append(token_id)

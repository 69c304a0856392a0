"""Qwen3-ASR through the ``qwen-asr`` package (transformers backend), streaming tokens.

``Qwen3ASRModel.from_pretrained`` loads the model and processor exactly as the package does.
Its ``transcribe()`` is a batch call, but on the transformers backend it ends in a plain
``model.generate`` that forwards ``streamer``/``stopping_criteria`` to the underlying decoder, so
this engine makes that call itself with ``streaming.GenerationThread`` and yields real tokens.
It reuses the package's pieces so the result matches ``transcribe()``: its audio normalisation,
its prompt, its split of long audio at quiet points (chunks of up to 20 min, one ``Segment``
each, joined without separator as the package does) and its output parser.

Output format: unless the language is forced, the model first writes ``language English<asr_text>``
then the transcript. That header is held back (never yielded as text), turned into a
``LanguageInfo``, and the text after it is streamed.

Options: ``language`` is an ISO code (``catalog.QWEN_LANGUAGES``) mapped to the package's English
names; None lets the model detect it. ``task="translate"`` is refused (Qwen3-ASR transcribes).
``beam_size > 1`` runs without a streamer (transformers cannot stream beam search): the tokens
are yielded when generation ends. ``word_timestamps`` is ignored (it needs the separate
Qwen3-ForcedAligner model); ``vad_filter`` does not apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional, Union

import numpy as np

from explorer.engines.base import LanguageInfo, Runtime
from explorer.engines.streaming import (
    GenerationControl,
    GenerationThread,
    IncrementalDecoder,
    free_memory,
    set_torch_threads,
    torch_device_dtype,
    torch_dtype_name,
)
from explorer.types import SAMPLE_RATE, Emission, Segment, Token, TranscribeOptions

if TYPE_CHECKING:
    from explorer.catalog import ModelSpec

# ISO code (catalog.QWEN_LANGUAGES) -> the name qwen-asr uses (qwen_asr SUPPORTED_LANGUAGES).
CODE_TO_NAME = {
    "zh": "Chinese",
    "en": "English",
    "yue": "Cantonese",
    "ar": "Arabic",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "pt": "Portuguese",
    "id": "Indonesian",
    "it": "Italian",
    "ko": "Korean",
    "ru": "Russian",
    "th": "Thai",
    "vi": "Vietnamese",
    "ja": "Japanese",
    "tr": "Turkish",
    "hi": "Hindi",
    "ms": "Malay",
    "nl": "Dutch",
    "sv": "Swedish",
    "da": "Danish",
    "fi": "Finnish",
    "pl": "Polish",
    "cs": "Czech",
    "fil": "Filipino",
    "fa": "Persian",
    "el": "Greek",
    "hu": "Hungarian",
    "mk": "Macedonian",
    "ro": "Romanian",
}
NAME_TO_CODE = {name: code for code, name in CODE_TO_NAME.items()}

ASR_TEXT_TAG = "<asr_text>"
MIN_NEW_TOKENS = 64
NEW_TOKENS_PER_SECOND = 10  # generous: fast speech is ~4 tokens/s; bounds runaway repetition


def language_name(code: str) -> str:
    """The qwen-asr name for an ISO code (ValueError for a language Qwen3-ASR does not know)."""
    try:
        return CODE_TO_NAME[code.lower()]
    except KeyError:
        raise ValueError(
            f"Qwen3-ASR does not support language {code!r}; supported: {', '.join(CODE_TO_NAME)}"
        ) from None


def language_code(name: str) -> Optional[str]:
    """The ISO code for a language name the model wrote (None if unknown or empty)."""
    name = name.strip()
    return NAME_TO_CODE.get(name[:1].upper() + name[1:].lower()) if name else None


def load(spec: "ModelSpec", weights: str, runtime: Runtime) -> "QwenEngine":
    from qwen_asr import Qwen3ASRModel

    set_torch_threads(runtime.cpu_threads)
    device, dtype = torch_device_dtype(runtime.device, "bfloat16")
    kwargs: dict = {"dtype": dtype, "token": runtime.token}
    if device == "cuda":
        kwargs["device_map"] = "cuda"
    asr = Qwen3ASRModel.from_pretrained(weights, max_inference_batch_size=1, **kwargs)
    asr.model.eval()
    return QwenEngine(spec, asr, device)


class _HeaderAndText:
    """Splits the streamed output into the ``language X<asr_text>`` header and the text pieces."""

    def __init__(self, decode, parse, forced_language: bool) -> None:
        self.decoder = IncrementalDecoder(decode)
        self.parse = parse  # qwen_asr's parse_asr_output
        self.in_text = forced_language  # a forced language puts the header in the prompt
        self.text_start = 0
        self.streamed = ""
        self.language: Optional[str] = None  # the name the model wrote, once its header is complete

    def add(self, ids) -> str:
        self.decoder.add(ids)
        full = self.decoder.text
        if not self.in_text:
            tag = full.find(ASR_TEXT_TAG)
            if tag < 0:
                return ""
            self.in_text = True
            self.text_start = tag + len(ASR_TEXT_TAG)
            self.language = self.parse(full[:tag] + ASR_TEXT_TAG)[0]
        return self._new_text(full)

    def finish(self) -> str:
        """Text still held back at the end (an incomplete character)."""
        self.decoder.flush()
        return self._new_text(self.decoder.text) if self.in_text else ""

    def _new_text(self, full: str) -> str:
        new = full[self.text_start + len(self.streamed) :]
        self.streamed += new
        return new


class QwenEngine:
    emits = "token"
    filters_non_speech = False
    streams_beam_search = False  # beam search runs without a streamer: its tokens come at the end

    def __init__(self, spec: "ModelSpec", asr, device: str) -> None:
        self.spec = spec
        self.compute_type = torch_dtype_name(asr.model)
        self.asr = asr
        self.device = device

    def _decode(self, ids: list[int]) -> str:
        return self.asr.processor.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> Iterator[Union[Emission, LanguageInfo]]:
        from qwen_asr.inference.utils import (
            MAX_ASR_INPUT_SECONDS,
            normalize_audios,
            parse_asr_output,
            split_audio_into_chunks,
        )

        if options.task != "transcribe":
            raise ValueError(f"{self.spec.name} only transcribes (task={options.task!r} is not supported)")
        forced = language_name(options.language) if options.language else None
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(audio) == 0:
            return
        wav = normalize_audios((audio, SAMPLE_RATE))[0]
        duration = len(wav) / SAMPLE_RATE
        language_sent = False
        if forced:
            yield LanguageInfo(options.language.lower())
            language_sent = True
        # the package's own prompt (system context + audio turn, plus the forced-language header)
        prompt = self.asr._build_text_prompt(context="", force_language=forced)
        model, processor = self.asr.model, self.asr.processor
        stream = options.beam_size == 1

        for chunk, offset in split_audio_into_chunks(wav, SAMPLE_RATE, MAX_ASR_INPUT_SECONDS):
            seconds = len(chunk) / SAMPLE_RATE
            inputs = processor(text=[prompt], audio=[chunk], return_tensors="pt", padding=True)
            inputs = inputs.to(model.device).to(model.dtype)
            prompt_len = inputs["input_ids"].shape[1]
            kwargs = dict(inputs, max_new_tokens=MIN_NEW_TOKENS + int(seconds * NEW_TOKENS_PER_SECOND))
            if not stream:
                kwargs["num_beams"] = options.beam_size

            def run(control: GenerationControl, kwargs=kwargs):
                return model.generate(**kwargs, streamer=control.streamer, stopping_criteria=control.stopping_criteria)

            parts = _HeaderAndText(self._decode, parse_asr_output, forced_language=forced is not None)
            with GenerationThread(run, stream_tokens=stream) as generation:
                for event in generation:
                    if event.kind != "tokens":
                        continue
                    piece = parts.add(event.ids)
                    if not language_sent and parts.language:
                        code = language_code(parts.language)
                        if code:
                            yield LanguageInfo(code)
                            language_sent = True
                    if piece:
                        yield Token(piece)
                output = generation.result

            new_ids = output.sequences[0, prompt_len:].tolist()
            language, text = parse_asr_output(self._decode(new_ids), user_language=forced)
            if not language_sent and language_code(language or ""):
                yield LanguageInfo(language_code(language))
                language_sent = True
            if not stream:  # beam search: the tokens exist only now
                for token_id in new_ids:
                    piece = parts.add([token_id])
                    if piece:
                        yield Token(piece)
            tail = parts.finish()
            if tail:
                yield Token(tail)
            if not parts.in_text and text:  # the model wrote no header: nothing was streamed
                yield Token(text)
            yield Segment(offset, min(offset + seconds, duration), text)

    def close(self) -> None:
        self.asr = None
        free_memory(self.device)

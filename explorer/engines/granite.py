"""IBM Granite speech (``ibm-granite/granite-4.0-1b-speech``) through transformers, streaming tokens.

The model is a speech-aware LLM: the audio goes in through the chat template's ``<|audio|>``
placeholder with the model card's transcription instruction, and the answer is the transcript.
Tokens are streamed from ``generate`` with ``streaming.GenerationThread`` (with ``beam_size > 1``
there is no streamer in transformers, so tokens come only when generation ends).

Granite gives no timestamps. Audio up to ``MAX_CHUNK_SECONDS`` is one ``Segment`` [0, duration];
longer audio is cut at the quietest point near every ``MAX_CHUNK_SECONDS`` (an LLM context cannot
hold an hour of audio embeddings) and each chunk becomes one ``Segment`` with its true bounds,
yielded when the chunk is done.

Options: the model recognises the spoken language itself, so ``language`` is not used and no
``LanguageInfo`` is emitted; ``task="translate"`` is refused (the explorer only transcribes with
Granite); ``word_timestamps`` and ``vad_filter`` do not apply.

Granite's feature extractor (transformers) computes its mel spectrogram with torchaudio; where no
working torchaudio is installed (none installs beside the pinned torch), ``granite_features``
gives it the same transform built on torch, so Granite runs with or without torchaudio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Union

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

# The instruction from the model card: a user turn holding the audio placeholder.
TRANSCRIBE_PROMPT = "<|audio|>can you transcribe the speech into a written format?"
MAX_CHUNK_SECONDS = 30.0
SPLIT_SEARCH_SECONDS = 5.0  # look this far back from a chunk's end for the quietest moment
MIN_NEW_TOKENS = 64
NEW_TOKENS_PER_SECOND = 10  # generous: fast speech is ~4 tokens/s; bounds runaway repetition


def load(spec: "ModelSpec", weights: str, runtime: Runtime) -> "GraniteEngine":
    import importlib.util

    from transformers import AutoProcessor, GraniteSpeechForConditionalGeneration

    from explorer.engines import granite_features

    set_torch_threads(runtime.cpu_threads)
    device, dtype = torch_device_dtype(runtime.device, "bfloat16")
    granite_features.install()  # before the processor: its feature extractor needs a mel backend
    processor = AutoProcessor.from_pretrained(weights, token=runtime.token)
    model = GraniteSpeechForConditionalGeneration.from_pretrained(weights, token=runtime.token, dtype=dtype)
    if getattr(model.config, "has_lora_adapter", False) and importlib.util.find_spec("peft") is None:
        raise RuntimeError(f"{spec.key} has a LoRA speech adapter, which needs the peft package")
    model.to(device).eval()
    return GraniteEngine(spec, model, processor, device)


def split_points(audio: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) sample ranges of at most ``MAX_CHUNK_SECONDS`` each, cut at the quietest
    100 ms within the last ``SPLIT_SEARCH_SECONDS`` (at most a third) of every chunk so that
    words are rarely cut."""
    total = len(audio)
    max_len = int(MAX_CHUNK_SECONDS * SAMPLE_RATE)
    window = SAMPLE_RATE // 10
    search = int(min(SPLIT_SEARCH_SECONDS, MAX_CHUNK_SECONDS / 3) * SAMPLE_RATE)
    ranges, start = [], 0
    while total - start > max_len:
        end = start + max_len
        region = np.abs(audio[max(start + 1, end - search) : end])
        if len(region) > window:
            energy = np.convolve(region, np.ones(window, dtype=np.float32), mode="valid")
            end = end - len(region) + int(np.argmin(energy)) + window // 2
        ranges.append((start, end))
        start = end
    ranges.append((start, total))
    return ranges


class GraniteEngine:
    emits = "token"
    filters_non_speech = False
    streams_beam_search = False  # beam search runs without a streamer: its tokens come at the end

    def __init__(self, spec: "ModelSpec", model, processor, device: str) -> None:
        self.spec = spec
        self.compute_type = torch_dtype_name(model)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = device
        chat = [{"role": "user", "content": TRANSCRIBE_PROMPT}]
        self.prompt = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> Iterator[Union[Emission, LanguageInfo]]:
        import torch

        if options.task != "transcribe":
            raise ValueError(f"{self.spec.name} only transcribes here (task={options.task!r} is not supported)")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(audio) == 0:
            return
        stream = options.beam_size == 1
        for index, (start, end) in enumerate(split_points(audio)):
            chunk = audio[start:end]
            seconds = len(chunk) / SAMPLE_RATE
            inputs = self.processor(
                self.prompt, torch.from_numpy(chunk).unsqueeze(0), device=self.device, return_tensors="pt"
            ).to(self.device)
            kwargs = dict(
                inputs,
                max_new_tokens=max(MIN_NEW_TOKENS, int(seconds * NEW_TOKENS_PER_SECOND)),
                do_sample=False,
                num_beams=options.beam_size,
            )

            def run(control: GenerationControl, kwargs=kwargs):
                return self.model.generate(
                    **kwargs, streamer=control.streamer, stopping_criteria=control.stopping_criteria
                )

            # Chunks after the first are joined with a space (the model writes no leading one).
            separator = " " if index else ""
            decoder = IncrementalDecoder(self._decode)
            with GenerationThread(run, stream_tokens=stream) as generation:
                for event in generation:
                    if event.kind == "tokens":
                        piece = decoder.add(event.ids)
                        if piece:
                            yield Token(separator + piece)
                            separator = ""
                output = generation.result
            if not stream:  # beam search: the tokens exist only now
                for token_id in output[0, inputs["input_ids"].shape[1] :].tolist():
                    piece = decoder.add([token_id])
                    if piece:
                        yield Token(separator + piece)
                        separator = ""
            tail = decoder.flush()
            if tail:
                yield Token(separator + tail)
            text = self._decode(output[0, inputs["input_ids"].shape[1] :].tolist())
            yield Segment(start / SAMPLE_RATE, end / SAMPLE_RATE, (" " if index and text else "") + text)

    def close(self) -> None:
        self.model = None
        self.processor = None
        self.tokenizer = None
        free_memory(self.device)

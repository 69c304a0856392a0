"""Token streaming (and small helpers) shared by the transformers-based engines.

``GenerationThread`` runs one Hugging Face ``generate`` call in a background thread and hands its
tokens to the consumer as they are produced, through a ``BaseStreamer`` that pushes token ids to a
``queue.Queue``. An exception raised in the thread is re-raised in the consumer; leaving the
``with`` block early (a closed or abandoned generator) sets a flag that a stopping criterion and the
streamer both check, so the thread ends within one decoding step and is joined.

``IncrementalDecoder`` turns the growing list of token ids into text pieces: it decodes the running
ids and returns only the new suffix, holding back a trailing incomplete UTF-8 character.

transformers is imported lazily (inside functions), so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Optional, Sequence

log = logging.getLogger(__name__)

THREAD_NAME = "explorer-generate"
JOIN_TIMEOUT_S = 60.0  # one decoding step (or encoder pass) is far shorter; this only guards hangs
_REPLACEMENT_CHAR = "\ufffd"


class GenerationCancelled(Exception):
    """Raised inside the generation thread to abort ``generate`` once the consumer has gone."""


@dataclass(frozen=True)
class GenerationEvent:
    """What the streamer saw, in order.

    ``prompt``: the ids a ``generate`` call starts from (its decoder prompt / input ids);
    ``tokens``: newly generated ids; ``call_end``: that ``generate`` call finished. Whisper's
    long-form decoding makes one ``generate`` call per 30-second window, so these repeat.
    """

    kind: Literal["prompt", "tokens", "call_end"]
    ids: tuple[int, ...] = ()


@functools.cache
def _transformers_classes() -> tuple[type, type]:
    """The streamer and stopping-criterion classes, built on first use (imports transformers)."""
    import torch
    from transformers.generation.stopping_criteria import StoppingCriteria
    from transformers.generation.streamers import BaseStreamer

    class QueueStreamer(BaseStreamer):
        """Pushes token ids to a queue; the first ``put`` after start or ``end`` is the prompt."""

        def __init__(self, events: "queue.Queue", cancelled: threading.Event) -> None:
            self.events = events
            self.cancelled = cancelled
            self.next_is_prompt = True

        def put(self, value) -> None:
            if self.cancelled.is_set():
                raise GenerationCancelled()
            if value.dim() > 1:
                if value.shape[0] != 1:
                    raise ValueError("token streaming supports a batch of one sequence only")
                value = value[0]
            kind = "prompt" if self.next_is_prompt else "tokens"
            self.next_is_prompt = False
            self.events.put(("event", GenerationEvent(kind, tuple(int(i) for i in value.tolist()))))

        def end(self) -> None:
            self.next_is_prompt = True
            self.events.put(("event", GenerationEvent("call_end")))

    class CancelCriterion(StoppingCriteria):
        """Stops every sequence at the next step once the consumer has gone (works with beams too)."""

        def __init__(self, cancelled: threading.Event) -> None:
            self.cancelled = cancelled

        def __call__(self, input_ids, scores, **kwargs):
            return torch.full(
                (input_ids.shape[0],), self.cancelled.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return QueueStreamer, CancelCriterion


class GenerationControl:
    """Handed to the ``run`` callable: pass ``streamer`` and ``stopping_criteria`` to ``generate``."""

    def __init__(self, events: "queue.Queue", stream_tokens: bool) -> None:
        from transformers.generation.stopping_criteria import StoppingCriteriaList

        streamer_cls, criterion_cls = _transformers_classes()
        self.cancelled = threading.Event()
        # Beam search cannot stream in transformers: such runs pass streamer=None and the engine
        # yields the tokens only after generation ends.
        self.streamer = streamer_cls(events, self.cancelled) if stream_tokens else None
        self.stopping_criteria = StoppingCriteriaList([criterion_cls(self.cancelled)])

    def raise_if_cancelled(self) -> None:
        """For callbacks inside ``generate`` (e.g. Whisper's ``monitor_progress``)."""
        if self.cancelled.is_set():
            raise GenerationCancelled()


class GenerationThread:
    """Run ``run(control)`` (a ``generate`` call) in a thread and iterate its streamer events.

    Usage::

        with GenerationThread(lambda ctl: model.generate(..., streamer=ctl.streamer,
                                                          stopping_criteria=ctl.stopping_criteria)) as gen:
            for event in gen:
                ...
            output = gen.result

    Iteration ends when ``generate`` returns (its return value is then in ``result``); an exception
    raised in the thread is re-raised here. Leaving the ``with`` block before that cancels the
    generation and joins the thread, so a closed generator never leaves a thread decoding behind.
    """

    def __init__(self, run: Callable[[GenerationControl], Any], *, stream_tokens: bool = True) -> None:
        self._events: "queue.Queue" = queue.Queue()
        self.control = GenerationControl(self._events, stream_tokens)
        self._run = run
        self._thread = threading.Thread(target=self._target, name=THREAD_NAME, daemon=True)
        self._finished = False
        self.result: Any = None

    def _target(self) -> None:
        try:
            result = self._run(self.control)
        except GenerationCancelled:
            self._events.put(("cancelled", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._events.put(("error", exc))
        else:
            self._events.put(("done", result))

    def __enter__(self) -> "GenerationThread":
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[GenerationEvent]:
        while not self._finished:
            try:
                kind, payload = self._events.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive() and self._events.empty():
                    self._finished = True
                    raise RuntimeError("the generation thread ended without a result") from None
                continue
            if kind == "event":
                yield payload
            elif kind == "done":
                self._finished = True
                self.result = payload
            elif kind == "error":
                self._finished = True
                raise payload
            else:  # cancelled: only happens after stop(), i.e. when nobody is listening
                self._finished = True

    def stop(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Cancel the generation (if still running) and wait for the thread to end."""
        self.control.cancelled.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("generation thread still running %.0f s after cancellation", timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class IncrementalDecoder:
    """Decode token ids as they arrive and return only the text that is new.

    ``decode`` turns the whole id list so far into text (e.g. ``tokenizer.decode`` with
    ``skip_special_tokens=True``). Byte-level BPE can split one character over several tokens:
    a running text that ends in U+FFFD is held back until the next token completes it.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._emitted = ""

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    @property
    def text(self) -> str:
        """The text returned so far (the concatenation of every piece)."""
        return self._emitted

    def add(self, ids: Sequence[int]) -> str:
        self._ids.extend(ids)
        if not self._ids:
            return ""
        text = self._decode(self._ids)
        if text.endswith(_REPLACEMENT_CHAR):
            return ""
        return self._take(text)

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character stays U+FFFD)."""
        if not self._ids:
            return ""
        return self._take(self._decode(self._ids))

    def _take(self, text: str) -> str:
        # Byte-level BPE decoding is prefix-stable once incomplete characters are held back, so
        # the new text is what follows what was already returned.
        new = text[len(self._emitted) :]
        self._emitted += new
        return new


def clamp_span(start: float, end: float, duration: float) -> tuple[float, float]:
    """A segment's (start, end) clipped to the audio and ordered."""
    start = min(max(0.0, float(start)), duration)
    end = min(max(start, float(end)), duration)
    return start, end


def torch_device_dtype(device: str, half: str = "float16"):
    """(device, dtype) for a runtime: a half-precision dtype on CUDA, float32 on CPU."""
    import torch

    if device == "cuda":
        return "cuda", getattr(torch, half)
    return "cpu", torch.float32


def torch_dtype_name(model) -> str:
    """A torch model's precision as a plain name ("float32", "bfloat16" ...)."""
    return str(model.dtype).removeprefix("torch.")


def set_torch_threads(threads: int) -> None:
    """torch's intra-op threads for the CPU kernels. Process-wide in torch: every torch engine
    sets the one value from the settings, so they all run at the thread count they report."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def free_memory(device: Optional[str]) -> None:
    """After dropping references to a model: collect and release cached GPU memory."""
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = [
    "GenerationCancelled",
    "GenerationControl",
    "GenerationEvent",
    "GenerationThread",
    "IncrementalDecoder",
    "THREAD_NAME",
    "clamp_span",
    "free_memory",
    "set_torch_threads",
    "torch_device_dtype",
    "torch_dtype_name",
]

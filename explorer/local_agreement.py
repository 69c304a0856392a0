"""LocalAgreement-2 streaming policy, after ufal/whisper_streaming: no model, no clock, no numpy.

The audio buffer grows; every call transcribes all of it, and a word is committed once two
consecutive hypotheses agree on it (their longest common prefix). When the buffer passes
``trim_seconds`` it is cut at the end of a model segment that lies inside the committed text.

Its twin for the browser is ``custom_components/browser_asr/gradio_browser_asr/js/local_agreement.js``
(same names in camelCase, same behaviour); both run the cases in ``tests/vectors/local_agreement.json``.

Three deliberate differences from whisper_streaming: the audio is cut at the exact sample of the
trim time (whisper_streaming cuts whole seconds while moving the time offset exactly); word
texts are compared without surrounding whitespace (engines differ on the leading space); and
two hypotheses agree on a word when they differ only in case or in the punctuation around it
(``agreement_key``). Whisper ends the last word it hears with a period ("man.") and writes it
plain once the next words follow ("man"): compared exactly, that word waited one more pass, which
on a slow device was much of its lag. The newer hypothesis' form is the one committed.

Two options, off by default (whisper_streaming's behaviour) and on in the browser, whose word
times are interpolated inside Whisper's segments: ``anchor_seconds`` finds where a hypothesis'
new words begin by the committed words it transcribes again, rather than by time alone, and
``max_unconfirmed_seconds`` commits a word two passes keep disagreeing on once the audio heard
runs that far past it, so that the lag stays bounded.
"""

from __future__ import annotations

import math
import unicodedata
from array import array
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional, Sequence

from explorer.types import SAMPLE_RATE, Word

MAX_NGRAM = 5  # longest run of already committed words dropped from a new hypothesis
PROMPT_CHARS = 200  # size of the committed text passed to the model as a prompt
TIME_SLACK = 0.1  # new words may start this much before the last committed time


def _texts(words: Sequence[Word]) -> list[str]:
    return [w.text.strip() for w in words]


def _edge_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"  # punctuation or symbol


def agreement_key(text: str) -> str:
    """What two hypotheses must share for a word to agree: its text without surrounding
    whitespace, punctuation or symbols, in lower case ("Man." and "man" agree; "don't" keeps its
    apostrophe)."""
    text = text.strip()
    start, end = 0, len(text)
    while start < end and _edge_mark(text[start]):
        start += 1
    while end > start and _edge_mark(text[end - 1]):
        end -= 1
    return text[start:end].lower()


def _keys(words: Sequence[Word]) -> list[str]:
    return [agreement_key(w.text) for w in words]


class HypothesisBuffer:
    """Commits the longest common prefix of the last two hypotheses, word by word."""

    def __init__(self, anchor_seconds: Optional[float] = None) -> None:
        # None: whisper_streaming's time filter only; else how far from the last committed time a
        # text anchor may end (see anchor()).
        self.anchor_seconds = anchor_seconds
        self.committed_in_buffer: list[Word] = []  # committed words still inside the audio buffer
        self.buffer: list[Word] = []  # the previous hypothesis' uncommitted tail
        self.new: list[Word] = []  # the latest hypothesis
        self.last_committed_time = 0.0
        self.last_committed_word: Optional[str] = None

    def insert(self, words: Iterable[Word], offset: float) -> None:
        """Take a hypothesis with times relative to the audio buffer, which starts at ``offset``."""
        shifted = [replace(w, start=w.start + offset, end=w.end + offset) for w in words]
        anchor = self.anchor(shifted)
        if anchor is not None:
            self.new = shifted[anchor:]
            return
        self.new = [w for w in shifted if w.start > self.last_committed_time - TIME_SLACK]
        if self.new and self.committed_in_buffer and abs(self.new[0].start - self.last_committed_time) < 1:
            # The model may transcribe the end of the committed text again: drop it (1..5 words).
            for n in range(1, min(len(self.committed_in_buffer), len(self.new), MAX_NGRAM) + 1):
                if _keys(self.committed_in_buffer[-n:]) == _keys(self.new[:n]):
                    del self.new[:n]
                    break

    def anchor(self, words: Sequence[Word]) -> Optional[int]:
        """Where the new words begin, found by text: just after the last 2..MAX_NGRAM committed
        words still in the buffer, transcribed again, ending within ``anchor_seconds`` of the last
        committed time (the longest such run, then the nearest). None when there is none or
        anchoring is off: the time filter decides. Word times interpolated inside a segment (the
        browser's transformers.js) move by a few tenths of a second from pass to pass, so the time
        filter alone let the first new word in on one pass and not the next, and the two hypotheses
        disagreed until a cut. The cost: a phrase repeated at once ("no no no no") may lose a
        repetition."""
        if self.anchor_seconds is None:
            return None
        committed, heard = _keys(self.committed_in_buffer), _keys(words)
        for n in range(min(MAX_NGRAM, len(committed)), 1, -1):
            tail = committed[-n:]
            near = [
                (distance, i + n)
                for i in range(len(words) - n + 1)
                if heard[i : i + n] == tail
                and (distance := abs(words[i + n - 1].end - self.last_committed_time)) <= self.anchor_seconds
            ]
            if near:
                return min(near)[1]
        return None

    def flush(self) -> list[Word]:
        """Commit and return the words on which the latest hypothesis agrees with the previous one."""
        commit: list[Word] = []
        for new, old in zip(self.new, self.buffer):
            if agreement_key(new.text) != agreement_key(old.text):
                break
            commit.append(new)
        self.buffer = self.new[len(commit) :]
        self.new = []
        return self._record(commit)

    def _record(self, words: list[Word]) -> list[Word]:
        """Note words as committed (in order) and return them."""
        if words:
            self.last_committed_time = words[-1].end
            self.last_committed_word = words[-1].text
            self.committed_in_buffer.extend(words)
        return words

    def force_before(self, time: float) -> list[Word]:
        """Commit the unconfirmed words, from the first, that end at or before ``time``: the latest
        hypothesis' form, without a second one agreeing (``max_unconfirmed_seconds``)."""
        forced: list[Word] = []
        while self.buffer and self.buffer[0].end <= time:
            forced.append(self.buffer.pop(0))
        return self._record(forced)

    def pop_committed(self, time: float) -> None:
        """Forget committed words that end at or before ``time`` (their audio was cut)."""
        while self.committed_in_buffer and self.committed_in_buffer[0].end <= time:
            self.committed_in_buffer.pop(0)

    def complete(self) -> list[Word]:
        """The words not yet confirmed."""
        return list(self.buffer)


@dataclass(frozen=True)
class Hypothesis:
    """What a model makes of the whole audio buffer; times are relative to the buffer's start."""

    words: Sequence[Word]
    segment_ends: Sequence[float] = ()


@dataclass(frozen=True)
class StreamStep:
    committed: tuple[Word, ...]  # newly committed words, stream times
    unconfirmed: tuple[Word, ...]  # the current hypothesis' tail beyond them


# transcribe(audio, prompt): audio is a float32 ``array`` at the sample rate (np.frombuffer reads it).
Transcribe = Callable[[array, str], Hypothesis]


class OnlineASRProcessor:
    """The growing audio buffer and the committed words; the caller brings the model.

    Call ``process_iter`` whenever ``ready`` (at least ``min_chunk_seconds`` of new audio), and
    ``finish`` at the end of the stream.
    """

    def __init__(self, min_chunk_seconds: float = 1.0, trim_seconds: float = 15.0, sample_rate: int = SAMPLE_RATE,
                 anchor_seconds: Optional[float] = None, max_unconfirmed_seconds: Optional[float] = None):
        self.anchor_seconds = anchor_seconds  # see HypothesisBuffer.anchor
        # Once the audio a pass heard runs this far past an unconfirmed word's end, the latest
        # hypothesis' form of it is committed (counted in forced_words): two hypotheses of a tiny
        # model can disagree for many passes on the first words after a cut ("And Mr." / "Mr."),
        # and every word behind them waits. None, the default, is whisper_streaming's behaviour.
        self.max_unconfirmed_seconds = max_unconfirmed_seconds
        self.min_chunk_seconds = min_chunk_seconds
        self.trim_seconds = trim_seconds
        self.sample_rate = sample_rate
        self.reset()

    def reset(self) -> None:
        self.audio = array("f")
        self.buffer_time_offset = 0.0  # stream time of the buffer's first sample
        self.hypothesis = HypothesisBuffer(self.anchor_seconds)
        self.committed: list[Word] = []
        self._unprocessed = 0  # samples inserted since the last process_iter
        self.heard_seconds = 0.0  # stream time up to which the last pass heard the audio
        self.forced_words = 0  # words committed by max_unconfirmed_seconds rather than by agreement

    @property
    def buffer_seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def ready(self) -> bool:
        return self._unprocessed >= _round(self.min_chunk_seconds * self.sample_rate)

    def insert_audio(self, samples: Iterable[float]) -> None:
        before = len(self.audio)
        self.audio.extend(samples)
        self._unprocessed += len(self.audio) - before

    def prompt(self) -> str:
        """The last ~200 characters of committed text whose audio is no longer in the buffer."""
        before = _texts([w for w in self.committed if w.end <= self.buffer_time_offset])
        picked: list[str] = []
        size = 0
        while before and size < PROMPT_CHARS:
            picked.append(before.pop())
            size += len(picked[-1]) + 1
        return " ".join(reversed(picked))

    def process_iter(self, transcribe: Transcribe) -> StreamStep:
        """Transcribe the buffer (a copy of it) and apply the result."""
        return self.apply_hypothesis(transcribe(*self.pass_input()))

    def pass_input(self) -> tuple[array, str]:
        """What the next pass transcribes: a copy of the buffer and the prompt; the audio inserted
        so far counts as processed. For callers that run the model themselves (then
        ``apply_hypothesis``), e.g. with more audio arriving meanwhile."""
        self._unprocessed = 0
        self.heard_seconds = self.buffer_time_offset + self.buffer_seconds
        return self.audio[:], self.prompt()

    def apply_hypothesis(self, hypothesis: Hypothesis) -> StreamStep:
        """The policy step of ``process_iter``, for callers that run the model themselves."""
        self.hypothesis.insert(hypothesis.words, self.buffer_time_offset)
        committed = self.hypothesis.flush()
        if self.max_unconfirmed_seconds is not None:
            forced = self.hypothesis.force_before(self.heard_seconds - self.max_unconfirmed_seconds)
            self.forced_words += len(forced)
            committed.extend(forced)
        self.committed.extend(committed)
        if self.buffer_seconds > self.trim_seconds:
            self._trim_at_segment(hypothesis.segment_ends)
        return StreamStep(tuple(committed), tuple(self.hypothesis.complete()))

    def _trim_at_segment(self, segment_ends: Sequence[float]) -> None:
        # Cut at the last segment end (never the final one) inside the committed text.
        if not self.committed:
            return
        last = self.committed[-1].end
        for end in reversed(list(segment_ends)[:-1]):
            time = self.buffer_time_offset + end
            if time <= last:
                if time > self.buffer_time_offset:
                    self.chunk_at(time)
                return

    def chunk_at(self, time: float) -> None:
        """Drop the audio before stream time ``time`` and the committed words within it."""
        self.hypothesis.pop_committed(time)
        cut = min(_round((time - self.buffer_time_offset) * self.sample_rate), len(self.audio))
        del self.audio[:cut]
        self.buffer_time_offset = time

    def finish(self) -> StreamStep:
        """Commit the unconfirmed tail as final and start over."""
        tail = tuple(self.hypothesis.complete())
        self.reset()
        return StreamStep(tail, ())


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # half up, as JavaScript's Math.round


@dataclass(frozen=True)
class CommitLatency:
    first_commit_latency: Optional[float]  # wall seconds from stream start to the first commit
    mean_commit_lag: Optional[float]  # mean wall seconds from a word's end being heard to its commit


def commit_latency(events: Sequence[tuple[float, float]], stream_start: float) -> CommitLatency:
    """``events``: one ``(wall time of commit, word end in stream time)`` per committed word;
    ``stream_start``: the wall time at which stream time 0 was captured (same clock, seconds)."""
    if not events:
        return CommitLatency(None, None)
    first = min(wall for wall, _ in events) - stream_start
    lag = 0.0
    for wall, end in events:
        lag += wall - (stream_start + end)
    return CommitLatency(first, lag / len(events))

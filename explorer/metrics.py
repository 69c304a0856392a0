"""Metric definitions, in one place, as pure functions over emission times.

All times are seconds from the request start (after the model is loaded):
- TTFT: time of the first emitted token (or segment, for segment-level engines);
- ITL: mean gap between successive emissions of that unit;
- RTFx: audio seconds / processing seconds (as open_asr_leaderboard defines it);
- cost per hour of audio: the hardware's price per hour / RTFx.
Model load time is measured separately and never included in these. The times are taken where
the engine produces each emission (explorer.service), not where a reader consumes it, so a slow
reader (a UI posting each update) does not inflate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

from explorer.types import Metrics


def ttft(times: Sequence[float]) -> Optional[float]:
    return times[0] if times else None


def itl(times: Sequence[float]) -> Optional[float]:
    if len(times) < 2:
        return None
    return (times[-1] - times[0]) / (len(times) - 1)  # the mean of successive gaps


def rtfx(audio_seconds: float, processing_seconds: float) -> Optional[float]:
    if processing_seconds <= 0:
        return None
    return audio_seconds / processing_seconds


def compute(
    times: Sequence[float],
    unit: Literal["token", "segment"],
    audio_seconds: float,
    processing_seconds: float,
    load_seconds: float = 0.0,
    batch_size: int = 1,
    streamed: bool = True,
) -> Metrics:
    """A run's metrics; an unstreamed run (all emissions at the end) has no TTFT or ITL."""
    return Metrics(
        audio_seconds=audio_seconds,
        load_seconds=load_seconds,
        processing_seconds=processing_seconds,
        ttft_seconds=ttft(times) if streamed else None,
        itl_seconds=itl(times) if streamed else None,
        itl_unit=unit,
        emissions=len(times),
        rtfx=rtfx(audio_seconds, processing_seconds),
        batch_size=batch_size,
        streamed=streamed,
    )


def cost_per_audio_hour(price_per_hour: Optional[float], rtfx_value: Optional[float]) -> Optional[float]:
    """What transcribing one hour of audio costs on hardware billed `price_per_hour`: at RTFx r an
    hour of audio takes 1/r hours of the machine."""
    if price_per_hour is None or not rtfx_value or rtfx_value <= 0:
        return None
    return price_per_hour / rtfx_value


def batch_shares(audio_seconds: Sequence[float], batch_seconds: float) -> list[float]:
    """Split one batched call's time over its files in proportion to their audio, so that the
    files' RTFx all equal the batch's (total audio / call time) and their times add up to it."""
    total = sum(audio_seconds)
    if total <= 0:
        return [batch_seconds / len(audio_seconds)] * len(audio_seconds) if audio_seconds else []
    return [batch_seconds * a / total for a in audio_seconds]


@dataclass(frozen=True)
class CommitLag:
    """How far committed words trail the audio in a stream: each word's lag is its emission time
    minus its end in the stream (both seconds since the stream started, compute included)."""

    words: int
    first_commit_seconds: Optional[float]
    mean_lag_seconds: Optional[float]
    quarter_lags: tuple[Optional[float], ...]  # mean lag of each quarter of the words, in stream order
    last_to_first_quarter: Optional[float]  # > 1: the lag grew during the stream


def commit_lag(events: Sequence[Sequence]) -> CommitLag:
    """Lag figures from a stream's events, [emission seconds, word end seconds, word] each; the
    quarters split the committed words, ordered by where they end in the audio, into four runs
    of (nearly) equal count."""
    if not events:
        return CommitLag(0, None, None, (None, None, None, None), None)
    ordered = sorted(events, key=lambda e: e[1])
    lags = [e[0] - e[1] for e in ordered]
    n = len(lags)
    bounds = [i * n // 4 for i in range(5)]
    quarters = tuple(
        sum(lags[a:b]) / (b - a) if b > a else None for a, b in zip(bounds, bounds[1:])
    )
    first, last = quarters[0], quarters[-1]
    return CommitLag(
        words=n,
        first_commit_seconds=min(e[0] for e in events),
        mean_lag_seconds=sum(lags) / n,
        quarter_lags=quarters,
        last_to_first_quarter=last / first if first and last is not None and first > 0 else None,
    )

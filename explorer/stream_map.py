"""The latency–accuracy map of streaming: for each model × minimum chunk, the computation-aware
simulation (``explorer.simulate`` with ``realtime=False``) of every utterance of a dataset gives
the mean word latency (``explorer.latency``, against a reference alignment) and the corpus WER.
A point is on the Pareto front when no other point is at least as good on both and better on one.

``python -m explorer stream-bench`` prints the table and writes CSV, JSON and a PNG plot; the
Browser tab's map section shows the same for a chosen set.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import pandas as pd

from explorer import scoring
from explorer.latency import StreamLatency, pooled, reference_alignment, word_latencies
from explorer.simulate import simulate_stream
from explorer.types import TranscribeOptions

if TYPE_CHECKING:
    from explorer.evaluate import Utterance
    from explorer.service import ModelService

# Debian's pocketsphinx-testdata: five LibriVox clips (27 s of speech) with references.
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
DEFAULT_CHUNKS = (0.5, 1.0, 2.0)
TRIM_SECONDS = 15.0


@dataclass(frozen=True)
class MapPoint:
    model: str
    min_chunk_seconds: float
    latency: StreamLatency  # pooled over the dataset, with its corpus WER
    word_times: str  # "engine" or "interpolated" (see explorer.simulate)
    utterances: int

    def row(self) -> dict:
        return {"model": self.model, "min_chunk_s": self.min_chunk_seconds, **asdict(self.latency),
                "word_times": self.word_times, "utterances": self.utterances}  # fmt: skip


def librivox_utterances(folder: Path = LIBRIVOX) -> list["Utterance"]:
    """The LibriVox clips of pocketsphinx-testdata (``<s> text </s> (id)`` lines in ``transcription``)."""
    from explorer.evaluate import DatasetError, Utterance

    listing = folder / "transcription"
    if not listing.is_file():
        raise DatasetError(f"{folder}: no LibriVox clips here (Debian package pocketsphinx-testdata)")
    found = []
    for line in listing.read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m:
            found.append(Utterance(m.group(2), folder / f"{m.group(2)}.wav", m.group(1).strip(), dataset="librivox"))
    return found


def pareto_front(points: Sequence[tuple[Optional[float], Optional[float]]]) -> list[bool]:
    """For (latency, WER) pairs, lower is better on both: whether each is on the Pareto front
    (no other pair at least as good on both and better on one). A pair with a None is not."""
    def dominates(a, b) -> bool:
        return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])

    known = [p for p in points if None not in p]
    return [None not in p and not any(dominates(q, p) for q in known) for p in points]


def run_map(
    service: "ModelService",
    models: Sequence[str],
    chunks: Sequence[float],
    utterances: Sequence["Utterance"],
    language: Optional[str] = "en",
    alignment_model: Optional[str] = None,
    alignment_cache: Optional[Path] = None,
    on_progress: Optional[Callable[[int, int, str], None]] = None,
) -> list[MapPoint]:
    """Every model × chunk on every utterance, each simulated on the computation-aware timeline."""
    total = len(utterances) * (1 + len(models) * len(chunks))
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, total, what)

    audios = [u.load(service.settings.max_audio_seconds) for u in utterances]
    alignments = []
    for utt, audio in zip(utterances, audios):
        alignments.append(reference_alignment(service, audio, language, alignment_model, alignment_cache))
        step(f"reference alignment of {utt.id}")
    points = []
    for key in models:
        _, options, _ = service.check(key, TranscribeOptions(language=language))
        for chunk in chunks:
            latencies, firsts, texts, word_times = [], [], [], set()
            processing = audio_seconds = 0.0
            for utt, audio, alignment in zip(utterances, audios, alignments):
                report = simulate_stream(service, key, audio, options, chunk, TRIM_SECONDS, realtime=False, reference=alignment)
                latencies.append(word_latencies(report.events, alignment.words, language))
                firsts.append(report.latency.first_commit_latency)
                processing += report.processing_seconds
                audio_seconds += report.audio_seconds
                texts.append(report.text)
                word_times.add(report.word_times)
                step(f"{key} at {chunk:g} s on {utt.id}")
            wer = scoring.score([u.reference for u in utterances], texts, language).wer
            sources = "; ".join(sorted({a.source for a in alignments}))
            summary = pooled(latencies, firsts, processing, audio_seconds, wer, sources)
            points.append(MapPoint(key, chunk, summary, "/".join(sorted(word_times)), len(utterances)))
    return points


def map_frame(points: Sequence[MapPoint]) -> pd.DataFrame:
    """One row per point, with its Pareto flag."""
    frame = pd.DataFrame([p.row() for p in points])
    if frame.empty:
        return frame
    frame["pareto"] = pareto_front(list(zip(frame["mean_word_latency"], frame["wer"])))
    return frame


def table(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns people read, rounded."""
    cols = ["model", "min_chunk_s", "mean_word_latency", "p50_word_latency", "p90_word_latency",
            "first_commit_latency", "wer", "compute_ratio", "words_matched", "words_committed", "word_times", "pareto"]  # fmt: skip
    return frame[cols].round(3)


def plot(frame: pd.DataFrame, title: str = "Streaming: WER against mean word latency"):
    """WER against mean word latency, a point per model × chunk, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, group in frame.groupby("model", sort=False):
        ax.scatter(group["mean_word_latency"], group["wer"] * 100, label=model)
        for row in group.itertuples():
            ax.annotate(f"{row.min_chunk_s:g} s", (row.mean_word_latency, row.wer * 100), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = frame[frame["pareto"]].sort_values("mean_word_latency")
    ax.plot(front["mean_word_latency"], front["wer"] * 100, "k--", marker="o", mfc="none", ms=11, linewidth=1, label="Pareto front")
    ax.set_xlabel("mean word latency (s, computation-aware)")
    ax.set_ylabel("WER (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(frame: pd.DataFrame, folder: Path, meta: dict) -> list[Path]:
    """``map.csv``, ``map.json`` (rows and how they were made) and ``map.png`` in ``folder``."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    csv, js, png = folder / "map.csv", folder / "map.json", folder / "map.png"
    frame.to_csv(csv, index=False)
    js.write_text(json.dumps({"meta": meta, "rows": frame.to_dict(orient="records")}, indent=2, default=str))
    fig = plot(frame)
    fig.savefig(png, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return [csv, js, png]

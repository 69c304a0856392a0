"""Benchmark: the same evaluation in-process and on Ray, on this machine (the engine's overhead).

    .venv/bin/python bench/bench_ray.py [--repeat 4] [--actors 1,2]

Same utterances (the LibriVox clips, repeated), same weights (whisper tiny.en, CTranslate2 int8),
same options (English, beam 1, VAD on). Wall seconds run from the call to its last row: for Ray
they include starting the local cluster, the decode tasks, the actors' start, model load and
warm-up; in-process they include the warm-up. "RTFx (sum)" is the leaderboard's (audio / summed
per-utterance processing time), "RTFx (wall)" the throughput (audio / wall seconds). In-process,
CTranslate2 uses its default threads; each Ray actor gets one CPU and one thread. All rows come
from one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from explorer import zoo  # noqa: E402
from explorer.config import Settings  # noqa: E402
from explorer.evaluate import Utterance, evaluate, summarize  # noqa: E402
from explorer.service import ModelService  # noqa: E402
from explorer.types import TranscribeOptions  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402

TINY = "faster-whisper/tiny.en"
OPTIONS = TranscribeOptions(language="en", beam_size=1)


def row(backend: str, wall: float, summary: pd.Series, first_row: float | None = None) -> dict:
    return {
        "backend": backend,
        "wall s": wall,
        "first row s": first_row,
        "RTFx (sum)": summary["rtfx"],
        "RTFx (wall)": summary["audio_seconds"] / wall,
        "WER": summary["wer"],
        "failed": summary["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4, help="times the five LibriVox clips are repeated")
    parser.add_argument("--actors", default="1,2", help="Ray actor counts to measure")
    args = parser.parse_args()
    settings = Settings.from_env()
    zoo.prepare(models_dir=settings.models_dir, log=lambda _: None)
    os.environ.setdefault("MODELS_DIR", str(settings.models_dir))  # handed to Ray's workers
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    clips = librivox_clips()
    utterances = [Utterance(f"{c.path.stem}-{i}", c.path, c.reference) for i in range(args.repeat) for c in clips]

    rows = []
    start = time.perf_counter()
    local = evaluate(ModelService(Settings.from_env()), [TINY], utterances, OPTIONS)
    rows.append(row("in-process", time.perf_counter() - start, summarize(local).iloc[0]))

    import ray

    from explorer.distributed import connect, gathered, iter_evaluate_on_ray

    for actors in (int(a) for a in args.actors.split(",")):
        start = time.perf_counter()
        connect(num_cpus=os.cpu_count())
        got, first = [], None
        for r in iter_evaluate_on_ray([TINY], utterances, OPTIONS, actors=actors):
            first = first if first is not None else time.perf_counter() - start
            got.append(r)
        wall = time.perf_counter() - start
        run = gathered([TINY], got)
        ray.shutdown()
        same = list(run.rows["hypothesis"]) == list(local["hypothesis"])
        rows.append({**row(f"Ray, {actors} actor(s)", wall, run.summary().iloc[0], first), "same text": same})

    table = pd.DataFrame(rows)
    table["vs in-process"] = table["wall s"].iloc[0] / table["wall s"]
    audio = summarize(local).iloc[0]["audio_seconds"]
    print(f"{len(utterances)} utterances, {audio:.0f} s of audio, {TINY} int8, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(table.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()

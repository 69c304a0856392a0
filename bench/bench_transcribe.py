"""Benchmark: what the app adds to a raw engine call, runtime against runtime on the same weights,
and whether a slow reader of the stream changes the timing.

    .venv/bin/python bench/bench_transcribe.py [--repeats 3] [--only reader] [--price-per-hour 0.4]

Clips of 10 s or more are made by joining the LibriVox clips of Debian's pocketsphinx-testdata.
Everything in one table is measured in one run on one machine, so ratios compare like with like.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from explorer import metrics, zoo  # noqa: E402
from explorer.audio import load_audio  # noqa: E402
from explorer.config import Settings, all_cores  # noqa: E402
from explorer.scoring import corpus_wer  # noqa: E402
from explorer.service import ModelService  # noqa: E402
from explorer.types import TranscribeOptions  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402

TINY = "faster-whisper/tiny.en"
SETTLE_SECONDS = 0.5


def make_long_clips(folder: Path) -> tuple[list[Path], list[str]]:
    """Three clips of 10 s or more, each two or three LibriVox clips back to back, and their references."""
    librivox = librivox_clips()
    clips = [sf.read(c.path, dtype="float32")[0] for c in librivox]
    pause = np.zeros(8000, dtype=np.float32)
    groups = [(0, 1), (2, 3), (1, 2, 4)]
    paths = []
    for i, group in enumerate(groups):
        samples = np.concatenate([x for j in group for x in (clips[j], pause)])
        path = folder / f"clip{i}.wav"
        sf.write(path, samples, 16000)
        paths.append(path)
    references = [" ".join(librivox[j].reference for j in group) for group in groups]
    return paths, references


def timed(fn, repeats: int) -> float:
    return timed_pair(fn, None, repeats)[0]


def timed_pair(a, b, repeats: int) -> tuple[float, Optional[float]]:
    """Medians of a and b, run alternately after one warm-up each, so drift hits both alike."""
    medians = timed_all([f for f in (a, b) if f is not None], repeats)
    return medians[0], (medians[1] if b is not None else None)


def timed_all(fns: list, repeats: int) -> list[float]:
    """Median wall time of each, run in turn after one warm-up each, so drift hits all alike."""
    runs: list[list[float]] = [[] for _ in fns]
    for f in fns:
        f()
    for _ in range(repeats):
        for f, out in zip(fns, runs):
            # Let the other process's idle compute threads stop spinning (OpenMP waits actively
            # for a while after work), so one side's wind-down is not billed to the other.
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            f()
            out.append(time.perf_counter() - start)
    return [statistics.median(r) for r in runs]


def raw_tiny_en(models_dir: Path):
    """tiny.en in faster-whisper itself, with the app's options and thread count (CPU_THREADS, all
    cores by default), so raw and app runs do one computation: returns audio -> text."""
    from faster_whisper import WhisperModel

    weights = zoo.local_weights("whisper-tiny.en-ct2", models_dir)
    model = WhisperModel(str(weights), device="cpu", compute_type="int8", cpu_threads=all_cores())
    options = dict(language="en", beam_size=1, vad_filter=True, condition_on_previous_text=False)

    def transcribe(audio) -> str:
        segments, _ = model.transcribe(audio, **options)
        return "".join(s.text for s in segments)

    return transcribe


def bench_app_overhead(paths: list[Path], models_dir: Path, repeats: int) -> pd.DataFrame:
    from gradio_client import handle_file

    raw_transcribe = raw_tiny_en(models_dir)
    app = RunningApp(models_dir, Path(tempfile.mkdtemp()) / "app.log")
    rows = []
    try:
        client = app.client()
        for path in paths:
            audio = load_audio(path).samples

            def raw():
                return raw_transcribe(audio)

            def through_app():
                return client.predict(handle_file(str(path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe")

            raw_s, app_s = timed_pair(raw, through_app, repeats)
            floor_s = timed(lambda: client.predict(api_name="/health"), repeats)
            reported = through_app()["metrics"]["processing_seconds"]
            seconds = len(audio) / 16000
            rows.append(
                {
                    "clip": path.name,
                    "audio s": round(seconds, 1),
                    "raw faster-whisper s": round(raw_s, 3),
                    "app via gradio_client s": round(app_s, 3),
                    "app's own processing s": round(reported, 3),
                    "gradio_client round trip s": round(floor_s, 3),
                    "overhead %": round(100 * (app_s - raw_s) / raw_s, 1),
                }
            )
    finally:
        app.stop()
    return pd.DataFrame(rows)


def bench_slow_reader(paths: list[Path], models_dir: Path, repeats: int) -> pd.DataFrame:
    """The same run read at once and by a reader that spends 50 ms on each update (as a UI
    posting it does), through the service; then through the app, /transcribe (read at once)
    against /transcribe_stream (Gradio posts every update to the client). Medians of `repeats`."""
    from gradio_client import handle_file

    service = ModelService(Settings(models_dir=models_dir, offline=True), online=False)
    audio = load_audio(paths[2])
    options = TranscribeOptions(language="en")

    def read(key: str, pause: float):
        for update in service.stream(key, audio, options):
            if update.result is not None:
                return update.result.metrics
            time.sleep(pause)

    rows = []
    figures = ("processing_seconds", "ttft_seconds", "itl_seconds")
    for key in (TINY, "transformers/whisper-tiny.en"):
        read(key, 0.0)  # warm-up
        runs: dict[float, list] = {0.0: [], 0.05: []}
        for _ in range(repeats):  # alternating, so drift hits both alike
            for pause, out in runs.items():
                out.append(read(key, pause))
        median = {p: {f: statistics.median(getattr(m, f) or 0.0 for m in runs[p]) for f in figures} for p in runs}
        for f in figures:
            rows.append({"path": "service.stream", "model": key, "figure": f, "read at once": round(median[0.0][f], 3),
                         "50 ms per update": round(median[0.05][f], 3),
                         "ratio": round(median[0.05][f] / median[0.0][f], 3) if median[0.0][f] else None})  # fmt: skip
    app = RunningApp(models_dir, Path(tempfile.mkdtemp()) / "app.log")
    try:
        client = app.client()
        for key in (TINY, "transformers/whisper-tiny.en"):
            args = (handle_file(str(paths[2])), key, "en", "transcribe", 1, False, True)
            client.predict(*args, api_name="/transcribe")  # warm-up (and the model's load)
            once, streamed = [], []
            for _ in range(repeats):
                once.append(client.predict(*args, api_name="/transcribe")["metrics"])
                streamed.append(client.predict(*args, api_name="/transcribe_stream")[-1]["metrics"])
            for f in figures:
                a = statistics.median(m[f] or 0.0 for m in once)
                b = statistics.median(m[f] or 0.0 for m in streamed)
                rows.append({"path": "app: /transcribe vs /transcribe_stream", "model": key, "figure": f,
                             "read at once": round(a, 3), "50 ms per update": None, "streamed to the client": round(b, 3),
                             "ratio": round(b / a, 3) if a else None})  # fmt: skip
    finally:
        app.stop()
    return pd.DataFrame(rows)


def bench_runtimes(paths: list[Path], references: list[str], models_dir: Path, repeats: int,
                   price_per_hour: Optional[float] = None) -> pd.DataFrame:  # fmt: skip
    settings = Settings(models_dir=models_dir, offline=True, max_loaded_models=4)
    variants = [
        ("faster-whisper/tiny.en", "int8", None),
        ("faster-whisper/tiny.en", "float32", "float32"),
        ("transformers/whisper-tiny.en", "fp32", None),
        ("onnx/whisper-tiny.en", "fp32", None),
        ("onnx/whisper-tiny.en-q8", "q8", None),
    ]
    audios = [load_audio(p) for p in paths]
    total_audio = sum(a.duration for a in audios)
    rows = []
    for key, label, compute_type in variants:
        service = ModelService(replace(settings, compute_type=compute_type), online=False)
        avail = service.availability[key]
        if avail.status != "ready":
            rows.append({"model": key, "precision": label, "RTFx": None, "WER %": None, "note": avail.reason})
            continue

        def run_all():
            # no VAD: every runtime decodes the same samples, pauses included
            return [service.transcribe(key, a, TranscribeOptions(language="en", vad_filter=False)) for a in audios]

        seconds = timed(run_all, repeats)
        results = run_all()
        wer = corpus_wer(references, [t.text for t in results]).wer
        cost = metrics.cost_per_audio_hour(price_per_hour, total_audio / seconds)
        rows.append(
            {"model": key, "precision": label, "RTFx": round(total_audio / seconds, 1),
             "WER %": round(100 * wer, 1), **({"$ / audio hour": round(cost, 4)} if cost is not None else {}),
             "threads": results[0].environment.threads, "note": f"{total_audio:.0f} s of audio, greedy"}
        )
    return pd.DataFrame(rows)


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def bench_prepare() -> pd.DataFrame:
    """`python -m explorer.zoo prepare` into an empty cache, then again with everything present."""
    import subprocess

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("from scratch", "again (no work)"):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "explorer.zoo", "prepare", "--models-dir", tmp],
                cwd=ROOT, check=True, capture_output=True,
            )
            rows.append({"prepare": run, "seconds": round(time.perf_counter() - start, 2), "MB": None})
        for name in zoo.MODELS:
            folder = Path(tmp) / name
            if folder.is_dir():
                rows.append({"prepare": f"  {name}", "seconds": None, "MB": round(folder_mb(folder), 1)})
        rows.append({"prepare": "total disk", "seconds": None, "MB": round(folder_mb(Path(tmp)), 1)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["overhead", "zoo", "runtimes", "reader"], help="one table")
    parser.add_argument("--price-per-hour", type=float, default=None,
                        help="hardware price per hour for the cost per audio hour (default: DEVICE_PRICE_PER_HOUR)")  # fmt: skip
    args = parser.parse_args()
    settings = Settings.from_env()
    price = args.price_per_hour if args.price_per_hour is not None else settings.device_price_per_hour
    models_dir = settings.models_dir
    zoo.prepare(models_dir=models_dir, log=lambda _: None)
    wanted = lambda name: args.only in (None, name)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        paths, references = make_long_clips(Path(tmp))
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
              f"CPU_THREADS {settings.cpu_threads}; median of {args.repeats} runs after one warm-up\n")
        if wanted("overhead"):
            print("## The app's overhead over a raw faster-whisper call (tiny.en int8, beam 1)\n")
            print(bench_app_overhead(paths, models_dir, args.repeats).to_markdown(index=False))
        if wanted("zoo"):
            print("\n## The offline model zoo\n")
            print(bench_prepare().to_markdown(index=False))
        if wanted("runtimes"):
            print("\n## Runtimes on the same weights (whisper tiny.en)\n")
            print(bench_runtimes(paths, references, models_dir, args.repeats, price).to_markdown(index=False))
        if wanted("reader"):
            print("\n## A slow reader and the timing (13.9 s clip, beam 1)\n")
            print(bench_slow_reader(paths, models_dir, args.repeats).to_markdown(index=False))


if __name__ == "__main__":
    main()

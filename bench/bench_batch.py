"""Benchmark: batch jobs through the app against a plain loop of faster-whisper calls.

    .venv/bin/python bench/bench_batch.py [--files 50]

Same files (the LibriVox clips, repeated), same weights (whisper tiny.en, CTranslate2 int8), same
options (English, beam 1, VAD on). The loop decodes every file first and times only the model
calls; the app's time runs from submitting the batch to its last job finishing (upload, decoding,
spooling and the job store included). Then one interactive /transcribe is timed idle and while a
batch runs. All rows come from one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import handle_file  # noqa: E402

from explorer import zoo  # noqa: E402
from explorer.audio import load_audio  # noqa: E402
from explorer.config import Settings  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402

TINY = "faster-whisper/tiny.en"


def plain_loop(weights: Path, paths: list[Path]) -> float:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(weights), device="cpu", compute_type="int8")
    audios = [load_audio(p).samples for p in paths]
    list(model.transcribe(audios[0], language="en", beam_size=1)[0])  # warm-up
    start = time.perf_counter()
    for audio in audios:
        segments, _ = model.transcribe(audio, language="en", beam_size=1, vad_filter=True, condition_on_previous_text=False)
        list(segments)
    return time.perf_counter() - start


def transcribe_once(client, path: Path) -> float:
    start = time.perf_counter()
    client.predict(handle_file(str(path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe")
    return time.perf_counter() - start


def app_batch(
    models_dir: Path, paths: list[Path], batch_size: int, log: Path, probe_latency: bool = False
) -> tuple[float, list[float], float]:
    """Batch wall time, interactive latencies during the batch (when probed: then the batch time
    includes those requests too), and the idle latency."""
    with tempfile.TemporaryDirectory() as data:
        app = RunningApp(models_dir, log, DATA_DIR=data, BATCH_SIZE=batch_size, NUM_WORKERS=1, HF_HUB_OFFLINE=1)
        try:
            client = app.client()
            transcribe_once(client, paths[0])  # loads the model
            idle = statistics.median(transcribe_once(client, paths[0]) for _ in range(3))
            files = [handle_file(str(p)) for p in paths]
            start = time.perf_counter()
            sub = client.predict(files, TINY, "en", "transcribe", 1, False, True, "", api_name="/submit_batch")
            latencies: list[float] = []
            probing = threading.Event()

            def probe():
                probe_client = app.client()
                time.sleep(1.0)
                while not probing.is_set():
                    latencies.append(transcribe_once(probe_client, paths[1]))
                    time.sleep(0.5)

            thread = threading.Thread(target=probe)
            if probe_latency:
                thread.start()
            for _ in client.submit(sub["token"], sub["batch"], api_name="/watch_batch"):
                pass
            elapsed = time.perf_counter() - start
            probing.set()
            if thread.is_alive():
                thread.join()
            jobs = client.predict(sub["token"], sub["batch"], api_name="/jobs")["counts"]
            assert jobs["completed"] == len(paths), jobs
            return elapsed, latencies, idle
        finally:
            app.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50)
    args = parser.parse_args()
    clips = librivox_clips()
    paths = [clips[i % len(clips)].path for i in range(args.files)]
    audio_seconds = sum(load_audio(p).duration for p in paths)
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp) / "models"
        zoo.prepare(models_dir=models_dir, names=["whisper-tiny.en-ct2"], log=lambda _: None)
        weights = models_dir / "whisper-tiny.en-ct2"
        loop = plain_loop(weights, paths)
        rows = [("plain loop of WhisperModel.transcribe", loop, 1.0)]
        for size in (1, 8, 16):
            took, _, idle = app_batch(models_dir, paths, size, Path(tmp) / f"app{size}.log")
            rows.append((f"app batch, BATCH_SIZE={size}" + (" (one file per call)" if size == 1 else ""), took, loop / took))
        _, latencies, _ = app_batch(models_dir, paths, Settings.batch_size, Path(tmp) / "probe.log", probe_latency=True)
    table = pd.DataFrame(rows, columns=["how", "seconds", "throughput vs loop"])
    table["audio s / s"] = audio_seconds / table["seconds"]
    print(f"{args.files} files, {audio_seconds:.1f} s of audio; {platform.machine()}, {os.cpu_count()} cores\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print()
    lat = pd.DataFrame(
        [
            ("idle (median of 3)", idle, 1),
            (f"during a BATCH_SIZE={Settings.batch_size} batch (median)", statistics.median(latencies) if latencies else float("nan"), len(latencies)),
            (f"during a BATCH_SIZE={Settings.batch_size} batch (max)", max(latencies) if latencies else float("nan"), len(latencies)),
        ],
        columns=["/transcribe of a 3 s clip", "seconds", "requests"],
    )
    print(lat.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()

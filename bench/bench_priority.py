"""Benchmark: an interactive request while a batch runs, with batched calls in steps against one call.

    .venv/bin/python bench/bench_priority.py [--via app|service] [--files 16] [--idle 7] [--steps 0 4]

Through the app (`python app.py` on loopback, gradio_client: the issue's figures) or in process (a
real ModelService and BatchRunner, no HTTP); SQLite store, one batch worker, NUM_WORKERS=1,
BATCH_SIZE=8, whisper tiny.en int8 on real speech: files of 10-30 s made by joining the
LibriVox clips of Debian's pocketsphinx-testdata, and the 3 s LibriVox clip as the interactive
request (decoded and transcribed as /transcribe does, English, beam 1, VAD on). For each
BATCH_STEP_FILES value (0: one call per batch, as before steps existed):
- idle: the median interactive latency with nothing else running;
- the batch alone: submission to the last job's completion, in audio seconds per second;
- the batch again with interactive requests arriving throughout (one at a time, 0.2-0.6 s apart):
  their median and worst latency, and the part of it that is not the model's own processing
  (the wait for the device slot, decoding, checks). Ratio = median during / median idle.
Then the batched model calls alone (ModelService.transcribe_batch, no store, no requests), the
settings taking turns for `--rounds` rounds: the throughput comparison least moved by other load.
Every row comes from one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import handle_file  # noqa: E402

from explorer import zoo  # noqa: E402
from explorer.batch import BatchRunner, finished  # noqa: E402
from explorer.config import Settings  # noqa: E402
from explorer.service import ModelService  # noqa: E402
from explorer.types import TranscribeOptions  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402

TINY = "faster-whisper/tiny.en"
OPTIONS = TranscribeOptions(language="en", beam_size=1, vad_filter=True)
RATE = 16000


def long_files(folder: Path, count: int) -> list[Path]:
    """`count` files of 10-30 s (lengths spread evenly), each LibriVox clips back to back in a
    seeded order, with half-second pauses, cut at 30 s (one decoder window)."""
    clips = [sf.read(c.path, dtype="float32")[0] for c in librivox_clips()]
    pause = np.zeros(RATE // 2, dtype=np.float32)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        target = 10 + 20 * i / max(count - 1, 1)
        order, parts, k = rng.permutation(len(clips)), [], 0
        while sum(len(p) for p in parts) < target * RATE:
            parts += [clips[order[k % len(clips)]], pause]
            k += 1
        path = folder / f"long{i:02d}.wav"
        sf.write(path, np.concatenate(parts)[: int(target * RATE)], RATE)
        paths.append(path)
    return paths


@dataclass
class Probe:
    latency: float  # request in to result out: decode, check, slot wait, model (and HTTP, through the app)
    processing: float  # the model's own part (Metrics.processing_seconds)


class InProcess:
    """A ModelService and a BatchRunner in this process: the service's calls, no HTTP."""

    def __init__(self, models_dir: Path, data_dir: Path, step_files: int):
        settings = Settings(
            models_dir=models_dir, offline=True, data_dir=data_dir, num_workers=1, batch_workers=1, batch_size=8,
            batch_step_files=step_files,
        )  # fmt: skip
        self.service = ModelService(settings, online=False)
        self.runner = BatchRunner(self.service, settings).start()

    def interactive(self, path: Path) -> Probe:
        start = time.perf_counter()
        result = self.service.transcribe(TINY, self.service.decode(path), OPTIONS)
        return Probe(time.perf_counter() - start, result.metrics.processing_seconds)

    def run_batch(self, files: list[Path]) -> float:
        """Seconds from submission to the last job's completion."""
        start = time.perf_counter()
        sub = self.runner.submit(None, files, TINY, OPTIONS)
        while not finished(counts := self.runner.counts(sub.token, sub.batch)):
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        assert counts["completed"] == len(files), counts
        return seconds

    def stop(self) -> None:
        self.runner.stop()


class ThroughApp:
    """`python app.py` on loopback, called through gradio_client as an API user would (the figures
    of the issue: /transcribe, /submit_batch, /watch_batch)."""

    def __init__(self, models_dir: Path, data_dir: Path, step_files: int):
        self.app = RunningApp(
            models_dir, data_dir.with_suffix(".log"), DATA_DIR=data_dir, NUM_WORKERS=1, BATCH_WORKERS=1, BATCH_SIZE=8,
            BATCH_STEP_FILES=step_files,
        )  # fmt: skip
        self.local = threading.local()  # a client per thread, as separate users have

    def _client(self):
        if not hasattr(self.local, "client"):
            self.local.client = self.app.client()
        return self.local.client

    def interactive(self, path: Path) -> Probe:
        start = time.perf_counter()
        result = self._client().predict(handle_file(str(path)), TINY, "en", "transcribe", 1, False, True,
                                        api_name="/transcribe")  # fmt: skip
        return Probe(time.perf_counter() - start, result["metrics"]["processing_seconds"])

    def run_batch(self, files: list[Path]) -> float:
        client = self._client()
        start = time.perf_counter()
        sub = client.predict([handle_file(str(p)) for p in files], TINY, "en", "transcribe", 1, False, True, "",
                             api_name="/submit_batch")  # fmt: skip
        for _ in client.submit(sub["token"], sub["batch"], api_name="/watch_batch"):
            pass
        seconds = time.perf_counter() - start
        counts = client.predict(sub["token"], sub["batch"], api_name="/jobs")["counts"]
        assert counts["completed"] == len(files), counts
        return seconds

    def stop(self) -> None:
        self.app.stop()


def measure(target, files: list[Path], short: Path, idle_n: int, seed: int) -> dict:
    """Idle latencies, the batch alone, then the batch with interactive requests throughout."""
    try:
        target.interactive(short)  # loads the model
        idle = [target.interactive(short) for _ in range(idle_n)]
        alone = target.run_batch(files)
        probes: list[Probe] = []
        done = threading.Event()

        def probe() -> None:
            pause = random.Random(seed)
            done.wait(1.0)
            while not done.is_set():
                probes.append(target.interactive(short))
                done.wait(pause.uniform(0.2, 0.6))

        thread = threading.Thread(target=probe)
        thread.start()
        during = target.run_batch(files)
        done.set()
        thread.join()
    finally:
        target.stop()
    return {"idle": idle, "alone": alone, "during": during, "probes": probes}


def interleaved_throughput(models_dir: Path, files: list[Path], steps: list[int], rounds: int) -> pd.DataFrame:
    """Batch throughput of the model calls alone (ModelService.transcribe_batch on groups of 8, no
    store, no interactive load), the settings taking turns round by round so that a load that
    drifts (other processes on the machine) weighs on each alike; medians over the rounds."""
    service = ModelService(Settings(models_dir=models_dir, offline=True), online=False)
    audios = [service.decode(p) for p in files]
    audio_seconds = sum(a.duration for a in audios)
    service.transcribe_batch(TINY, audios[:2], OPTIONS)  # loads the model
    seconds: dict[int, list[float]] = {n: [] for n in steps}
    for _ in range(rounds):
        for n in steps:
            service.settings = replace(service.settings, batch_step_files=n)
            start = time.perf_counter()
            for i in range(0, len(audios), 8):
                service.transcribe_batch(TINY, audios[i : i + 8], OPTIONS)
            seconds[n].append(time.perf_counter() - start)
    first = statistics.median(seconds[steps[0]])
    return pd.DataFrame([
        {"BATCH_STEP_FILES": f"{n} (one call)" if n == 0 else n, "model calls, audio s/s":
         audio_seconds / statistics.median(seconds[n]), "vs first row": first / statistics.median(seconds[n]),
         "rounds (s)": " ".join(f"{x:.1f}" for x in seconds[n])}
        for n in steps
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--idle", type=int, default=7, help="interactive requests timed idle")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 4], help="BATCH_STEP_FILES values (0: one call)")
    parser.add_argument("--via", choices=["app", "service"], default="app", help="through the app, or in process")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the interleaved throughput table (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models_dir = tmp / "models"
        zoo.prepare(models_dir=models_dir, names=["whisper-tiny.en-ct2"], log=lambda _: None)
        files = long_files(tmp, args.files)
        audio_seconds = sum(sf.info(p).duration for p in files)
        short = min((c.path for c in librivox_clips()), key=lambda p: sf.info(p).duration)
        load_before = os.getloadavg()
        kind = ThroughApp if args.via == "app" else InProcess
        runs = {n: measure(kind(models_dir, tmp / f"data{n}", n), files, short, args.idle, n) for n in args.steps}
        throughput = interleaved_throughput(models_dir, files, args.steps, args.rounds) if args.rounds else None
        load_after = os.getloadavg()
    base = runs[args.steps[0]]
    rows = []
    for n, run in runs.items():
        idle = statistics.median(p.latency for p in run["idle"])
        during = [p.latency for p in run["probes"]]
        median = statistics.median(during) if during else float("nan")
        rows.append({
            "BATCH_STEP_FILES": f"{n} (one call)" if n == 0 else n,
            "batch alone, audio s/s": audio_seconds / run["alone"],
            "vs first row": base["alone"] / run["alone"],
            "batch with requests, audio s/s": audio_seconds / run["during"],
            "idle median s": idle,
            "during batch median s": median,
            "ratio": median / idle,
            "during max s": max(during, default=float("nan")),
            "not model, idle / during s": "{:.2f} / {:.2f}".format(
                statistics.median(p.latency - p.processing for p in run["idle"]),
                statistics.median(p.latency - p.processing for p in run["probes"]) if during else float("nan"),
            ),
            "requests": len(during),
        })  # fmt: skip
    print(f"{'through the app' if args.via == 'app' else 'in process'}: {len(files)} files, {audio_seconds:.1f} s of audio (10-30 s each), BATCH_SIZE=8; interactive: "
          f"{sf.info(short).duration:.2f} s clip; {platform.machine()}, {os.cpu_count()} cores; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")  # fmt: skip
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))
    if throughput is not None:
        print(f"\nThe model calls alone, settings taking turns ({args.rounds} rounds, median):\n")
        print(throughput.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()

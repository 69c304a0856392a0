"""Benchmark: batch throughput of one vs two standalone workers on one Redis store, and the job
store's own cost per job (claim + write-back) on Redis against SQLite.

    .venv/bin/python bench/bench_workers.py [--files 50] [--store-jobs 2000]

Throughput: the same batch (the LibriVox clips, repeated; whisper tiny.en int8, English, beam 1,
VAD on) is queued on a fresh Redis store by a runner that does not transcribe; then N workers
(`python -m explorer.worker`, one CPU thread each) start, and the time runs from their start to
the last job's completion (model load included, as a real deployment pays it). Store cost: an
empty result is added, claimed and completed one job at a time, in this process, against SQLite
(a file in a temporary folder) and the same Redis server on loopback. All rows come from one run
on one machine; redis-server is Debian's (the tests start it the same way).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from explorer import zoo  # noqa: E402
from explorer.batch import BatchRunner  # noqa: E402
from explorer.config import Settings  # noqa: E402
from explorer.jobs import NewJob, new_token, open_store, session_key  # noqa: E402
from explorer.service import ModelService  # noqa: E402
from explorer.types import Metrics, TranscribeOptions, Transcription  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

TINY = "faster-whisper/tiny.en"
OPTIONS = TranscribeOptions(language="en", beam_size=1)


def store_cost(url: str, data_dir: Path, jobs: int) -> dict:
    """Seconds per job for add, claim and complete (one job at a time, as a worker does)."""
    store, _ = open_store(url, data_dir)
    session = session_key(new_token())
    metrics = Metrics(1.0, 0.0, 0.1, None, None, "segment", 1, 10.0)
    result = Transcription(TINY, "a short transcript", (), "en", OPTIONS, metrics)
    start = time.perf_counter()
    for _ in range(jobs):
        store.add(session, "bench", [NewJob("a.wav", TINY, OPTIONS, 1.0)])
    added = time.perf_counter()
    for _ in range(jobs):
        (job,) = store.claim(1, worker="bench")
        store.complete(job.id, result)
    done = time.perf_counter()
    return {"add ms/job": (added - start) / jobs * 1000, "claim+complete ms/job": (done - added) / jobs * 1000}


def run_workers(url: str, n: int, files: list[Path], models_dir: Path) -> float:
    """Queue the batch, start n workers, wait for the last job; seconds from the workers' start."""
    settings = Settings(models_dir=models_dir, offline=True, job_store=url, batch_workers=0)
    runner = BatchRunner(ModelService(settings), settings)  # submits only: batch_workers=0
    sub = runner.submit(None, files, TINY, OPTIONS)
    env = {**os.environ, "JOB_STORE": url, "MODELS_DIR": str(models_dir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    workers = [
        subprocess.Popen([sys.executable, "-m", "explorer.worker"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        for _ in range(n)
    ]  # fmt: skip
    try:
        while True:
            counts = runner.counts(sub.token, sub.batch)
            if counts["queued"] == counts["processing"] == 0:
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        assert counts["completed"] == len(files), counts
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(60)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--store-jobs", type=int, default=2000)
    args = parser.parse_args()
    models_dir = Settings.from_env().models_dir
    zoo.prepare(models_dir=models_dir, log=lambda _: None)
    clips = librivox_clips()
    files = [clips[i % len(clips)].path for i in range(args.files)]
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            costs = pd.DataFrame(
                [
                    {"store": "SQLite (WAL file)", **store_cost("", Path(tmp) / "sqlite", args.store_jobs)},
                    {"store": "Redis (loopback)", **store_cost(server.url + "?prefix=cost:", Path(tmp), args.store_jobs)},
                ]
            )
            rows = []
            for n in (1, 2):
                seconds = run_workers(f"{server.url}?prefix=w{n}:", n, files, models_dir)
                rows.append({"workers": n, "seconds": seconds, "files/min": len(files) / seconds * 60})
        finally:
            server.stop()
    throughput = pd.DataFrame(rows)
    throughput["vs one worker"] = throughput["seconds"].iloc[0] / throughput["seconds"]
    print(f"{args.files} files, {TINY} int8, {os.cpu_count()} CPUs ({platform.machine()}), one CPU thread per worker")
    print(throughput.to_markdown(index=False, floatfmt=("g", ".2f", ".1f", ".2f")))
    print(f"\njob store cost, {args.store_jobs} jobs one at a time")
    print(costs.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()

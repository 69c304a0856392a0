"""Load and soak on loopback: a bounded swarm of real Gradio clients sending real speech to /transcribe.

    .venv/bin/python bench/bench_load.py [--levels 1,4,16,50] [--requests 20] [--seconds 60] [--timeout 600]
    .venv/bin/python bench/bench_load.py --soak [MINUTES]     # 10 when no number is given
    .venv/bin/python bench/bench_load.py --quick              # levels 1 and 4, two requests each (a test runs it)

The app is started as a user would (`python app.py`, offline, tiny.en) on a free loopback port,
with its temp folders (GRADIO_TEMP_DIR, TMPDIR) and DATA_DIR in a fresh folder. Each client is a
thread holding its own `gradio_client.Client` (its own session), sending the LibriVox clips of
Debian's pocketsphinx-testdata one after the other. Every request ends in one of four ways:
served (a transcript), refused (Gradio's queue-full message, QUEUE_MAX_SIZE reached), failed
(anything else) or hung (no answer within --timeout). A refused client waits a second before its
next request, as a person would. Levels are bounded in count and time: each client sends
--requests requests or stops starting new ones after --seconds, whichever comes first.

Why threads of gradio_client rather than locust: the Gradio client speaks the app's own protocol
(upload, queue join, server-sent events, heartbeat) exactly as API users do, and raises the queue's
refusal as they see it; locust would need that protocol rewritten on its HTTP user, and its gevent
monkey-patching of threads and sockets would also patch gradio_client's threads and httpx in the
same process (and in pytest, which runs --quick). The clients mostly wait on sockets, so 50
threads cost little CPU next to the server's model calls. Percentiles here are exact (numpy over
every served request), not bucketed.

The soak keeps QUEUE_MAX_SIZE + NUM_WORKERS clients busy (the queue at capacity) for MINUTES,
each upload a distinct file (the clip with a few least-significant bits flipped: inaudible, but a
new upload to the server, as strangers' files are). Every ~10 s it samples the server's RSS
(psutil, the app's process and its children), the size and file count of its temp folders, and
/health (answer and latency). The first --warmup seconds are left out of the slopes (least
squares, per minute); the verdict is "flat" when both slopes are under the thresholds printed.

Exit status 1 if any request failed or hung, or /health ever failed: those are defects, not speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import psutil  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from explorer import zoo  # noqa: E402
from explorer.config import Settings  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402

TINY = "faster-whisper/tiny.en"
# The queue's refusal, in the two places a client meets it: the server's text (gradio/queueing.py,
# HTTP 503 on /queue/join or a "queue_full" event) and the one gradio_client raises as QueueError.
QUEUE_FULL = re.compile(r"Queue is full(\. Max size is \d+ and size is \d+\.|! Please try again\.)")
REFUSAL_PAUSE_SECONDS = 1.0
RSS_INTERVAL_SECONDS = 0.5
SOAK_INTERVAL_SECONDS = 10.0
HEALTH_TIMEOUT_SECONDS = 5.0
# A soak is "flat" when both slopes are under these in absolute value: 2 MB/min of RSS is 20 MB
# over ten minutes (a few % of the app's RSS); 1 MB/min of temp files is about six uploaded 5 s
# clips a minute left behind.
FLAT_RSS_MB_PER_MIN = 2.0
FLAT_TEMP_MB_PER_MIN = 1.0
MB = 1 << 20


@dataclass(frozen=True)
class Clip:
    path: Path
    audio_seconds: float


@dataclass(frozen=True)
class Outcome:
    kind: str  # served | refused | failed | hung
    started: float  # time.perf_counter() when the request began
    seconds: float
    audio_seconds: float
    detail: str = ""  # the refusal's or failure's text


@dataclass
class Level:
    clients: int
    sent: int
    served: int
    refused: int
    failed: int
    hung: int
    p50_s: Optional[float]
    p95_s: Optional[float]
    p99_s: Optional[float]
    requests_per_s: float
    audio_s_per_s: float
    wall_s: float
    rss_max_mb: float
    refusals: list[str] = field(default_factory=list)  # distinct refusal texts
    errors: list[str] = field(default_factory=list)  # distinct failure texts, hangs included


# ---- pure functions -------------------------------------------------------------------------


def is_queue_full(message: str) -> bool:
    return bool(QUEUE_FULL.fullmatch(message.strip()))


def classify(result, error: Optional[BaseException]) -> tuple[str, str]:
    """A request's result or exception as (kind, detail)."""
    if isinstance(error, TimeoutError):  # concurrent.futures.TimeoutError is this one since 3.11
        return "hung", "no answer before the timeout"
    if error is not None:
        text = str(error)
        return ("refused", text) if is_queue_full(text) else ("failed", f"{type(error).__name__}: {text}"[:300])
    if isinstance(result, dict) and str(result.get("text", "")).strip():
        return "served", ""
    return "failed", f"unexpected result: {result!r}"[:300]


def percentile(values: list[float], q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if values else None


def summarize(clients: int, outcomes: list[Outcome], rss_max_bytes: int) -> Level:
    count = {k: sum(o.kind == k for o in outcomes) for k in ("served", "refused", "failed", "hung")}
    served = [o for o in outcomes if o.kind == "served"]
    latencies = [o.seconds for o in served]
    if outcomes:
        wall = max(o.started + o.seconds for o in outcomes) - min(o.started for o in outcomes)
    else:
        wall = 0.0
    return Level(
        clients=clients,
        sent=len(outcomes),
        **count,
        p50_s=percentile(latencies, 50),
        p95_s=percentile(latencies, 95),
        p99_s=percentile(latencies, 99),
        requests_per_s=len(served) / wall if wall else 0.0,
        audio_s_per_s=sum(o.audio_seconds for o in served) / wall if wall else 0.0,
        wall_s=wall,
        rss_max_mb=rss_max_bytes / MB,
        refusals=sorted({o.detail for o in outcomes if o.kind == "refused"}),
        errors=sorted({o.detail for o in outcomes if o.kind in ("failed", "hung")}),
    )


def slope_per_minute(seconds: list[float], values: list[float]) -> float:
    """The least-squares slope of values over time, per minute (0 with fewer than two points)."""
    if len(seconds) < 2 or max(seconds) == min(seconds):
        return 0.0
    return float(np.polyfit(np.asarray(seconds) / 60.0, np.asarray(values, dtype=float), 1)[0])


def levels_table(levels: list[Level]) -> pd.DataFrame:
    rows = [
        {
            "clients": lv.clients,
            "sent": lv.sent,
            "served": lv.served,
            "refused (queue full)": lv.refused,
            "failed": lv.failed,
            "hung": lv.hung,
            "p50 s": lv.p50_s,
            "p95 s": lv.p95_s,
            "p99 s": lv.p99_s,
            "served / s": lv.requests_per_s,
            "audio s / s": lv.audio_s_per_s,
            "server RSS max MB": lv.rss_max_mb,
            "wall s": lv.wall_s,
        }
        for lv in levels
    ]
    return pd.DataFrame(rows)


# ---- the server, measured from outside --------------------------------------------------------


def server_rss(pid: int) -> int:
    """Resident memory of the process and all its children, in bytes (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def folder_usage(folder: Path) -> tuple[int, int]:
    """(bytes, files) under folder; files vanishing while it is walked are skipped."""
    size = files = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return size, files


def probe_health(url: str) -> tuple[bool, float, str]:
    """POST /health as an API client would, outside the queue: (answered, seconds, problem)."""
    start = time.perf_counter()
    try:
        resp = httpx.post(url + "gradio_api/run/health", json={"data": [""]}, timeout=HEALTH_TIMEOUT_SECONDS)
        took = time.perf_counter() - start
        if resp.status_code != 200:
            return False, took, f"HTTP {resp.status_code}: {resp.text[:200]}"
        data = resp.json().get("data")
        ok = isinstance(data, list) and data and isinstance(data[0], dict) and "status" in data[0]
        return bool(ok), took, "" if ok else f"unexpected answer: {resp.text[:200]}"
    except httpx.HTTPError as exc:
        return False, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"


class RssSampler:
    """The server's RSS every RSS_INTERVAL_SECONDS in a thread, as (perf_counter, bytes)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), server_rss(self.pid)))
            self._stop.wait(RSS_INTERVAL_SECONDS)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), server_rss(self.pid)))

    def max(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


# ---- the clients --------------------------------------------------------------------------------


def one_request(client: Client, clip: Clip, timeout: float) -> Outcome:
    start = time.perf_counter()
    job, result, error = None, None, None
    try:
        job = client.submit(
            handle_file(str(clip.path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe"
        )
        result = job.result(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - every exception is an outcome to classify
        error = exc
    took = time.perf_counter() - start
    kind, detail = classify(result, error)
    if kind == "hung" and job is not None:
        job.cancel()
    return Outcome(kind, start, took, clip.audio_seconds, detail)


class Swarm:
    """`clients` threads, each with its own gradio_client.Client, sending clips to /transcribe until
    each has sent max_requests or `seconds` have passed since they all started together."""

    def __init__(self, url: str, clients: int, next_clip: Callable[[int, int], Clip], max_requests: int,
                 seconds: float, timeout: float, done_with_clip: Callable[[Clip], None] = lambda _: None):  # fmt: skip
        self.url, self.clients, self.next_clip, self.done_with_clip = url, clients, next_clip, done_with_clip
        self.max_requests, self.seconds, self.timeout = max_requests, seconds, timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._in_flight: dict[int, tuple[float, Clip]] = {}
        # Every client is built (config fetched, heartbeat open) before the clock starts.
        self._ready = threading.Barrier(clients + 1, timeout=300)
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        self.started = 0.0

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _client(self, index: int) -> None:
        try:
            client = Client(self.url, verbose=False, download_files=False, analytics_enabled=False,
                            httpx_kwargs={"timeout": self.timeout})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a client that cannot even connect is a failure
            client = None
            self._record(Outcome("failed", time.perf_counter(), 0.0, 0.0, f"connect: {type(exc).__name__}: {exc}"))
        self._ready.wait()
        if client is None:
            return
        try:
            deadline = self.started + self.seconds
            for k in range(self.max_requests):
                if time.perf_counter() >= deadline:
                    break
                clip = self.next_clip(index, k)
                with self._lock:
                    self._in_flight[index] = (time.perf_counter(), clip)
                outcome = one_request(client, clip, self.timeout)
                with self._lock:
                    del self._in_flight[index]
                    self.outcomes.append(outcome)
                self.done_with_clip(clip)
                if outcome.kind == "refused":
                    time.sleep(REFUSAL_PAUSE_SECONDS)
        finally:
            client.close()

    def start(self) -> "Swarm":
        for t in self._threads:
            t.start()
        self.started = time.perf_counter()  # provisional; set again as the barrier opens
        self._ready.wait()
        self.started = time.perf_counter()
        return self

    def join(self) -> list[Outcome]:
        """Wait for every client; one still in a request well past its timeout counts as hung."""
        limit = self.started + self.seconds + self.timeout + 30
        for t in self._threads:
            t.join(max(0.0, limit - time.perf_counter()))
        with self._lock:
            for began, clip in self._in_flight.values():
                took = time.perf_counter() - began
                self.outcomes.append(Outcome("hung", began, took, clip.audio_seconds, "client thread never returned"))
            self._in_flight.clear()
            return list(self.outcomes)


# ---- runs ---------------------------------------------------------------------------------------


def real_clips() -> list[Clip]:
    return [Clip(c.path, sf.info(str(c.path)).duration) for c in librivox_clips()]


class DistinctClips:
    """A new file for every request: a real clip with the request's number written into the
    least-significant bits of its first 32 samples (inaudible), so each upload is new to the server."""

    def __init__(self, clips: list[Clip], folder: Path):
        self.clips, self.folder = clips, folder
        self.samples = [sf.read(str(c.path), dtype="int16")[0] for c in clips]
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, client: int, k: int) -> Clip:
        with self._lock:
            number = self._count
            self._count += 1
        which = number % len(self.clips)
        samples = self.samples[which].copy()
        bits = (number >> np.arange(32)) & 1
        samples[:32] = (samples[:32] & ~1) | bits.astype(np.int16)
        path = self.folder / f"soak-{number}.wav"
        sf.write(str(path), samples, 16000, subtype="PCM_16")
        return Clip(path, self.clips[which].audio_seconds)

    @staticmethod
    def remove(clip: Clip) -> None:
        clip.path.unlink(missing_ok=True)


def start_app(models_dir: Path, folder: Path, queue_max_size: int, workers: int,
              output_ttl_minutes: float = Settings.output_ttl_minutes) -> tuple[RunningApp, list[Path]]:
    """The app with its temp folders and job store in `folder`; returns it and its temp folders."""
    gradio_tmp, tmp, data = folder / "gradio-tmp", folder / "tmp", folder / "data"
    for f in (gradio_tmp, tmp, data):
        f.mkdir(parents=True, exist_ok=True)
    app = RunningApp(
        models_dir,
        folder / "app.log",
        GRADIO_TEMP_DIR=gradio_tmp,
        TMPDIR=tmp,
        DATA_DIR=data,
        QUEUE_MAX_SIZE=queue_max_size,
        NUM_WORKERS=workers,
        OUTPUT_TTL_MINUTES=output_ttl_minutes,
    )
    return app, [gradio_tmp, tmp]


def warm_up(app: RunningApp, clip: Clip) -> None:
    """One request first, so the model's load is no level's latency."""
    client = app.client()
    try:
        client.predict(handle_file(str(clip.path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe")
    finally:
        client.close()


def run_levels(app: RunningApp, levels: list[int], requests: int, seconds: float, timeout: float,
               log: Callable[[str], None]) -> list[Level]:  # fmt: skip
    clips = real_clips()
    warm_up(app, clips[0])
    results = []
    for n in levels:
        log(f"level {n}: up to {requests} requests per client or {seconds:g} s")

        def next_clip(client: int, k: int) -> Clip:
            return clips[(client + k) % len(clips)]

        with RssSampler(app.proc.pid) as rss:
            outcomes = Swarm(app.url, n, next_clip, requests, seconds, timeout).start().join()
        level = summarize(n, outcomes, rss.max())
        log(f"  {level.served} served, {level.refused} refused, {level.failed} failed, {level.hung} hung "
            f"in {level.wall_s:.1f} s")  # fmt: skip
        results.append(level)
    return results


@dataclass
class SoakSample:
    t_s: float  # since the soak's start, warm-up included
    rss_mb: float
    temp_mb: float
    temp_files: int
    temp_mb_by_folder: dict[str, float]  # GRADIO_TEMP_DIR's and TMPDIR's shares
    health_ok: bool
    health_s: float
    health_problem: str


def sample_soak(app: RunningApp, temp_folders: list[Path], started: float, total_s: float,
                log: Callable[[str], None]) -> list[SoakSample]:  # fmt: skip
    """Every SOAK_INTERVAL_SECONDS until total_s: RSS, temp folders, /health."""
    samples = []
    while True:
        t = time.perf_counter() - started
        usage = [folder_usage(f) for f in temp_folders]
        ok, took, problem = probe_health(app.url)
        by_folder = {f.name: u[0] / MB for f, u in zip(temp_folders, usage, strict=True)}
        sample = SoakSample(t, server_rss(app.proc.pid) / MB, sum(u[0] for u in usage) / MB,
                            sum(u[1] for u in usage), by_folder, ok, took, problem)  # fmt: skip
        samples.append(sample)
        log(f"  t={t:6.0f} s  RSS {sample.rss_mb:7.1f} MB  temp {sample.temp_mb:7.2f} MB in {sample.temp_files} files "
            f"({', '.join(f'{k} {v:.2f}' for k, v in by_folder.items())})  "
            f"/health {'ok' if ok else 'FAILED ' + problem} in {took * 1000:.0f} ms")  # fmt: skip
        if t >= total_s:
            return samples
        time.sleep(min(SOAK_INTERVAL_SECONDS, max(0.0, total_s - t)))


def run_soak(app: RunningApp, temp_folders: list[Path], clients: int, minutes: float, warmup_s: float,
             timeout: float, client_folder: Path, log: Callable[[str], None]) -> dict:  # fmt: skip
    distinct = DistinctClips(real_clips(), client_folder)
    warm_up(app, real_clips()[0])
    total_s = warmup_s + minutes * 60
    # Bounded in count too: no client sends more than one request per 0.1 s of the soak.
    swarm = Swarm(app.url, clients, distinct, int(total_s * 10), total_s, timeout, DistinctClips.remove)
    with RssSampler(app.proc.pid) as rss:
        swarm.start()
        samples = sample_soak(app, temp_folders, swarm.started, total_s, log)
        outcomes = swarm.join()
    measured = [s for s in samples if s.t_s >= warmup_s]
    times = [s.t_s for s in measured]
    # RSS moves by tens of MB within a request (decoded audio, features): its slope is fitted on
    # every RSS_INTERVAL_SECONDS sample after the warm-up, not only on the ~10 s ones.
    rss_after = [(t - swarm.started, b / MB) for t, b in rss.samples if t - swarm.started >= warmup_s]
    rss_slope = slope_per_minute([t for t, _ in rss_after], [b for _, b in rss_after])
    temp_slope = slope_per_minute(times, [s.temp_mb for s in measured])
    files_slope = slope_per_minute(times, [s.temp_files for s in measured])
    level = summarize(clients, outcomes, rss.max())
    health_times = [s.health_s for s in samples if s.health_ok]
    flat = abs(rss_slope) < FLAT_RSS_MB_PER_MIN and abs(temp_slope) < FLAT_TEMP_MB_PER_MIN
    return {
        "minutes": minutes,
        "warmup_s": warmup_s,
        "clients": clients,
        "requests": asdict(level),
        "rss_mb_first": measured[0].rss_mb if measured else None,
        "rss_mb_last": measured[-1].rss_mb if measured else None,
        "rss_slope_mb_per_min": rss_slope,
        "temp_mb_first": measured[0].temp_mb if measured else None,
        "temp_mb_last": measured[-1].temp_mb if measured else None,
        "temp_slope_mb_per_min": temp_slope,
        "temp_files_slope_per_min": files_slope,
        "health_failures": sum(not s.health_ok for s in samples),
        "health_samples": len(samples),
        "health_p50_ms": percentile(health_times, 50) * 1000 if health_times else None,
        "health_max_ms": max(health_times) * 1000 if health_times else None,
        "thresholds": {"rss_mb_per_min": FLAT_RSS_MB_PER_MIN, "temp_mb_per_min": FLAT_TEMP_MB_PER_MIN},
        "verdict": "flat" if flat else "not flat",
        "samples": [asdict(s) for s in samples],
    }


def soak_table(soak: dict) -> pd.DataFrame:
    r = soak["requests"]
    rows = [
        ("clients (QUEUE_MAX_SIZE + NUM_WORKERS)", soak["clients"]),
        ("measured minutes (after warm-up)", f"{soak['minutes']:g} (after {soak['warmup_s']:g} s)"),
        ("requests sent / served / refused / failed / hung",
         f"{r['sent']} / {r['served']} / {r['refused']} / {r['failed']} / {r['hung']}"),
        ("served p50 / p95 s", f"{r['p50_s'] or 0:.2f} / {r['p95_s'] or 0:.2f}"),
        ("server RSS first → last MB", f"{soak['rss_mb_first']:.1f} → {soak['rss_mb_last']:.1f}"),
        ("RSS slope MB/min", f"{soak['rss_slope_mb_per_min']:+.2f} (flat under ±{FLAT_RSS_MB_PER_MIN:g})"),
        ("temp folders first → last MB", f"{soak['temp_mb_first']:.2f} → {soak['temp_mb_last']:.2f}"),
        ("temp slope MB/min (files/min)", f"{soak['temp_slope_mb_per_min']:+.2f} "
         f"({soak['temp_files_slope_per_min']:+.1f}) (flat under ±{FLAT_TEMP_MB_PER_MIN:g})"),
        ("/health failures / samples", f"{soak['health_failures']} / {soak['health_samples']}"),
        ("/health p50 / max ms", f"{soak['health_p50_ms'] or 0:.0f} / {soak['health_max_ms'] or 0:.0f}"),
        ("verdict", soak["verdict"]),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["soak", "value"])


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--levels", default="1,4,16,50", help="concurrent clients per level, comma-separated; 'none' skips"
    )
    parser.add_argument("--requests", type=int, default=20, help="requests per client per level (the count bound)")
    parser.add_argument(
        "--seconds", type=float, default=60, help="no new request after this long in a level (the time bound)"
    )
    # The longest honest wait is a full queue ahead: (QUEUE_MAX_SIZE + NUM_WORKERS) / NUM_WORKERS
    # requests, 33 x ~1 s on a quiet 2-core machine, 33 x ~6 s when other work shares the cores.
    parser.add_argument("--timeout", type=float, default=600, help="a request with no answer by then is a hang")
    parser.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=10.0,
        metavar="MINUTES",
        help="soak at the queue's capacity (after the levels if any)",
    )
    parser.add_argument(
        "--warmup", type=float, help="soak seconds left out of the slopes (default: 30 s or 1.5 output lifetimes)"
    )
    parser.add_argument(
        "--output-ttl-minutes", type=float, default=1.0,
        help="the soak app's OUTPUT_TTL_MINUTES: uploads live this long, so the temp folders level off after it",
    )  # fmt: skip
    parser.add_argument("--queue-max-size", type=int, default=Settings.queue_max_size, help="the app's QUEUE_MAX_SIZE")
    parser.add_argument("--workers", type=int, default=Settings.num_workers, help="the app's NUM_WORKERS")
    parser.add_argument(
        "--quick", action="store_true", help="levels 1 and 4, two requests per client, QUEUE_MAX_SIZE 1"
    )
    parser.add_argument(
        "--models-dir", type=Path, help="prepared models (default: tiny.en prepared into a temporary folder)"
    )
    parser.add_argument(
        "--json", type=Path, help="also write the figures here (default: bench/results/load-<time>.json)"
    )
    args = parser.parse_args()
    if args.quick:
        args.levels, args.requests, args.seconds, args.timeout, args.queue_max_size = "1,4", 2, 600, 120, 1
    levels = [] if args.levels.strip() in ("", "none") else [int(x) for x in args.levels.split(",")]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    report: dict = {
        "machine": machine(),
        "queue_max_size": args.queue_max_size,
        "workers": args.workers,
        "requests_per_client": args.requests,
        "seconds_per_level": args.seconds,
        "timeout_s": args.timeout,
    }
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmp = Path(tmp)
        models_dir = args.models_dir
        if models_dir is None:
            models_dir = tmp / "models"
            zoo.prepare(models_dir=models_dir, names=["whisper-tiny.en-ct2"], log=lambda _: None)
        if levels:
            app, _ = start_app(models_dir, tmp / "levels", args.queue_max_size, args.workers)
            try:
                report["levels"] = [
                    asdict(lv) for lv in run_levels(app, levels, args.requests, args.seconds, args.timeout, log)
                ]
            finally:
                app.stop()
        if args.soak:
            # Uploads stay OUTPUT_TTL_MINUTES (and up to a quarter more): the slopes start once the
            # first ones have gone, when the temp folders hold a steady lifetime's worth.
            if args.warmup is None:
                args.warmup = max(30.0, 1.5 * args.output_ttl_minutes * 60)
            app, temp_folders = start_app(
                models_dir, tmp / "soak", args.queue_max_size, args.workers, args.output_ttl_minutes
            )
            (tmp / "clients").mkdir()
            clients = args.queue_max_size + args.workers
            log(f"soak: {clients} clients for {args.soak:g} min after {args.warmup:g} s of warm-up "
                f"(OUTPUT_TTL_MINUTES {args.output_ttl_minutes:g})")  # fmt: skip
            report["output_ttl_minutes"] = args.output_ttl_minutes
            try:
                report["soak"] = run_soak(
                    app, temp_folders, clients, args.soak, args.warmup, args.timeout, tmp / "clients", log
                )
            finally:
                app.stop()
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    m = report["machine"]
    print(f"{m['date']}; {m['cpu']}, {m['cores']} cores, Python {m['python']}; load average "
          f"{m['load_average'][0]} at the start, {m['load_average_end'][0]} at the end; "
          f"QUEUE_MAX_SIZE {args.queue_max_size}, NUM_WORKERS {args.workers}, tiny.en int8\n")  # fmt: skip
    if levels:
        lengths = [c.audio_seconds for c in real_clips()]
        print(f"/transcribe of the {len(lengths)} LibriVox clips ({min(lengths):.1f} to {max(lengths):.1f} s), "
              f"up to {args.requests} requests per client "
              f"or {args.seconds:g} s per level, {args.timeout:g} s timeout; latency of served requests\n")  # fmt: skip
        table = levels_table([Level(**lv) for lv in report["levels"]])
        print(table.to_markdown(index=False, floatfmt=["g"] * 6 + [".2f"] * 5 + [".0f"] * 2))
        print()
        for lv in report["levels"]:
            for text in lv["refusals"] + lv["errors"]:
                print(f"- {lv['clients']} clients: {text}")
    if args.soak:
        print(soak_table(report["soak"]).to_markdown(index=False))
    out = args.json or ROOT / "bench" / "results" / f"load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nfigures written to {out}")

    problems = sum(lv["failed"] + lv["hung"] for lv in report.get("levels", []))
    if "soak" in report:
        problems += report["soak"]["requests"]["failed"] + report["soak"]["requests"]["hung"]
        problems += report["soak"]["health_failures"]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: how soon an abandoned /simulate_stream stops, on a running app.

    .venv/bin/python bench/bench_stream_stop.py [--trials 3]

Each trial starts a real-time stream of a 7.1 s LibriVox clip through faster-whisper tiny.en,
waits for two passes, then leaves: either gradio_client's job.cancel() or, as a closed browser
tab does, by dropping the event stream's HTTP connection. The delay is from leaving to the app's
log line "server stream ... closed by the client" (the handler's `finally`); "runs after" counts
model calls the app made in the 3 s after that line (0: nothing runs on).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from explorer.config import Settings  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402

TINY = "faster-whisper/tiny.en"
CLOSED = "closed by the client"


ADMIN_TOKEN = "bench-stream-stop-" + "a" * 16  # runs per model are /health's admin detail


def model_runs(client: Client) -> int:
    return sum(m["runs"] for m in client.predict(ADMIN_TOKEN, api_name="/health")["detail"]["loaded_models"])


def wait_closed(log: Path, seen: int, start: float, timeout: float = 60) -> float:
    """Seconds from `start` until the log holds more than `seen` "closed" lines."""
    while log.read_text().count(CLOSED) <= seen:
        if time.monotonic() - start > timeout:
            raise RuntimeError("the stream was not closed")
        time.sleep(0.02)
    return time.monotonic() - start


def leave_by_cancel(app: RunningApp, client: Client, clip: Path) -> float:
    job = client.submit(handle_file(str(clip)), TINY, "en", 1.0, api_name="/simulate_stream")
    while sum(isinstance(u[0], str) for u in job.outputs()) < 2:
        time.sleep(0.05)
    seen, start = app.log_path.read_text().count(CLOSED), time.monotonic()
    job.cancel()  # returns once the server has closed the handler (Gradio's /cancel waits for it)
    return wait_closed(app.log_path, seen, start)


def leave_by_disconnect(app: RunningApp, clip: Path) -> float:
    """The REST route: upload, POST the call, read the event stream for two passes, drop it."""
    api = app.url + "gradio_api/"
    with clip.open("rb") as f:
        (path,) = httpx.post(api + "upload", files={"files": (clip.name, f)}).json()
    audio = {"path": path, "meta": {"_type": "gradio.FileData"}}
    event = httpx.post(api + "call/simulate_stream", json={"data": [audio, TINY, "en", 1.0]}).json()["event_id"]
    passes = 0
    with httpx.stream("GET", f"{api}call/simulate_stream/{event}", timeout=60) as response:
        for line in response.iter_lines():
            passes += line.startswith("data:") and "<div>" in line
            if passes >= 2:
                seen = app.log_path.read_text().count(CLOSED)
                break
        start = time.monotonic()
    return wait_closed(app.log_path, seen, start)  # the connection is closed on leaving the block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    clip = librivox_clips()[0].path
    log = Path("/tmp/bench_stream_stop.log")
    app = RunningApp(Settings().models_dir, log, NUM_WORKERS=1, DATA_DIR="/tmp/bench_stream_stop_data",
                     ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        client = Client(app.url, verbose=False)
        print("| way of leaving | trial | stop delay (s) | model calls in the 3 s after |")
        print("|---|---|---|---|")
        for way in ("job.cancel()", "connection dropped"):
            delays = []
            for trial in range(args.trials):
                delay = leave_by_cancel(app, client, clip) if way == "job.cancel()" else leave_by_disconnect(app, clip)
                before = model_runs(client)
                time.sleep(3)
                delays.append(delay)
                print(f"| {way} | {trial + 1} | {delay:.2f} | {model_runs(client) - before} |")
            print(f"| {way} | median | {statistics.median(delays):.2f} | |")
    finally:
        app.stop()


if __name__ == "__main__":
    main()

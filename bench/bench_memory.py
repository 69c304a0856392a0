"""Where the soak's RSS growth goes: the app in this process under tracemalloc, /transcribe requests
from distinct gradio_client sessions, and what stays allocated between checkpoints.

    .venv/bin/python bench/bench_memory.py [--rounds 3] [--requests 100] [--clients 4] [--top 15]

The app is composed as app.py does (same service, runner, routes, sweeper), offline with tiny.en,
on a free loopback port, with its temp folders in a fresh folder; tracemalloc (--frames) runs from
before the app is built. Each round sends --requests requests of a distinct upload, each from a new
Client (a new Gradio session, as strangers opening the page are) or, with --same-sessions, from
--clients clients that keep their session (as the soak's do), --clients at a time. After every round:
gc.collect(), the traced memory, the process RSS, Gradio's per-session tables (state_holder
sessions, the queue's and the app's per-event dicts) and a tracemalloc snapshot. Printed: the
per-round table, then the allocation sites (grouped by the first frame inside gradio/ or explorer/)
whose size grew between the first and the last checkpoint, with bytes per request.

Growth that is proportional to requests and held by a named table is a leak of that table;
growth with none of that (traced memory flat while RSS climbs) is the allocator's.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FOLDER = Path(tempfile.mkdtemp(prefix="bench-memory-"))
for name in ("gradio-tmp", "tmp", "data"):
    (FOLDER / name).mkdir()
os.environ["GRADIO_TEMP_DIR"] = str(FOLDER / "gradio-tmp")
os.environ["TMPDIR"] = str(FOLDER / "tmp")
os.environ["DATA_DIR"] = str(FOLDER / "data")
tempfile.tempdir = None  # read TMPDIR again

import pandas as pd  # noqa: E402
import psutil  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from bench.bench_load import DistinctClips, real_clips  # noqa: E402
from tests.running_app import free_port  # noqa: E402

TINY = "faster-whisper/tiny.en"


def start_app(port: int):
    """app.py's composition, launched without blocking; returns the Blocks."""
    os.environ.update(PORT=str(port), HOST="127.0.0.1", PREPARE_ON_START="0")
    from explorer.batch import BatchRunner
    from explorer.config import Settings
    from explorer.isolation import isolation_middleware
    from explorer.live import LiveStreams
    from explorer.live_api import build_live_router
    from explorer.openai_api import build_openai_router
    from explorer.service import ModelService
    from explorer.ui import CSS, build_app
    from explorer.ui.widgets import gradio_cache, start_output_sweeper

    settings = Settings.from_env()
    service = ModelService(settings)
    runner = BatchRunner(service, settings, audio_copies=gradio_cache() / "job-audio")
    runner.start()
    live = LiveStreams(service, settings)
    live.start_reaper()
    demo = build_app(service, settings, runner, live)
    start_output_sweeper(settings, demo)
    routes = build_openai_router(service, settings, demo._queue).routes + build_live_router(live, settings).routes
    demo.launch(server_name="127.0.0.1", server_port=port, max_file_size=settings.max_upload_bytes, css=CSS,
                state_session_capacity=settings.max_sessions,
                prevent_thread_lock=True, quiet=True,
                app_kwargs={"routes": routes, "middleware": isolation_middleware(settings.cross_origin_isolation)})  # fmt: skip
    return demo


def session_tables(demo) -> dict[str, int]:
    """Sizes of Gradio's per-session and per-event tables (0 where this Gradio has none)."""
    app, queue = demo.server_app, demo._queue
    sizes = {
        "state_holder sessions": len(getattr(demo.state_holder, "session_data", {})),
        "state_holder time_last_used": len(getattr(demo.state_holder, "time_last_used", {})),
        "queue event_ids_to_events": len(getattr(queue, "event_ids_to_events", {})),
        "queue pending_messages_per_session": len(getattr(queue, "pending_messages_per_session", {})),
        "queue pending_event_ids_session": len(getattr(queue, "pending_event_ids_session", {})),
        "app iterators": len(getattr(app, "iterators", {})),
        "app iterators_to_reset": len(getattr(app, "iterators_to_reset", set())),
        "blocks.temp_file_sets": len(getattr(demo, "temp_file_sets", [])),
    }
    return sizes


def one_request(url: str, clip, client: Client | None = None) -> None:
    """One /transcribe from `client`'s session, or from a new session (a new Client) when None."""
    own = client is None
    client = client or Client(url, verbose=False)
    try:
        client.predict(handle_file(str(clip.path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe")
    finally:
        if own:
            client.close()
        DistinctClips.remove(clip)


def checkpoint(demo, label: str, done: int, started: float) -> tuple[dict, tracemalloc.Snapshot]:
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    types = Counter(type(o).__name__ for o in gc.get_objects())
    row = {
        "after": label, "requests": done, "s": round(time.monotonic() - started, 1),
        "traced MB": round(current / 1e6, 2), "RSS MB": round(psutil.Process().memory_info().rss / 1e6, 1),
        "gc objects": sum(types.values()), **session_tables(demo),
    }
    return row | {"_types": types}, tracemalloc.take_snapshot()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100, help="requests per round")
    parser.add_argument("--clients", type=int, default=4, help="requests in flight")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--frames", type=int, default=10, help="tracemalloc frames kept per allocation")
    parser.add_argument("--same-sessions", action="store_true",
                        help="each of --clients keeps one Client (one session) for all its requests, as the soak's do")  # fmt: skip
    args = parser.parse_args()

    tracemalloc.start(args.frames)
    port = free_port()
    demo = start_app(port)
    url = f"http://127.0.0.1:{port}/"
    clips = DistinctClips(real_clips(), FOLDER)
    started = time.monotonic()
    for _ in range(3):  # warm-up: the model's load, first-call caches
        one_request(url, clips(0, 0))
    rows, snapshots, done = [], [], 0
    row, snap = checkpoint(demo, "warm-up", done, started)
    rows.append(row), snapshots.append(snap)
    lock = threading.Lock()
    errors: list[str] = []

    kept = threading.local()

    def send(_: int) -> None:
        nonlocal done
        if args.same_sessions and not hasattr(kept, "client"):
            kept.client = Client(url, verbose=False)
        try:
            one_request(url, clips(0, 0), getattr(kept, "client", None))
        except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
            errors.append(repr(exc)[:200])
        with lock:
            done += 1

    for r in range(args.rounds):
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(send, range(args.requests)))
        time.sleep(2)  # the last events' clean-up
        row, snap = checkpoint(demo, f"round {r + 1}", done, started)
        rows.append(row), snapshots.append(snap)
        table = pd.DataFrame([{k: v for k, v in r.items() if k != "_types"} for r in rows])
        print(table.T.to_string(header=False), f"\nerrors: {len(errors)}", errors[:3], flush=True)
        if r >= 1:
            report(rows, snapshots, args.top)
    demo.close()
    shutil.rmtree(FOLDER, ignore_errors=True)
    os._exit(0)  # the runner's and sweeper's daemon threads


def report(rows: list[dict], snapshots: list, top: int) -> None:
    first, last = rows[1], rows[-1]  # from the end of round 1: first-call caches are in already
    n = last["requests"] - first["requests"]
    grown = {t: c - first["_types"].get(t, 0) for t, c in last["_types"].items()}
    print(f"\ngc object types grown over the last {n} requests (count, per request):")
    for t, c in sorted(grown.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {c:>8} {c / n:>7.2f}  {t}")

    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    diff = snapshots[-1].filter_traces(keep).compare_to(snapshots[1].filter_traces(keep), "traceback")
    by_site: Counter = Counter()
    example: dict[str, str] = {}
    for stat in diff:
        frames = [f for f in stat.traceback if "/gradio/" in f.filename or "/explorer/" in f.filename
                  or "/starlette/" in f.filename or "/fastapi/" in f.filename]  # fmt: skip
        frame = frames[-1] if frames else stat.traceback[-1]  # the innermost of ours / Gradio's (oldest first)
        site = f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        by_site[site] += stat.size_diff
        example.setdefault(site, str(stat.traceback[-1]))
    print(f"\ntraced bytes grown over the last {n} requests, by allocation site (bytes, per request):")
    for site, size in by_site.most_common(top):
        print(f"  {size:>10} {size / n:>8.0f}  {site}   (innermost: {example[site]})")
    print(f"  total {sum(by_site.values())} bytes, {sum(by_site.values()) / n:.0f} per request", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

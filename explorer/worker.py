"""A standalone batch worker: ``python -m explorer.worker [--workers N] [--models KEY,...] [--grace S]``.

It runs on any machine that can reach the shared job store (``JOB_STORE=redis://...``; the rest of
the configuration is the app's environment: MODELS_DIR, DEVICE, BATCH_SIZE, JOB_LEASE_SECONDS...),
takes jobs first-in first-out, runs the model each job asks for (each model is loaded once and kept,
up to MAX_LOADED_MODELS), and writes results and metrics back to the store, where every app replica
sees them. It has no UI and submits nothing: it is a ``BatchRunner`` with worker threads only.
Several workers and several app replicas can share one store; an app replica that should only
serve the UI sets BATCH_WORKERS=0.

It checks the store once at start: a store it cannot use (a bad URL, refused credentials, no
server there) ends it at once with the reason and exit status 2.

One line per job goes to stderr (id, model, outcome, seconds). While models load (``--models``) it
holds nothing yet, and SIGTERM or SIGINT ends it at once (the signal's default action). Once it
takes jobs, SIGTERM or SIGINT stops it cleanly: it claims nothing more, lets the jobs in hand
finish for up to ``--grace`` seconds, puts those still running back in the queue (in their place)
for another worker, leaves the worker registry and exits 0; a second signal stops the waiting at
once. A worker killed outright (kill -9, a lost machine) loses nothing either: its leases run out
and any runner on the store queues its jobs again (a job whose worker dies on each of
MAX_ATTEMPTS claims fails instead, so that a job that crashes workers cannot take the fleet down).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from explorer import catalog  # noqa: E402
from explorer.config import Settings, store_kind  # noqa: E402

log = logging.getLogger("explorer.worker")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m explorer.worker",
        description="Take batch jobs from the shared job store (JOB_STORE) and run them; no UI.",
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="threads taking jobs (default BATCH_WORKERS, at least 1); device slots (NUM_WORKERS) are raised to match",
    )  # fmt: skip
    parser.add_argument("--models", default="", help="comma-separated model keys to load before taking jobs")
    parser.add_argument(
        "--grace", type=float, default=30.0,
        help="on SIGTERM/SIGINT, seconds the jobs in hand may take to finish before they go back to the queue",
    )  # fmt: skip
    parser.add_argument("--store", default=None, help="the job store URL (default JOB_STORE), e.g. redis://host:6379/0")
    return parser.parse_args(argv)


def worker_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """The app's settings with the command line's overrides. Raises ValueError with the reason
    when this cannot be a worker."""
    store = settings.job_store if args.store is None else args.store.strip()
    if store_kind(store) != "redis":
        # A same-machine SQLite file would claim safely, but the app takes back every processing job
        # of its (unshared) SQLite store when it starts, so a worker's jobs could run twice.
        raise ValueError(
            "a standalone worker needs a shared job store: set JOB_STORE (or --store) to the Redis/Valkey URL the "
            "app uses, e.g. redis://host:6379/0. With the default SQLite store, the app's own BATCH_WORKERS threads "
            "run the jobs."
        )
    workers = settings.batch_workers if args.workers is None else args.workers
    if workers < 1:
        raise ValueError("--workers (or BATCH_WORKERS) must be at least 1 for a worker")
    if args.grace < 0:
        raise ValueError("--grace must be 0 or more seconds")
    # Each thread waits for a device slot before its model call: fewer slots than threads would
    # leave claimed jobs waiting under their leases while other workers sit idle.
    out = replace(settings, job_store=store, batch_workers=workers, num_workers=max(settings.num_workers, workers))
    out.validate()
    return out


def preload_keys(text: str, settings: Settings) -> list[str]:
    """The --models keys, checked against the catalog (ValueError names what is wrong)."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in catalog.BY_KEY]
    if unknown:
        raise ValueError(f"unknown model key(s) {', '.join(unknown)} (see /models for the keys)")
    if len(keys) > settings.max_loaded_models:
        raise ValueError(f"--models names {len(keys)} models but MAX_LOADED_MODELS is {settings.max_loaded_models}")
    return keys


def redacted(url: str) -> str:
    """The store URL for the log, without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_checked(settings: Settings):
    """The store and spool that settings.job_store names, after one cheap read: any error there
    (a malformed URL, refused credentials, no server) is raised, not retried as an outage."""
    from explorer.jobs import open_store

    store, spool = open_store(settings.job_store, settings.data_dir)
    store.workers(max_age=0)
    return store, spool


def main(argv: Optional[list[str]] = None) -> int:
    # Until the runner exists nothing is held: a signal ends the process at once, even mid-load.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    args = parse_args(argv)
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format=log_format)
    logging.getLogger("explorer").setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    try:
        settings = worker_settings(Settings.from_env(), args)
        keys = preload_keys(args.models, settings)
    except ValueError as exc:
        print(f"explorer.worker: {exc}", file=sys.stderr)
        return 2
    try:
        store, spool = open_checked(settings)
    except Exception as exc:
        print(f"explorer.worker: cannot use the job store at {redacted(settings.job_store)}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)  # fmt: skip
        return 2

    from explorer.batch import BatchRunner  # the heavy imports (engines) after the arguments are checked
    from explorer.service import ModelError, ModelService

    service = ModelService(settings)
    for key in keys:
        try:
            service.preload(key)
        except ModelError as exc:
            print(f"explorer.worker: {exc}", file=sys.stderr)
            return 1
        log.info("loaded %s", key)

    stopping = threading.Event()
    runner = BatchRunner(service, settings, store, spool)

    def on_signal(signum: int, _frame) -> None:
        if stopping.is_set():
            runner.hurry()  # a second signal: stop waiting for the jobs in hand
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)  # from here on, a signal stops the runner cleanly
    signal.signal(signal.SIGINT, on_signal)
    runner.start()
    log.info("worker %s: %d thread(s) on %s, lease %g s", runner.worker, settings.batch_workers,
             redacted(settings.job_store), settings.job_lease_seconds)  # fmt: skip
    while not stopping.wait(1.0):  # a timeout, so that the signal handler runs promptly
        pass
    log.info("stopping: no more claims, up to %g s for the jobs in hand", args.grace)
    released = runner.stop(grace=args.grace)
    log.info("worker %s stopped (%d job(s) given back)", runner.worker, released)
    if runner.working():
        # A model call given up on is still running in a thread: leave without the interpreter's
        # shutdown, which would tear its model down under it.
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

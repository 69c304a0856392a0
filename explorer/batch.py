"""Batch jobs, end to end: submit files, worker threads that run them, a sweeper that expires them.

``BatchRunner`` sits between the UI/API and the job store: it decodes and spools each uploaded
file at submission (a file that will not decode becomes a failed job with the reason, and the rest
go on), keeps ``batch_workers`` threads taking jobs first-in first-out from the store, and runs
them through ``ModelService.transcribe_batch`` (a lower priority than interactive requests, with
cross-file batching where the engine allows). Callers speak in session tokens; the store only
ever sees their hashes. The store and the spool are those JOB_STORE names (``open_store``): SQLite
and a folder by default, or a Redis/Valkey server that workers on other machines share; jobs are
claimed under a lease that a heartbeat thread renews while they run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from explorer import catalog, formats
from explorer.audio import Audio, AudioError, load_audio
from explorer.config import Settings
from explorer.jobs import (
    FINISHED, LEASE_SECONDS, AudioSpool, Job, JobStore, NewJob, Spool, new_token, open_store, session_key,
)  # fmt: skip
from explorer.service import ModelError, ModelService
from explorer.types import TranscribeOptions

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]


class JobError(LookupError):
    """A job request that cannot be met; str() is a message for the user."""


@dataclass(frozen=True)
class Submission:
    token: str
    batch: str
    jobs: list[Job]


def job_row(job: Job) -> dict:
    """One line of a jobs table: what a user scans for (no transcript body)."""
    m = job.result.metrics if job.result else None
    took = job.finished_at - job.started_at if job.finished_at and job.started_at else None
    return {
        "id": job.id,
        "file": job.filename,
        "model": job.model,
        "status": job.status,
        "audio_seconds": round(job.audio_seconds, 2),
        "rtfx": round(m.rtfx, 1) if m and m.rtfx else None,
        "seconds": round(took, 2) if took is not None else None,
        "batch_size": m.batch_size if m else None,
        "error": job.error,
    }


class BatchRunner:
    def __init__(
        self,
        service: ModelService,
        settings: Settings,
        store: Optional[JobStore] = None,
        spool: Optional[AudioSpool] = None,
    ):
        """The store and spool that settings.job_store names, unless given (a given store without a
        spool gets the spool folder in settings.data_dir)."""
        self.service = service
        self.settings = settings
        if store is None:
            store, spool = open_store(settings.job_store, settings.data_dir)
        self.store, self.spool = store, spool or Spool(settings.data_dir / "spool")
        # Unique per runner: several may share a store, from one host or many.
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self._running: set[str] = set()  # ids of the claimed jobs this runner holds leases on
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "BatchRunner":
        # Alone on the store, every processing job was ours before a crash; on a shared store, only
        # jobs whose lease has run out are nobody's.
        recovered = self.store.recover(expired_only=self.store.shared)
        if recovered:
            log.warning("%d job(s) were processing when the server stopped: queued again", recovered)
        self.sweep()
        for i in range(self.settings.batch_workers):
            self._spawn(self._work, f"batch-worker-{i}")
        self._spawn(self._sweep_forever, "job-sweeper")
        self._spawn(self._heartbeat_forever, "job-heartbeat")
        return self

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # -- submitting --------------------------------------------------------------------------
    def submit(
        self,
        token: Optional[str],
        files: Sequence[str | Path],
        model: str,
        options: TranscribeOptions,
        progress: Optional[ProgressFn] = None,
    ) -> Submission:
        """Queue one job per file. A new token is made when none is given. Model and options are
        checked first, so a bad request queues nothing."""
        if not files:
            raise JobError("no files: upload one or more audio files")
        spec = catalog.get(model)
        if self.service.availability[model].status == "unavailable":
            raise JobError(f"{spec.name} is unavailable: {self.service.availability[model].reason}")
        self.service.fit_options(spec, options)  # raises on a language the model does not know
        token = token or new_token()
        session = session_key(token)
        new = []
        for n, path in enumerate(map(Path, files), 1):
            if progress:
                progress(n - 1, len(files), f"decoding {path.name}")
            new.append(self._spooled(path, model, options))
        jobs = self.store.add(session, secrets.token_urlsafe(8), new)
        self._notify()
        return Submission(token, jobs[0].batch, jobs)

    def _spooled(self, path: Path, model: str, options: TranscribeOptions) -> NewJob:
        max_bytes = int(self.settings.max_upload_mb * (1 << 20))
        try:
            audio = load_audio(path, max_seconds=self.settings.max_audio_seconds, max_bytes=max_bytes)
        except AudioError as exc:
            return NewJob(path.name, model, options, 0.0, error=str(exc))
        job = NewJob(path.name, model, options, audio.duration)
        self.spool.write(job.id, audio.samples)
        return job

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- working -----------------------------------------------------------------------------
    def _claim_limit(self, model: str) -> int:
        return self.settings.batch_size if catalog.get(model).engine == "faster-whisper" else 1

    def _work(self) -> None:
        while not self._stop.is_set():
            jobs = self.store.claim(self._claim_limit, worker=self.worker, lease=LEASE_SECONDS)
            if not jobs:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            with self._holding(jobs):
                self.run(jobs)

    @contextmanager
    def _holding(self, jobs: Sequence[Job]):
        """While running these jobs, the heartbeat renews their lease."""
        ids = {job.id for job in jobs}
        with self._lock:
            self._running |= ids
        try:
            yield
        finally:
            with self._lock:
                self._running -= ids

    def _heartbeat_forever(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):  # three beats may be missed before a lease runs out
            with self._lock:
                running = sorted(self._running)
            try:
                self.store.extend(running, LEASE_SECONDS)
            except Exception:  # the store is unreachable for now: the next beat tries again
                log.exception("renewing the lease of %d running job(s) failed", len(running))

    def run(self, jobs: Sequence[Job]) -> None:
        """Run claimed jobs (one model, one set of options) and record each outcome."""
        audios: list[tuple[Job, Audio]] = []
        for job in jobs:
            try:
                audios.append((job, Audio(self.spool.read(job.id))))
            except Exception as exc:  # the spool file is gone (deleted job) or unreadable
                self.store.fail(job.id, f"audio no longer available: {type(exc).__name__}")
        if not audios:
            return
        first = audios[0][0]
        try:
            results = self.service.transcribe_batch(first.model, [a for _, a in audios], first.options)
        except (ModelError, ValueError, KeyError) as exc:
            for job, _ in audios:
                self.store.fail(job.id, str(exc).strip("'\""))
            return
        except Exception as exc:  # an engine crash fails these jobs, never the worker
            log.exception("batch of %d job(s) failed", len(audios))
            for job, _ in audios:
                self.store.fail(job.id, f"{type(exc).__name__}: {exc}")
            return
        for (job, _), result in zip(audios, results):
            if not self.store.complete(job.id, result):  # deleted while it ran
                self.spool.delete([job.id])

    # -- expiry ------------------------------------------------------------------------------
    def sweep(self, now: Optional[float] = None) -> tuple[list[str], list[str]]:
        """Queue again the jobs of workers that stopped renewing their lease, remove jobs older
        than the TTL with their audio, then audio with no job. Returns (expired ids, orphan ids)."""
        now = time.time() if now is None else now
        recovered = self.store.recover(expired_only=True)
        if recovered:
            log.warning("%d job(s) of a worker that stopped answering: queued again", recovered)
        expired = self.store.expire(before=now - self.settings.job_ttl_hours * 3600)
        self.spool.delete(expired)
        # Audio written in the last minute may belong to a submission still in progress.
        orphans = self.spool.orphans(self.store.ids(), older_than=now - 60)
        self.spool.delete(orphans)
        return expired, orphans

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_seconds):
            try:
                self.sweep()
            except Exception:  # never let the sweeper die silently for good
                log.exception("sweeping expired jobs failed")

    # -- a session's jobs ----------------------------------------------------------------------
    def jobs(self, token: Optional[str], batch: Optional[str] = None) -> list[Job]:
        return self.store.list(session_key(token), batch or None)

    def counts(self, token: Optional[str], batch: Optional[str] = None) -> dict[str, int]:
        return self.store.counts(session_key(token), batch or None)

    def job(self, token: Optional[str], job_id: str) -> Job:
        job = self.store.get(session_key(token), (job_id or "").strip())
        if job is None:  # the same answer for another session's job: nothing to learn from it
            raise JobError(f"no job {job_id!r} in this session")
        return job

    def audio_copy(self, token: Optional[str], job_id: str) -> Optional[Path]:
        """A temporary copy of a job's audio for the player (the spool stays private), or None if it has none."""
        job = self.job(token, job_id)
        if not self.spool.exists(job.id):
            return None
        try:
            return self.spool.export(job.id, Path(tempfile.mkdtemp(prefix="job-audio-")), Path(job.filename).stem)
        except FileNotFoundError:  # deleted just now
            return None

    def cancel(self, token: Optional[str], job_id: str) -> Job:
        job = self.job(token, job_id)
        if not self.store.cancel(session_key(token), job.id):
            raise JobError(f"job {job_id!r} is {self.job(token, job_id).status}: only queued jobs can be cancelled")
        return self.job(token, job_id)

    def delete(self, token: Optional[str], job_id: str) -> None:
        job = self.job(token, job_id)
        self.store.delete(session_key(token), job.id)
        self.spool.delete([job.id])

    def delete_all(self, token: Optional[str]) -> int:
        jobs = self.jobs(token)
        for job in jobs:
            self.store.delete(session_key(token), job.id)
        self.spool.delete(j.id for j in jobs)
        return len(jobs)

    def resubmit(self, token: Optional[str], job_id: str, model: Optional[str] = None) -> Job:
        """Run a job's audio again, with its own model or another, as a new job at the back of the queue."""
        old = self.job(token, job_id)
        model = model or old.model
        spec = catalog.get(model)
        options, _ = self.service.fit_options(spec, replace(old.options))
        if not self.spool.exists(old.id):
            raise JobError(f"job {job_id!r} has no audio to resubmit (it failed before decoding)")
        new = NewJob(old.filename, model, options, old.audio_seconds)
        self.spool.copy(old.id, new.id)
        (job,) = self.store.add(session_key(token), secrets.token_urlsafe(8), [new])
        self._notify()
        return job

    def export(self, token: Optional[str], folder: Path, batch: Optional[str] = None) -> list[Path]:
        """jobs.csv (one row per job), jobs.json (everything, with segments and metrics) and
        srt.zip (one subtitle file per completed job)."""
        jobs = self.jobs(token, batch)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{**job_row(j), "text": j.result.text if j.result else ""} for j in jobs]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
        paths = [folder / "jobs.csv", folder / "jobs.json", folder / "srt.zip"]
        paths[0].write_text(out.getvalue(), encoding="utf-8")
        paths[1].write_text(json.dumps([j.to_dict() for j in jobs], indent=1), encoding="utf-8")
        with zipfile.ZipFile(paths[2], "w", zipfile.ZIP_DEFLATED) as z:
            for j in jobs:
                if j.result is not None:
                    z.writestr(f"{Path(j.filename).stem}.{j.id[:8]}.srt", formats.WRITERS["srt"](j.result))
        return paths


def finished(counts: dict[str, int]) -> bool:
    return sum(counts.values()) > 0 and all(counts[s] == 0 for s in counts if s not in FINISHED)

"""Batch jobs, end to end: submit files, worker threads that run them, a sweeper that expires them.

``BatchRunner`` sits between the UI/API and the job store: it decodes and spools each uploaded
file at submission (a file that will not decode becomes a failed job with the reason, and the rest
go on), keeps ``batch_workers`` threads taking jobs first-in first-out from the store, and runs
them through ``ModelService.transcribe_batch`` (a lower priority than interactive requests, with
cross-file batching where the engine allows). Callers speak in session tokens that the runner
issued (``SessionTokens``: any other string is refused before the store is read); the store only
ever sees their hashes. A session may queue MAX_BATCH_FILES files at once and hold MAX_QUEUED_JOBS
unfinished jobs, resubmits included. The store and the spool are those JOB_STORE names (``open_store``): SQLite
and a folder by default, or a Redis/Valkey server that workers on other machines share
(``python -m explorer.worker`` runs a runner with no UI). Jobs are claimed under a lease
(JOB_LEASE_SECONDS) that a heartbeat thread renews while they run; every runner takes back
expired leases, so a dead worker's jobs run again elsewhere; a runner with workers reports itself
in the store's worker registry (``workers()``); ``stop(grace)`` lets the jobs in hand finish or
gives them back. A store that becomes unreachable (a Redis restart) stops nothing: claims back
off and retry, and a finished job's result waits for the store to come back.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, TypeVar

from explorer import catalog, formats
from explorer.audio import Audio, AudioError
from explorer.config import Settings
from explorer.jobs import (
    FINISHED, MAX_ATTEMPTS, AudioSpool, Job, JobStore, NewJob, Running, Spool, WorkerInfo, crashed_error, open_store,
    session_key,
)  # fmt: skip
from explorer.service import ModelError, ModelService
from explorer.sessions import SessionTokens, session_secret
from explorer.types import TranscribeOptions, Transcription

log = logging.getLogger(__name__)

FileProgressFn = Callable[[int, int, str], None]
T = TypeVar("T")
MAX_BACKOFF_SECONDS = 5.0  # the longest wait between tries while the store is unreachable
# Audio with no job is an orphan only once it is this old: a submission spools each file's audio as
# it decodes and adds the jobs after its last file, so the grace must outlast the longest
# submission (hundreds of files of up to MAX_AUDIO_SECONDS each), not a typical one. An hour does,
# and an orphan costs only disk (or Redis memory) until then.
ORPHAN_GRACE_SECONDS = 3600.0
# A player copy with no job (deleted on another host, or with a crash) is removed once this old.
COPY_GRACE_SECONDS = 60.0
CLAIM_WAIT_SECONDS = 5.0  # how long stop() waits for a claim in flight (past it, its jobs' leases run out)
FORGET_WORKER_SECONDS = 3600.0  # a worker not heard from for this long leaves the registry (sweep)


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
        "environment": job.result.environment.label() if job.result and job.result.environment else None,
    }


def job_warnings(job: Job) -> tuple[str, ...]:
    """Every note on a job, each once: its file's repairs (kept from submission, whatever became of
    the job), then its run's (a language ignored, no speech found)."""
    return tuple(dict.fromkeys(job.warnings + (job.result.warnings if job.result else ())))


class BatchRunner:
    def __init__(
        self,
        service: ModelService,
        settings: Settings,
        store: Optional[JobStore] = None,
        spool: Optional[AudioSpool] = None,
        audio_copies: Optional[Path] = None,
        tokens: Optional[SessionTokens] = None,
    ):
        """The store and spool that settings.job_store names, unless given (a given store without a
        spool gets the spool folder in settings.data_dir). `audio_copies` is where audio_copy puts
        a job's audio for the player, a folder per job id, removed with the job (the app passes
        one inside Gradio's cache, so the copy is served in place, without a second one). Session
        tokens are signed with SESSION_SECRET (or the secret in data_dir) unless `tokens` is given."""
        self.service = service
        self.settings = settings
        self._tokens = tokens
        if store is None:
            store, spool = open_store(settings.job_store, settings.data_dir)
        self.store, self.spool = store, spool or Spool(settings.data_dir / "spool")
        self.audio_copies = audio_copies or Path(tempfile.gettempdir()) / "explorer-job-audio"
        self.lease = settings.job_lease_seconds
        # Unique per runner: several may share a store, from one host or many.
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self._held: dict[str, Job] = {}  # the claimed jobs this runner holds leases on, by id
        self._claims = 0  # claims in flight (under _lock): stop() waits for them to hold or give back their jobs
        self._giving_back = False  # set by stop() (under _lock) once it has taken the jobs in hand to give back
        self._late = 0  # jobs whose claim returned after that, given back by their worker thread
        self._done = 0  # jobs whose outcome this runner recorded
        self._started_at = time.time()
        self._lock = threading.Lock()
        self._claims_done = threading.Condition(self._lock)
        self._beat_lock = threading.Lock()  # no beat lands after stop() has left the registry
        # Jobs being decoded for a submit, by session, not yet in the store: counted by _room so
        # two submits at once cannot both pass MAX_QUEUED_JOBS (within this process).
        self._reserved: dict[str, int] = {}
        self._reserve_lock = threading.Lock()
        self._wake = threading.Condition()
        self._draining = threading.Event()  # set by stop(): no more claims
        self._hurry = threading.Event()  # set by hurry(): stop() waits no longer for the jobs in hand
        self._stop = threading.Event()  # every thread ends
        self._workers: list[threading.Thread] = []  # those that take jobs
        self._threads: list[threading.Thread] = []  # the periodic ones (heartbeat, recovery, sweeper, beat)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "BatchRunner":
        """Start `batch_workers` threads taking jobs, and the periodic ones: lease renewal (every
        quarter lease), taking back expired leases (every half lease: a dead worker's jobs return
        within about 1.5 leases, whichever runner notices), the sweeper and, with workers, the beat
        that reports this runner in the worker registry."""
        self._started_at = time.time()
        try:
            # Alone on the store, every processing job was ours before a crash; on a shared store,
            # only jobs whose lease has run out are nobody's.
            self._recover(expired_only=self.store.shared)
            self.sweep()
        except self.store.transient as exc:  # the periodic threads and the workers keep trying
            self._store_error("starting (retrying in the background)", exc)
        # Listed before they start: their first claim already reports this runner (_beat).
        self._workers = [self._thread(self._work, f"batch-worker-{i}") for i in range(self.settings.batch_workers)]
        for thread in self._workers:
            thread.start()
        periodic = [
            (self.lease / 4, self._renew, "renewing leases", "job-heartbeat"),
            (self.lease / 2, self._recover, "taking back expired leases", "job-recovery"),
            (self.settings.sweep_interval_seconds, self.sweep, "sweeping expired jobs", "job-sweeper"),
        ]
        if self._workers:
            self._beat()
            periodic.append((self.settings.worker_beat_seconds, self._beat, "reporting this worker", "worker-beat"))
        self._threads = [self._thread(self._every(seconds, action, what), name) 
                         for seconds, action, what, name in periodic]  # fmt: skip
        for thread in self._threads:
            thread.start()
        return self

    @staticmethod
    def _thread(target: Callable[[], None], name: str) -> threading.Thread:
        return threading.Thread(target=target, name=name, daemon=True)

    def _every(self, seconds: float, action: Callable[[], object], what: str) -> Callable[[], None]:
        """A loop that runs `action` every `seconds` until stop(); an error is logged, never fatal."""

        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    action()
                except Exception as exc:
                    self._store_error(what, exc)

        return loop

    def _store_error(self, what: str, exc: Exception) -> None:
        if isinstance(exc, self.store.refused):  # no outage, though a ConnectionError: say what to fix
            log.error("%s: the job store refused access (%s): check the credentials in JOB_STORE", what, exc)
        elif isinstance(exc, self.store.transient):  # an outage: one line, not a traceback per try
            log.warning("%s: job store unreachable (%s)", what, exc)
        else:
            log.error("%s failed", what, exc_info=exc)

    def hurry(self) -> None:
        """Make a stop() in progress stop waiting for the jobs in hand (a second Ctrl-C)."""
        self._hurry.set()

    def stop(self, grace: float = 30) -> int:
        """Stop taking jobs; give those in hand up to `grace` seconds to finish, then put the rest
        back in the queue, in their place, for another worker; end the periodic threads and leave
        the worker registry. Returns how many jobs were put back."""
        self._draining.set()
        self._notify()
        deadline = time.monotonic() + grace
        for thread in self._workers:
            while thread.is_alive() and not self._hurry.is_set() and time.monotonic() < deadline:
                thread.join(min(0.1, max(0.0, deadline - time.monotonic())))
        with self._lock:
            held = sorted(self._held)
            self._giving_back = True  # a claim that returns from now on gives its jobs back itself
        released = 0
        if held:
            try:
                released = self.store.release(held, self.worker)
                if released:
                    log.warning("%d job(s) still running after %g s: back in the queue", released, grace)
            except Exception as exc:
                log.warning("could not give back %d job(s) (%s): they return when their lease runs out", len(held), exc)
        with self._claims_done:  # a claim in flight (a few ms, unless the store is down) ends first
            self._claims_done.wait_for(lambda: self._claims == 0, timeout=CLAIM_WAIT_SECONDS)
            released += self._late
        with self._beat_lock:
            self._stop.set()
        self._notify()
        for thread in self._threads:  # each ends at its next wait (or stays behind a slow store call: a daemon)
            thread.join(5)
        if self._workers:
            try:
                self.store.forget_worker(self.worker)
            except Exception as exc:  # it ages out of workers() by itself
                log.warning("could not leave the worker registry (%s)", exc)
        return released

    @property
    def tokens(self) -> SessionTokens:
        """Made on first use: a standalone worker, which never sees a token, makes no secret."""
        if self._tokens is None:
            self._tokens = SessionTokens(session_secret(self.settings.session_secret, self.settings.data_dir))
        return self._tokens

    def session_key(self, token: Optional[str]) -> str:
        """The store's key for a token this server issued; PermissionError for any other."""
        return session_key(self.tokens.check(token))

    @contextmanager
    def _room(self, session: str, wanted: int) -> Iterator[None]:
        """Hold places for `wanted` more jobs while they are decoded and stored, or refuse them when
        the session's unfinished jobs (with places other submits hold) would pass MAX_QUEUED_JOBS.
        Replicas sharing a Redis store each check their own reservations: across replicas the
        bound can be passed by the jobs being submitted at the same moment."""
        with self._reserve_lock:
            counts = self.store.counts(session)
            unfinished = counts["queued"] + counts["processing"] + self._reserved.get(session, 0)
            limit = self.settings.max_queued_jobs
            if unfinished + wanted > limit:
                raise JobError(
                    f"this session has {unfinished} unfinished job(s) and may hold {limit} (MAX_QUEUED_JOBS): "
                    f"wait for some to finish, or cancel some, before queueing {wanted} more"
                )
            self._reserved[session] = self._reserved.get(session, 0) + wanted
        try:
            yield
        finally:
            with self._reserve_lock:
                left = self._reserved.pop(session) - wanted
                if left:
                    self._reserved[session] = left

    def working(self) -> bool:
        """Whether a worker thread is still running: after stop(), a model call it gave up waiting for."""
        return any(thread.is_alive() for thread in self._workers)

    # -- submitting --------------------------------------------------------------------------
    def submit(
        self,
        token: Optional[str],
        files: Sequence[str | Path],
        model: str,
        options: TranscribeOptions,
        progress: Optional[FileProgressFn] = None,
    ) -> Submission:
        """Queue one job per file. A new token is issued when none is given. The token, the bounds
        (files per batch, unfinished jobs per session), model and options are checked first, so a
        refused request decodes and queues nothing."""
        if not files:
            raise JobError("no files: upload one or more audio files")
        if len(files) > self.settings.max_batch_files:
            raise JobError(
                f"{len(files)} files in one batch; the limit is {self.settings.max_batch_files} (MAX_BATCH_FILES): "
                "split them into several batches"
            )
        token = self.tokens.check(token) if token else self.tokens.issue()
        session = session_key(token)
        with self._room(session, len(files)):
            self._check(model, options)
            new = []
            for n, path in enumerate(map(Path, files), 1):
                if progress:
                    progress(n - 1, len(files), f"decoding {path.name}")
                new.append(self._spooled(path, model, options))
            jobs = self.store.add(session, secrets.token_urlsafe(8), new)
        self._notify()
        return Submission(token, jobs[0].batch, jobs)

    def _check(self, model: str, options: TranscribeOptions) -> TranscribeOptions:
        """The service's check, before anything is queued: an unknown or unavailable model is a
        JobError, options the model cannot take a ValueError."""
        try:
            return self.service.check(model, options)[1]
        except ModelError as exc:
            raise JobError(str(exc)) from None

    def _spooled(self, path: Path, model: str, options: TranscribeOptions) -> NewJob:
        try:
            audio = self.service.decode(path)
        except AudioError as exc:
            return NewJob(path.name, model, options, 0.0, error=str(exc))
        job = NewJob(path.name, model, options, audio.duration, warnings=audio.warnings)
        self.spool.write(job.id, audio.samples)
        return job

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- working -----------------------------------------------------------------------------
    def _claim_limit(self, model: str) -> int:
        """Jobs per claim for the head job's model: one for a model this host does not know, which
        run() then fails with the reason (a claim that raised would leave it at the head for good)."""
        spec = catalog.BY_KEY.get(model)
        return self.settings.batch_size if spec is not None and spec.engine == "faster-whisper" else 1

    def _work(self) -> None:
        delay = 0.0  # backoff while the store is unreachable
        claim_id = ""  # kept until a claim answers: a claim that ran but whose reply was lost is handed back
        while not self._draining.is_set():
            claim_id = claim_id or secrets.token_hex(16)
            try:
                jobs = self._claim(claim_id)
                claim_id = ""
            except Exception as exc:  # the store is down or restarting: a worker outlives it
                delay = min(max(2 * delay, 0.5), MAX_BACKOFF_SECONDS)
                self._store_error("claiming jobs", exc)
                self._draining.wait(delay)
                continue
            delay = 0.0
            if jobs is None:  # stop() is giving back what this runner held: so were these
                return
            if not jobs:
                with self._wake:
                    if not self._draining.is_set():
                        self._wake.wait(timeout=1.0)
                continue
            with self._holding(jobs):
                try:
                    self.run(jobs)
                except Exception as exc:  # their leases run out and they run again, here or elsewhere
                    self._store_error(f"running {len(jobs)} job(s)", exc)

    def _claim(self, claim_id: str) -> Optional[list[Job]]:
        """Claim jobs and hold them (the heartbeat renews what is held), or, when stop() has
        already taken the jobs in hand to give back, give these back too and return None: a
        claim that was in flight then must not leave its jobs in this runner's name."""
        with self._lock:
            if self._giving_back:  # stop() went past its wait for claims: claim nothing
                return None
            self._claims += 1
        try:
            jobs = self.store.claim(self._claim_limit, worker=self.worker, lease=self.lease, claim_id=claim_id)
            with self._lock:
                late = self._giving_back
                if not late:
                    self._held.update((job.id, job) for job in jobs)
            if not late:
                return jobs
            if jobs:
                given = self.store.release([job.id for job in jobs], self.worker)
                with self._lock:
                    self._late += given
            return None
        finally:
            with self._claims_done:
                self._claims -= 1
                self._claims_done.notify_all()

    @contextmanager
    def _holding(self, jobs: Sequence[Job]):
        """While running these claimed (and held) jobs, the registry shows them."""
        self._beat()
        try:
            yield
        finally:
            with self._lock:
                for job in jobs:
                    self._held.pop(job.id, None)
            self._beat()

    def _renew(self) -> None:
        """Heartbeat: push the lease of every job in hand (three beats may be missed before it runs out)."""
        with self._lock:
            held = sorted(self._held)
        if not held:
            return
        kept = self.store.extend(held, self.lease, worker=self.worker)
        with self._lock:
            still = sum(1 for i in held if i in self._held)  # some may have finished meanwhile
        if kept < still:
            log.warning("lost the lease on %d job(s) after a long pause: they may run elsewhere", still - kept)

    def _recover(self, expired_only: bool = True) -> None:
        """Take back expired leases (every half lease), or at the start of a server alone on its
        store every processing job; a job whose worker stopped on each of MAX_ATTEMPTS tries fails."""
        queued, failed = self.store.recover(expired_only=expired_only)
        whose = "of a worker that stopped answering" if expired_only else "processing when the server stopped"
        if queued:
            log.warning("%d job(s) %s: queued again", queued, whose)
        if failed:
            log.error("%d job(s) %s failed: %s", failed, whose, crashed_error(MAX_ATTEMPTS))

    def _patiently(self, call: Callable[[], T], what: str) -> T:
        """call(), again while the store is unreachable (backoff to 5 s) for up to two leases, so
        that a result in hand survives a store restart. Any other error, or giving up, raises."""
        deadline = time.monotonic() + 2 * self.lease
        delay = 0.5
        while True:
            try:
                return call()
            except self.store.transient as exc:
                if isinstance(exc, self.store.refused) or self._stop.is_set() or time.monotonic() + delay > deadline:
                    raise
                log.warning("%s: job store unreachable (%s), trying again in %.1f s", what, exc, delay)
                self._stop.wait(delay)
                delay = min(2 * delay, MAX_BACKOFF_SECONDS)

    def run(self, jobs: Sequence[Job]) -> None:
        """Run claimed jobs (one model, one set of options) and record each outcome."""
        audios: list[tuple[Job, Audio]] = []
        for job in jobs:
            try:
                samples = self._patiently(partial(self.spool.read, job.id), "reading audio")
                audios.append((job, Audio(samples, job.warnings)))  # the file's repairs go into its result
            except self.store.transient:
                raise
            except Exception as exc:  # the audio is gone (job deleted) or unreadable
                self._record(job, "failed", error=f"audio no longer available: {type(exc).__name__}")
        if not audios:
            return
        first = audios[0][0]
        try:
            results = self.service.transcribe_batch(first.model, [a for _, a in audios], first.options)
        except (ModelError, ValueError, KeyError) as exc:
            for job, _ in audios:
                self._record(job, "failed", error=str(exc).strip("'\""))
            return
        except Exception as exc:  # an engine crash fails these jobs, never the worker
            log.exception("batch of %d job(s) failed", len(audios))
            for job, _ in audios:
                self._record(job, "failed", error=f"{type(exc).__name__}: {exc}")
            return
        for (job, _), result in zip(audios, results):
            self._record(job, "completed", result=result)

    def _record(self, job: Job, status: str, error: str = "", result: Optional[Transcription] = None) -> None:
        """Write one job's outcome (through a store outage) and log it, one line per job. The store
        takes it only while this runner holds the job."""
        try:
            if status == "completed":
                call = partial(self.store.complete, job.id, result, worker=self.worker)
            else:
                call = partial(self.store.fail, job.id, error, worker=self.worker)
            recorded = self._patiently(call, f"recording job {job.id}")
            if not recorded:
                now = self._patiently(partial(self.store.get, job.session, job.id), f"looking up job {job.id}")
                if now is None:
                    self.spool.delete([job.id])  # deleted while it ran: its audio goes too
                # A call whose reply was lost (a dropped connection) and that the client retried
                # finds its own outcome already there.
                recorded = now is not None and (now.status, now.worker) == (status, self.worker)
        finally:
            with self._lock:  # no longer held, whatever the store said: the heartbeat stops renewing it
                self._held.pop(job.id, None)
        seconds = time.time() - (job.started_at or time.time())
        if recorded:
            with self._lock:
                self._done += 1
            log.info("job %s %s %s in %.2f s%s", job.id, job.model, status, seconds, f": {error}" if error else "")
        else:
            log.warning("job %s %s %s in %.2f s, but it is no longer this worker's (deleted, or given back): dropped",
                        job.id, job.model, status, seconds)  # fmt: skip

    # -- the worker registry -----------------------------------------------------------------
    def info(self) -> WorkerInfo:
        """This runner as the registry shows it."""
        models = tuple(m["key"] for m in self.service.health()["loaded_models"]) if self.service else ()
        with self._lock:
            held, done = list(self._held.values()), self._done
        by_model: dict[str, list[str]] = {}
        for job in held:
            by_model.setdefault(job.model, []).append(job.id)
        current = tuple(Running(model, tuple(ids)) for model, ids in by_model.items())
        host, pid = socket.gethostname(), os.getpid()
        return WorkerInfo(self.worker, host, pid, models, done, self._started_at, time.time(), current)

    def _beat(self) -> None:
        """Report this runner (if it takes jobs) in the registry; a failure waits for the next beat."""
        if not self._workers:
            return
        try:
            with self._beat_lock:
                if not self._stop.is_set():
                    self.store.beat(self.info())
        except Exception as exc:
            self._store_error("reporting this worker", exc)

    def workers(self, max_age: Optional[float] = None) -> list[WorkerInfo]:
        """Every worker on this store (any host) heard from in the last `max_age` seconds, by
        default three beats: one that stopped beating (killed) drops out soon after."""
        return self.store.workers(3 * self.settings.worker_beat_seconds if max_age is None else max_age)

    # -- expiry ------------------------------------------------------------------------------
    def sweep(self, now: Optional[float] = None) -> tuple[list[str], list[str]]:
        """Remove jobs older than the TTL with their audio and its player copies, then audio with
        no job (written over ORPHAN_GRACE_SECONDS ago) and copies with no job, and forget workers
        not heard from for FORGET_WORKER_SECONDS. Returns (expired ids, orphan ids). (Expired
        leases are the job-recovery thread's.)"""
        now = time.time() if now is None else now
        expired = self.store.expire(before=now - self.settings.job_ttl_hours * 3600)
        self.spool.delete(expired)
        self._drop_copies(expired)
        known = self.store.ids()
        orphans = self.spool.orphans(known, older_than=now - ORPHAN_GRACE_SECONDS)
        self.spool.delete(orphans)
        if self.audio_copies.is_dir():
            self._drop_copies(d.name for d in self.audio_copies.iterdir()
                              if d.name not in known and d.stat().st_mtime < now - COPY_GRACE_SECONDS)  # fmt: skip
        gone = [w.id for w in self.store.workers(max_age=float("inf")) if w.last_seen < now - FORGET_WORKER_SECONDS]
        for worker_id in gone:
            self.store.forget_worker(worker_id)
        if gone:
            log.info("forgot %d worker(s) not heard from for %g s", len(gone), FORGET_WORKER_SECONDS)
        return expired, orphans

    # -- a session's jobs ----------------------------------------------------------------------
    def jobs(self, token: Optional[str], batch: Optional[str] = None) -> list[Job]:
        return self.store.list(self.session_key(token), batch or None)

    def counts(self, token: Optional[str], batch: Optional[str] = None) -> dict[str, int]:
        return self.store.counts(self.session_key(token), batch or None)

    def job(self, token: Optional[str], job_id: str) -> Job:
        job = self.store.get(self.session_key(token), (job_id or "").strip())
        if job is None:  # the same answer for another session's job: nothing to learn from it
            raise JobError(f"no job {job_id!r} in this session")
        return job

    def audio_copy(self, token: Optional[str], job_id: str) -> Optional[Path]:
        """A copy of a job's audio for the player (the spool stays private) in audio_copies/<job id>/,
        removed with the job, or None if it has none."""
        job = self.job(token, job_id)
        try:
            return self.spool.export(job.id, self.audio_copies / job.id, Path(job.filename).stem)
        except FileNotFoundError:  # it failed to decode, or was deleted just now
            self._drop_copies([job.id])
            return None

    def _drop_copies(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            if job_id and "/" not in job_id and job_id not in (".", ".."):  # ids only, never a path
                shutil.rmtree(self.audio_copies / job_id, ignore_errors=True)

    def cancel(self, token: Optional[str], job_id: str) -> Job:
        job = self.job(token, job_id)
        if not self.store.cancel(self.session_key(token), job.id):
            raise JobError(f"job {job_id!r} is {self.job(token, job_id).status}: only queued jobs can be cancelled")
        return self.job(token, job_id)

    def delete(self, token: Optional[str], job_id: str) -> None:
        job = self.job(token, job_id)
        self.store.delete(self.session_key(token), job.id)
        self.spool.delete([job.id])
        self._drop_copies([job.id])

    def delete_all(self, token: Optional[str]) -> int:
        session, jobs = self.session_key(token), self.jobs(token)
        for job in jobs:
            self.store.delete(session, job.id)
        self.spool.delete(j.id for j in jobs)
        self._drop_copies(j.id for j in jobs)
        return len(jobs)

    def resubmit(self, token: Optional[str], job_id: str, model: Optional[str] = None) -> Job:
        """Run a job's audio again, with its own model or another, as a new job at the back of the
        queue. It counts against MAX_QUEUED_JOBS like any queued job: a resubmit costs a model
        run as a submitted file does, and the session bound caps both at once."""
        old = self.job(token, job_id)
        session = self.session_key(token)
        with self._room(session, 1):
            model = model or old.model
            options = self._check(model, old.options)
            if not self.spool.exists(old.id):
                raise JobError(f"job {job_id!r} has no audio to resubmit (it failed before decoding)")
            new = NewJob(old.filename, model, options, old.audio_seconds, warnings=old.warnings)
            self.spool.copy(old.id, new.id)
            (job,) = self.store.add(session, secrets.token_urlsafe(8), [new])
        self._notify()
        return job

    def export(self, token: Optional[str], folder: Path, batch: Optional[str] = None) -> list[Path]:
        """jobs.csv (one row per job, its warnings joined by " | "), jobs.json (everything, with
        segments, metrics and warnings) and srt.zip (one subtitle file per completed job)."""
        jobs = self.jobs(token, batch)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{**job_row(j), "warnings": " | ".join(job_warnings(j)), "text": j.result.text if j.result else ""}
                for j in jobs]  # fmt: skip
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

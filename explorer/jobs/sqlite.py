"""The job store on one SQLite file (the default JOB_STORE).

WAL mode: readers never block the worker that writes. Writes take the database lock up front
(BEGIN IMMEDIATE), so a claim cannot interleave with another claim. A file made by an older
release gets the columns added since when it is opened (ADDED_COLUMNS).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from explorer.config import DEFAULT_LEASE_SECONDS
from explorer.jobs.codec import (
    WORKER_FIELDS, options_from_json, options_json, result_from_json, result_json, warnings_from_json, warnings_json,
    worker_from_values, worker_values,
)  # fmt: skip
from explorer.jobs.model import MAX_ATTEMPTS, STATUSES, Job, Limit, NewJob, Status, WorkerInfo, crashed_error
from explorer.types import Transcription

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    session TEXT NOT NULL,
    batch TEXT NOT NULL,
    filename TEXT NOT NULL,
    model TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    audio_seconds REAL NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    result TEXT,
    worker TEXT NOT NULL DEFAULT '',
    lease_until REAL,
    claim_id TEXT NOT NULL DEFAULT '',
    warnings TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session, seq);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    models TEXT NOT NULL,
    jobs_done INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    current TEXT NOT NULL DEFAULT ''  -- codec.running_json
);
"""
# Columns added to `jobs` after its first release: a file made before them gets them on open.
ADDED_COLUMNS = {
    "worker": "TEXT NOT NULL DEFAULT ''", "lease_until": "REAL", "claim_id": "TEXT NOT NULL DEFAULT ''",
    "warnings": "TEXT NOT NULL DEFAULT '[]'",
}  # fmt: skip
# What going back to the queue sets (a release, a recovery): nobody's, no start, no lease.
REQUEUED = "status = 'queued', started_at = NULL, worker = '', lease_until = NULL"
COLUMNS = (
    "id, seq, session, batch, filename, model, options, status, audio_seconds, created_at, started_at, finished_at,"
    " attempts, error, result, worker, lease_until, warnings"
)


class SqliteJobStore:
    """JobStore on one SQLite file (WAL). One connection per thread; writes take the database
    lock up front (BEGIN IMMEDIATE) so a claim cannot interleave with another claim."""

    shared = False  # one server process works on it: at its start, nobody else holds a lease
    transient = (sqlite3.OperationalError,)  # "database is locked" past the busy timeout, a full disk
    refused = ()

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)  # executescript commits on its own
        self._migrate()

    def _migrate(self) -> None:
        with self._write() as db:  # under the write lock: two processes opening an old file add each column once
            have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash; WAL keeps it fast
            self._local.db = db
        return db

    class _Transaction:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind, *_):
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _write(self) -> "_Transaction":
        return self._Transaction(self._db())

    @staticmethod
    def _job(row: tuple) -> Job:
        (id_, seq, session, batch, filename, model, options, status, seconds, created, started, finished, attempts,
         error, result, worker, lease_until, warnings) = row
        return Job(
            id_, seq, session, batch, filename, model, options_from_json(options), status, seconds, created, started,
            finished, attempts, error, result_from_json(result), worker, lease_until, warnings_from_json(warnings),
        )  # fmt: skip

    def add(self, session: str, batch: str, jobs: Sequence[NewJob]) -> list[Job]:
        """Store new jobs, queued in order (or failed, those with an error). An id that is already
        stored is left as it is (an add tried again adds nothing twice). Returns the jobs with
        these ids, as stored, that belong to `session`."""
        now = time.time()
        with self._write() as db:
            for job in jobs:
                status = "failed" if job.error else "queued"
                db.execute(
                    "INSERT INTO jobs (id, session, batch, filename, model, options, status, audio_seconds, created_at,"
                    " finished_at, error, warnings) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
                    (job.id, session, batch, job.filename, job.model, options_json(job.options), status,
                     job.audio_seconds, now, now if job.error else None, job.error, warnings_json(job.warnings)),
                )  # fmt: skip
        return [j for j in map(self._get, dict.fromkeys(job.id for job in jobs)) if j.session == session]

    def _get(self, job_id: str) -> Job:
        return self._job(self._db().execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def claim(
        self, limit: Limit = 1, worker: str = "", lease: float = DEFAULT_LEASE_SECONDS, claim_id: str = ""
    ) -> list[Job]:
        """The oldest queued job, plus up to limit-1 queued jobs right after it that ask for the
        same model and options (so they can share one batched model call). `limit` may be a
        function of the head job's model. The jobs are `worker`'s until `lease` seconds from now.

        A claim repeated with the same `claim_id` (the caller's retry of a call whose reply it
        never got) hands back the jobs that claim took which `worker` still holds, lease renewed,
        and claims nothing more; only when it holds none of them does it claim anew."""
        now = time.time()
        with self._write() as db:
            if claim_id:
                held = [row[0] for row in db.execute(
                    "SELECT id FROM jobs WHERE claim_id = ? AND status = 'processing' AND worker = ? ORDER BY seq",
                    (claim_id, worker),
                )]  # fmt: skip
                if held:
                    db.executemany("UPDATE jobs SET lease_until = ? WHERE id = ?", [(now + lease, i) for i in held])
                    return [self._get(i) for i in held]
            head = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if head is None:
                return []
            n = limit(head[5]) if callable(limit) else limit
            rows = db.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT ?", (n,)
            ).fetchall()
            run = []
            for row in rows:
                if (row[5], row[6]) != (head[5], head[6]):
                    break
                run.append(row)
            db.executemany(
                "UPDATE jobs SET status = 'processing', started_at = ?, attempts = attempts + 1, worker = ?,"
                " lease_until = ?, claim_id = ? WHERE id = ?",
                [(now, worker, now + lease, claim_id, row[0]) for row in run],
            )
        return [self._get(row[0]) for row in run]

    def extend(self, job_ids: Sequence[str], lease: float = DEFAULT_LEASE_SECONDS, worker: str = "") -> int:
        """Heartbeat: the jobs among `job_ids` still processing (by `worker`, if given) are held
        `lease` seconds from now. Returns how many."""
        until = time.time() + lease
        with self._write() as db:
            cur = db.executemany(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND status = 'processing' AND (? = '' OR worker = ?)",
                [(until, i, worker, worker) for i in job_ids],
            )
        return cur.rowcount

    def release(self, job_ids: Sequence[str], worker: str) -> int:
        """A worker that stops gives back the jobs among `job_ids` it still holds: they are queued
        again in their old place (the attempt stays counted). Returns how many."""
        with self._write() as db:
            cur = db.executemany(
                f"UPDATE jobs SET {REQUEUED} WHERE id = ? AND status = 'processing' AND worker = ?",
                [(i, worker) for i in job_ids],
            )
        return cur.rowcount

    def _finish(self, job_id: str, status: Status, error: str, result: Optional[str], worker: str) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, error = ?, result = ?, finished_at = ?, lease_until = NULL"
                " WHERE id = ? AND status = 'processing' AND (? = '' OR worker = ?)",
                (status, error, result, time.time(), job_id, worker, worker),
            )
        return cur.rowcount == 1

    def complete(self, job_id: str, result: Transcription, worker: str = "") -> bool:
        return self._finish(job_id, "completed", "", result_json(result), worker)

    def fail(self, job_id: str, error: str, worker: str = "") -> bool:
        return self._finish(job_id, "failed", error, None, worker)

    def get(self, session: str, job_id: str) -> Optional[Job]:
        row = self._db().execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND session = ?", (job_id, session)).fetchone()
        return self._job(row) if row else None

    def list(self, session: str, batch: Optional[str] = None) -> list[Job]:
        query, args = f"SELECT {COLUMNS} FROM jobs WHERE session = ?", [session]
        if batch:
            query, args = query + " AND batch = ?", args + [batch]
        return [self._job(r) for r in self._db().execute(query + " ORDER BY seq", args)]

    def counts(self, session: str, batch: Optional[str] = None) -> dict[str, int]:
        query, args = "SELECT status, COUNT(*) FROM jobs WHERE session = ?", [session]
        if batch:
            query, args = query + " AND batch = ?", args + [batch]
        found = dict(self._db().execute(query + " GROUP BY status", args).fetchall())
        return {s: found.get(s, 0) for s in STATUSES}

    def cancel(self, session: str, job_id: str) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND session = ? AND status = 'queued'",
                (time.time(), job_id, session),
            )
        return cur.rowcount == 1

    def delete(self, session: str, job_id: str) -> bool:
        with self._write() as db:
            cur = db.execute("DELETE FROM jobs WHERE id = ? AND session = ?", (job_id, session))
        return cur.rowcount == 1

    def recover(self, expired_only: bool = False) -> tuple[int, int]:
        """Processing jobs go back to the queue, in their old place: those whose lease has run out
        (their worker died), or, after a crash of the one process that works on this store, all.
        One already claimed MAX_ATTEMPTS times fails instead (crashed_error), keeping its worker
        and start on record. Returns (how many were queued again, how many failed)."""
        now = time.time()
        # A row from before leases has none: it counts as expired.
        taken = "status = 'processing' AND (? = 0 OR COALESCE(lease_until, 0) < ?)"
        with self._write() as db:
            failed = db.execute(
                f"UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, lease_until = NULL"
                f" WHERE {taken} AND attempts >= ?",
                (crashed_error(MAX_ATTEMPTS), now, expired_only, now, MAX_ATTEMPTS),
            ).rowcount
            queued = db.execute(
                f"UPDATE jobs SET {REQUEUED} WHERE {taken}",
                (expired_only, now),
            ).rowcount
        return queued, failed

    def expire(self, before: float) -> list[str]:
        with self._write() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE created_at < ? ORDER BY seq", (before,))]
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
        return ids

    def ids(self) -> set[str]:
        return {r[0] for r in self._db().execute("SELECT id FROM jobs")}

    def beat(self, info: WorkerInfo) -> None:
        with self._write() as db:
            db.execute(f"INSERT OR REPLACE INTO workers ({', '.join(WORKER_FIELDS)}) VALUES (?,?,?,?,?,?,?,?)",
                       worker_values(info))  # fmt: skip

    def workers(self, max_age: float) -> list[WorkerInfo]:
        """Workers heard from in the last `max_age` seconds, oldest first."""
        rows = self._db().execute(
            f"SELECT {', '.join(WORKER_FIELDS)} FROM workers WHERE last_seen >= ? ORDER BY started_at, id",
            (time.time() - max_age,),
        )
        return [worker_from_values(r) for r in rows]

    def forget_worker(self, worker_id: str) -> bool:
        with self._write() as db:
            cur = db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
        return cur.rowcount == 1

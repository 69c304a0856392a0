"""Durable batch jobs: a job store (SQLite by default) and the spool that keeps each job's audio.

The store is the single source of truth for a job's life: queued -> processing -> completed or
failed (or queued -> cancelled). Claiming is atomic, so a job runs once. A claim is a lease: the
worker that holds it pushes its deadline while it runs (``extend``); a job whose lease ran out
(its worker died) goes back to the queue in its old place (``recover(expired_only=True)``, what
every runner does every half lease), a worker that stops gives back the jobs it still holds
(``release``), and at the start of a single-process server every job left "processing" by a crash
does (``recover()``). A job taken back after its MAX_ATTEMPTS-th claim fails instead: one that
kills its worker (a segfault, out of memory) must not go round the fleet for ever. Every read and
write that a user can cause is scoped by session: the store keeps a SHA-256 of the session token,
never the token itself, and a call with another session finds nothing. Workers register
themselves (``beat``) so that their status can be shown.

``JobStore`` is the interface; ``SqliteJobStore`` implements it on one file in WAL mode (readers
never block the worker that writes), ``explorer.redis_store.RedisJobStore`` on a Redis/Valkey
server that workers on several machines share. ``open_store`` picks one from ``JOB_STORE``.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional, Protocol, Sequence, Union

import numpy as np
import soundfile as sf

from explorer.config import DEFAULT_LEASE_SECONDS, store_kind
from explorer.types import SAMPLE_RATE, Metrics, RunEnvironment, Segment, TranscribeOptions, Transcription, Word

Status = Literal["queued", "processing", "completed", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("queued", "processing", "completed", "failed", "cancelled")
FINISHED: tuple[Status, ...] = ("completed", "failed", "cancelled")
Limit = Union[int, Callable[[str], int]]  # jobs per claim (at least 1), or a function of the head job's model
MAX_ATTEMPTS = 3  # claims of a job whose worker stopped while running it, before recover() fails it


def crashed_error(attempts: int) -> str:
    """The error of a job that recover() failed instead of queueing it again."""
    return f"its worker stopped while running it on each of {attempts} attempts (crashed, killed or lost)"


def new_token() -> str:
    """A session token: unguessable (256 bits), safe in URLs and browser storage."""
    return secrets.token_urlsafe(32)


def session_key(token: Optional[str]) -> str:
    """What the store keeps for a session. An empty token is refused outright."""
    if not token or not token.strip():
        raise PermissionError("no session token: submit a batch first, and pass the token it returned")
    return hashlib.sha256(token.strip().encode()).hexdigest()


@dataclass(frozen=True)
class NewJob:
    filename: str
    model: str
    options: TranscribeOptions
    audio_seconds: float
    error: str = ""  # a job that failed before it could be queued (its file would not decode)
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))  # known before the row, for the spool


@dataclass(frozen=True)
class Job:
    id: str
    seq: int  # submission order, store-wide
    session: str
    batch: str
    filename: str
    model: str
    options: TranscribeOptions
    status: Status
    audio_seconds: float
    created_at: float
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    attempts: int = 0
    error: str = ""
    result: Optional[Transcription] = None
    worker: str = ""  # who claimed it last (kept once finished, cleared when it goes back to the queue)
    lease_until: Optional[float] = None  # while processing: when it goes back to the queue without a heartbeat

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("session")  # a hash, but still nobody's business
        out.pop("worker")  # which host and process ran it is not part of the user's result
        return out


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as it last reported itself (``JobStore.beat``)."""

    id: str
    host: str
    pid: int
    models: tuple[str, ...]  # loaded models
    jobs_done: int
    started_at: float
    last_seen: float
    current: str = ""  # the job it is running, if any


class JobStore(Protocol):
    """Calls that change a processing job take an optional `worker`: given, they act only while that
    worker still holds the job (a worker whose lease was taken back cannot overwrite its new holder)."""

    shared: bool  # other processes may hold leases on its jobs (so a start must not take them back)
    transient: tuple[type[BaseException], ...]  # errors that mean "unreachable for now, try again"
    refused: tuple[type[BaseException], ...]  # among them, those that trying again will not cure (credentials)

    def add(self, session: str, batch: str, jobs: Sequence[NewJob]) -> list[Job]: ...
    def claim(
        self, limit: Limit = 1, worker: str = "", lease: float = DEFAULT_LEASE_SECONDS, claim_id: str = ""
    ) -> list[Job]: ...
    def extend(self, job_ids: Sequence[str], lease: float = DEFAULT_LEASE_SECONDS, worker: str = "") -> int: ...
    def release(self, job_ids: Sequence[str], worker: str) -> int: ...
    def complete(self, job_id: str, result: Transcription, worker: str = "") -> bool: ...
    def fail(self, job_id: str, error: str, worker: str = "") -> bool: ...
    def get(self, session: str, job_id: str) -> Optional[Job]: ...
    def list(self, session: str, batch: Optional[str] = None) -> list[Job]: ...
    def counts(self, session: str, batch: Optional[str] = None) -> dict[str, int]: ...
    def cancel(self, session: str, job_id: str) -> bool: ...
    def delete(self, session: str, job_id: str) -> bool: ...
    def recover(self, expired_only: bool = False) -> tuple[int, int]: ...
    def expire(self, before: float) -> list[str]: ...
    def ids(self) -> set[str]: ...
    def beat(self, info: WorkerInfo) -> None: ...
    def workers(self, max_age: float) -> list[WorkerInfo]: ...
    def forget_worker(self, worker_id: str) -> bool: ...


# -- (de)serialising results -------------------------------------------------------------------
def _options_json(options: TranscribeOptions) -> str:
    return json.dumps(asdict(options), sort_keys=True)


def _options(text: str) -> TranscribeOptions:
    return TranscribeOptions(**json.loads(text))


def _result(text: Optional[str]) -> Optional[Transcription]:
    if not text:
        return None
    d = json.loads(text)
    segments = tuple(
        Segment(s["start"], s["end"], s["text"], tuple(Word(**w) for w in s.get("words", ()))) for s in d["segments"]
    )
    return Transcription(
        model=d["model"],
        text=d["text"],
        segments=segments,
        language=d["language"],
        options=TranscribeOptions(**d["options"]),
        metrics=Metrics(**d["metrics"]),
        warnings=tuple(d.get("warnings", ())),
        environment=RunEnvironment.from_dict(d["environment"]) if d.get("environment") else None,
    )


WORKER_FIELDS = ("id", "host", "pid", "models", "jobs_done", "started_at", "last_seen", "current")


def _worker_values(info: WorkerInfo) -> tuple:
    """A WorkerInfo as stored: models as a JSON list, in WORKER_FIELDS order."""
    return (info.id, info.host, info.pid, json.dumps(list(info.models)), info.jobs_done, info.started_at,
            info.last_seen, info.current)  # fmt: skip


def _worker(values: Sequence) -> WorkerInfo:
    """A stored worker (values in WORKER_FIELDS order, as numbers or as text) back as a WorkerInfo."""
    id_, host, pid, models, done, started, seen, current = values
    return WorkerInfo(id_, host, int(pid), tuple(json.loads(models)), int(done), float(started), float(seen), current)


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
    claim_id TEXT NOT NULL DEFAULT ''
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
    current TEXT NOT NULL DEFAULT ''
);
"""
# Columns added to `jobs` after its first release: a file made before them gets them on open.
ADDED_COLUMNS = {"worker": "TEXT NOT NULL DEFAULT ''", "lease_until": "REAL", "claim_id": "TEXT NOT NULL DEFAULT ''"}
# What going back to the queue sets (a release, a recovery): nobody's, no start, no lease.
REQUEUED = "status = 'queued', started_at = NULL, worker = '', lease_until = NULL"
COLUMNS = (
    "id, seq, session, batch, filename, model, options, status, audio_seconds, created_at, started_at, finished_at,"
    " attempts, error, result, worker, lease_until"
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
         error, result, worker, lease_until) = row
        return Job(
            id_, seq, session, batch, filename, model, _options(options), status, seconds, created, started, finished,
            attempts, error, _result(result), worker, lease_until,
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
                    " finished_at, error) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
                    (job.id, session, batch, job.filename, job.model, _options_json(job.options), status,
                     job.audio_seconds, now, now if job.error else None, job.error),
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
        return self._finish(job_id, "completed", "", json.dumps(result.to_dict()), worker)

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
                       _worker_values(info))  # fmt: skip

    def workers(self, max_age: float) -> list[WorkerInfo]:
        """Workers heard from in the last `max_age` seconds, oldest first."""
        rows = self._db().execute(
            f"SELECT {', '.join(WORKER_FIELDS)} FROM workers WHERE last_seen >= ? ORDER BY started_at, id",
            (time.time() - max_age,),
        )
        return [_worker(r) for r in rows]

    def forget_worker(self, worker_id: str) -> bool:
        with self._write() as db:
            cur = db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
        return cur.rowcount == 1


# -- audio -------------------------------------------------------------------------------------
def flac_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono samples as 24-bit FLAC: within 6e-8 of the float samples that were transcribed,
    at a third of the size of float WAV."""
    out = io.BytesIO()
    sf.write(out, samples, SAMPLE_RATE, subtype="PCM_24", format="FLAC")
    return out.getvalue()


def from_flac(data: bytes) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(data), dtype="float32")
    return samples


class AudioSpool(Protocol):
    """Each job's normalised audio (16 kHz mono, 24-bit FLAC) by job id. Reading, exporting or
    copying the audio of a job that has none raises FileNotFoundError."""

    def write(self, job_id: str, samples: np.ndarray) -> None: ...
    def read(self, job_id: str) -> np.ndarray: ...
    def exists(self, job_id: str) -> bool: ...
    def export(self, job_id: str, folder: Path, name: str = "") -> Path: ...
    def copy(self, source_id: str, job_id: str) -> None: ...
    def delete(self, job_ids: Iterable[str]) -> None: ...
    def orphans(self, known: set[str], older_than: float) -> list[str]: ...


class FlacSpool:
    """What both spools share: a job's audio as the FLAC bytes of flac_bytes, kept under its id.
    A spool supplies _put (store the bytes) and _get (the bytes, or FileNotFoundError)."""

    suffix = ".flac"

    def _put(self, job_id: str, data: bytes) -> None:
        raise NotImplementedError

    def _get(self, job_id: str) -> bytes:
        raise NotImplementedError

    def write(self, job_id: str, samples: np.ndarray) -> None:
        self._put(job_id, flac_bytes(samples))

    def read(self, job_id: str) -> np.ndarray:
        return from_flac(self._get(job_id))

    def export(self, job_id: str, folder: Path, name: str = "") -> Path:
        """A copy of the audio as folder/<name or job id>.flac (for the UI to serve; the spool stays private)."""
        data = self._get(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name or job_id}{self.suffix}"
        target.write_bytes(data)
        return target

    def copy(self, source_id: str, job_id: str) -> None:
        self._put(job_id, self._get(source_id))


@dataclass
class Spool(FlacSpool):
    """The audio spool as a folder of FLAC files named by job id (next to the SQLite store)."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}{self.suffix}"

    def _partial(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.partial{self.suffix}"

    def _put(self, job_id: str, data: bytes) -> None:
        self._partial(job_id).write_bytes(data)
        self._partial(job_id).replace(self.path(job_id))  # atomic: never a half-written file under a job's name

    def _get(self, job_id: str) -> bytes:
        return self.path(job_id).read_bytes()

    def exists(self, job_id: str) -> bool:
        return self.path(job_id).is_file()

    def delete(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.path(job_id).unlink(missing_ok=True)
            self._partial(job_id).unlink(missing_ok=True)

    def orphans(self, known: set[str], older_than: float) -> list[str]:
        """Ids of spooled audio with no job (a crash between writing the audio and adding the job, a
        job deleted while it ran), written before `older_than`: a file being submitted right now is
        written before its job exists and must not be taken for an orphan."""
        return sorted({
            p.name.split(".")[0] for p in self.folder.iterdir()
            if p.is_file() and p.name.split(".")[0] not in known and p.stat().st_mtime < older_than
        })  # fmt: skip


def open_store(url: str, data_dir: Path) -> tuple[JobStore, AudioSpool]:
    """The job store and audio spool that JOB_STORE names: "" or "sqlite", SQLite and a spool folder
    in data_dir; a redis://, rediss:// or unix:// URL, a Redis/Valkey server that keeps both."""
    if store_kind(url) == "sqlite":
        return SqliteJobStore(Path(data_dir) / "jobs.sqlite3"), Spool(Path(data_dir) / "spool")
    from explorer.redis_store import open_redis  # redis-py is needed, and imported, only for this

    return open_redis(url)

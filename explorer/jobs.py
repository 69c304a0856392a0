"""Durable batch jobs: a job store (SQLite by default) and the spool that keeps each job's audio.

The store is the single source of truth for a job's life: queued -> processing -> completed or
failed (or queued -> cancelled). Claiming is atomic, so a job runs once; a job left "processing"
by a crash goes back to the queue at the next start (``recover``). Every read and write that a
user can cause is scoped by session: the store keeps a SHA-256 of the session token, never the
token itself, and a call with another session finds nothing.

``JobStore`` is the interface; ``SqliteJobStore`` implements it on one file in WAL mode (readers
never block the worker that writes). Another store (a shared server) can replace it.
"""

from __future__ import annotations

import hashlib
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

from explorer.types import SAMPLE_RATE, Metrics, Segment, TranscribeOptions, Transcription, Word

Status = Literal["queued", "processing", "completed", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("queued", "processing", "completed", "failed", "cancelled")
FINISHED: tuple[Status, ...] = ("completed", "failed", "cancelled")
Limit = Union[int, Callable[[str], int]]  # jobs per claim, or a function of the head job's model


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

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("session")  # a hash, but still nobody's business
        return out


class JobStore(Protocol):
    def add(self, session: str, batch: str, jobs: Sequence[NewJob]) -> list[Job]: ...
    def claim(self, limit: Limit = 1) -> list[Job]: ...
    def complete(self, job_id: str, result: Transcription) -> bool: ...
    def fail(self, job_id: str, error: str) -> bool: ...
    def get(self, session: str, job_id: str) -> Optional[Job]: ...
    def list(self, session: str, batch: Optional[str] = None) -> list[Job]: ...
    def counts(self, session: str, batch: Optional[str] = None) -> dict[str, int]: ...
    def cancel(self, session: str, job_id: str) -> bool: ...
    def delete(self, session: str, job_id: str) -> bool: ...
    def recover(self) -> int: ...
    def expire(self, before: float) -> list[str]: ...
    def ids(self) -> set[str]: ...


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
    )


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
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session, seq);
"""
COLUMNS = "id, seq, session, batch, filename, model, options, status, audio_seconds, created_at, started_at, finished_at, attempts, error, result"


class SqliteJobStore:
    """JobStore on one SQLite file (WAL). One connection per thread; writes take the database
    lock up front (BEGIN IMMEDIATE) so a claim cannot interleave with another claim."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)  # executescript commits on its own

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
        (id_, seq, session, batch, filename, model, options, status, seconds, created, started, finished, attempts, error, result) = row
        return Job(
            id_, seq, session, batch, filename, model, _options(options), status, seconds, created, started, finished,
            attempts, error, _result(result),
        )  # fmt: skip

    def add(self, session: str, batch: str, jobs: Sequence[NewJob]) -> list[Job]:
        now = time.time()
        with self._write() as db:
            for job in jobs:
                status = "failed" if job.error else "queued"
                db.execute(
                    "INSERT INTO jobs (id, session, batch, filename, model, options, status, audio_seconds, created_at,"
                    " finished_at, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (job.id, session, batch, job.filename, job.model, _options_json(job.options), status,
                     job.audio_seconds, now, now if job.error else None, job.error),
                )  # fmt: skip
        return [self._get(job.id) for job in jobs]

    def _get(self, job_id: str) -> Job:
        return self._job(self._db().execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def claim(self, limit: Limit = 1) -> list[Job]:
        """The oldest queued job, plus up to limit-1 queued jobs right after it that ask for the
        same model and options (so they can share one batched model call). `limit` may be a
        function of the head job's model."""
        now = time.time()
        with self._write() as db:
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
                "UPDATE jobs SET status = 'processing', started_at = ?, attempts = attempts + 1 WHERE id = ?",
                [(now, row[0]) for row in run],
            )
        return [self._get(row[0]) for row in run]

    def _finish(self, job_id: str, status: Status, error: str, result: Optional[str]) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, error = ?, result = ?, finished_at = ? WHERE id = ? AND status = 'processing'",
                (status, error, result, time.time(), job_id),
            )
        return cur.rowcount == 1

    def complete(self, job_id: str, result: Transcription) -> bool:
        return self._finish(job_id, "completed", "", json.dumps(result.to_dict()))

    def fail(self, job_id: str, error: str) -> bool:
        return self._finish(job_id, "failed", error, None)

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

    def recover(self) -> int:
        """After a crash: jobs that were processing go back to the queue, in their old place."""
        with self._write() as db:
            cur = db.execute("UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'processing'")
        return cur.rowcount

    def expire(self, before: float) -> list[str]:
        with self._write() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE created_at < ?", (before,))]
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
        return ids

    def ids(self) -> set[str]:
        return {r[0] for r in self._db().execute("SELECT id FROM jobs")}


@dataclass
class Spool:
    """Each job's normalised audio (16 kHz mono) as FLAC, named by job id; 24-bit keeps the
    float samples within 6e-8 of what was transcribed, at a third of the size of float WAV."""

    folder: Path
    suffix: str = field(default=".flac", init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}{self.suffix}"

    def write(self, job_id: str, samples: np.ndarray) -> Path:
        path, partial = self.path(job_id), self.folder / f"{job_id}.partial{self.suffix}"
        sf.write(partial, samples, SAMPLE_RATE, subtype="PCM_24", format="FLAC")
        partial.replace(path)  # atomic: a crash never leaves a half-written spool file under a job's name
        return path

    def read(self, job_id: str) -> np.ndarray:
        samples, _ = sf.read(self.path(job_id), dtype="float32")
        return samples

    def copy(self, source_id: str, job_id: str) -> Path:
        import shutil

        shutil.copyfile(self.path(source_id), self.path(job_id))
        return self.path(job_id)

    def delete(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.path(job_id).unlink(missing_ok=True)

    def orphans(self, known: set[str], older_than: float) -> list[Path]:
        """Spool files with no job (a crash between writing the audio and adding the job, a job
        deleted while it ran), modified before `older_than`: a file being submitted right now is
        written before its job row exists and must not be taken for an orphan."""
        return [
            p for p in self.folder.iterdir()
            if p.is_file() and p.name.split(".")[0] not in known and p.stat().st_mtime < older_than
        ]  # fmt: skip

"""What a job store keeps and promises: jobs, new jobs, workers, statuses and the store's interface.

A job's life: queued -> processing -> completed or failed (or queued -> cancelled). A claim is a
lease that its worker renews while it runs; a job taken back after its MAX_ATTEMPTS-th claim fails
instead (crashed_error). Every read and write that a user can cause is scoped by session: a store
keeps a SHA-256 of the session token (session_key), never the token itself.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, NamedTuple, Optional, Protocol, Sequence, Union

from explorer.config import DEFAULT_LEASE_SECONDS
from explorer.types import TranscribeOptions, Transcription

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
    warnings: tuple[str, ...] = ()  # the repairs decoding its file made (Audio.warnings)


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
    warnings: tuple[str, ...] = ()  # the repairs decoding its file made (its result repeats them once it runs)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("session")  # a hash, but still nobody's business
        out.pop("worker")  # which host and process ran it is not part of the user's result
        return out


class Running(NamedTuple):
    """What a worker runs of one model: the model and the ids of the jobs it holds."""

    model: str
    job_ids: tuple[str, ...]


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
    current: tuple[Running, ...] = ()  # the jobs it is running, by model; empty when idle


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

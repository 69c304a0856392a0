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

- ``model``: Job, NewJob, WorkerInfo (and what it runs, Running), the statuses and the ``JobStore`` interface;
- ``codec``: options, results and workers as the stores keep them;
- ``sqlite``: ``SqliteJobStore``, on one file in WAL mode (readers never block the worker that writes);
- ``redis_store``: ``RedisJobStore`` and ``RedisSpool``, on a Redis/Valkey server that workers on
  several machines share (imported, with redis-py, only when JOB_STORE names a server);
- ``spools``: the audio spools; ``Spool`` is a folder of FLAC files.

- ``arena_store``, ``arena_redis``: the blind arena's battles and votes, in the same SQLite file or on the same server.

``open_store`` picks a store and a spool from ``JOB_STORE``; ``open_arena`` the arena's store and its spool.
"""

from __future__ import annotations

from pathlib import Path

from explorer.config import store_kind
from explorer.jobs.model import (
    FINISHED, MAX_ATTEMPTS, STATUSES, Job, JobStore, Limit, NewJob, Running, Status, WorkerInfo, crashed_error, new_token,
    session_key,
)  # fmt: skip
from explorer.jobs.spools import AudioSpool, FlacSpool, Spool, flac_bytes, from_flac
from explorer.jobs.arena_store import ArenaStore, SqliteArenaStore
from explorer.jobs.sqlite import SqliteJobStore

__all__ = [
    "ArenaStore", "SqliteArenaStore", "open_arena", "FINISHED", "MAX_ATTEMPTS", "STATUSES", "AudioSpool", "FlacSpool", "Job", "JobStore", "Limit", "NewJob", "Running",
    "Spool", "SqliteJobStore", "Status", "WorkerInfo", "crashed_error", "flac_bytes", "from_flac", "new_token", "open_store",
    "session_key",
]  # fmt: skip


def open_store(url: str, data_dir: Path) -> tuple[JobStore, AudioSpool]:
    """The job store and audio spool that JOB_STORE names: "" or "sqlite", SQLite and a spool folder
    in data_dir; a redis://, rediss:// or unix:// URL, a Redis/Valkey server that keeps both."""
    if store_kind(url) == "sqlite":
        return SqliteJobStore(Path(data_dir) / "jobs.sqlite3"), Spool(Path(data_dir) / "spool")
    from explorer.jobs.redis_store import open_redis  # redis-py is needed, and imported, only for this

    return open_redis(url)


def open_arena(url: str, data_dir: Path) -> tuple[ArenaStore, AudioSpool]:
    """The arena's store and the spool of audio users shared, where JOB_STORE keeps the jobs: the
    same SQLite file (its own spool folder), or the same Redis/Valkey server (its own keys)."""
    if store_kind(url) == "sqlite":
        return SqliteArenaStore(Path(data_dir) / "jobs.sqlite3"), Spool(Path(data_dir) / "arena-audio")
    from explorer.jobs.arena_redis import RedisArenaStore
    from explorer.jobs.redis_store import RedisSpool, connect, split_url

    server, prefix = split_url(url)
    client = connect(server)
    return RedisArenaStore(client, prefix), RedisSpool(client, prefix + "arena:")

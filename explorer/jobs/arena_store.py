"""The arena's battles and votes: in the app's SQLite file (DATA_DIR/jobs.sqlite3, beside the jobs)
or, when JOB_STORE names a Redis/Valkey server, there (``explorer.jobs.arena_redis``), so that
replicas sharing one store share one arena.

A battle row holds what the reveal needs (both transcripts) until it expires; a vote row is kept
for good and holds no audio, only its SHA-256 and duration. A vote is recorded in one transaction
that first asks ``explorer.arena.refusal`` (issued to this session, not expired, not voted on,
within ARENA_VOTES_PER_HOUR), so concurrent votes can neither double one battle nor pass the limit.
Audio a user chose to share goes to a spool of its own, removed JOB_TTL_HOURS after it was written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Optional, Protocol

from explorer.arena import HOUR, Battle, Outcome, Vote, VoteRefused, refusal, vote_for
from explorer.jobs.codec import options_from_json, options_json, result_from_json, result_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS arena_battles (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    data TEXT NOT NULL,  -- battle_json
    expires_at REAL NOT NULL,
    voted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS arena_battles_expiry ON arena_battles (expires_at);
CREATE TABLE IF NOT EXISTS arena_votes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    battle TEXT NOT NULL UNIQUE,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    outcome TEXT NOT NULL,
    session TEXT NOT NULL,
    audio_sha256 TEXT NOT NULL,
    audio_seconds REAL NOT NULL,
    options TEXT NOT NULL,
    voted_at REAL NOT NULL,
    seconds_to_vote REAL NOT NULL,
    words INTEGER NOT NULL,
    audio_shared INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS arena_votes_session ON arena_votes (session, voted_at);
"""
VOTE_COLUMNS = (
    "battle, model_a, model_b, outcome, session, audio_sha256, audio_seconds, options, voted_at, seconds_to_vote,"
    " words, audio_shared"
)
# A battle stays readable this long after it expired, so a late vote is told "expired", not "unknown".
KEEP_EXPIRED_SECONDS = HOUR


def battle_json(battle: Battle) -> str:
    data = {k: getattr(battle, k) for k in battle.__dataclass_fields__ if k not in ("options", "result_a", "result_b")}
    data.update(options=options_json(battle.options), result_a=result_json(battle.result_a), result_b=result_json(battle.result_b))
    return json.dumps(data)


def battle_from_json(text: str, voted: bool) -> Battle:
    data = json.loads(text)
    data.update(
        options=options_from_json(data["options"]), result_a=result_from_json(data["result_a"]),
        result_b=result_from_json(data["result_b"]), voted=voted,
    )  # fmt: skip
    return Battle(**data)


class ArenaStore(Protocol):
    def issue(self, battle: Battle) -> None: ...
    def vote(self, battle_id: str, session: str, outcome: Outcome, votes_per_hour: int, now: Optional[float] = None) -> tuple[Battle, Vote]: ...
    def votes(self) -> list[Vote]: ...
    def vote_count(self) -> int: ...
    def pair_counts(self) -> Counter: ...
    def expire(self, now: Optional[float] = None) -> int: ...


class SqliteArenaStore:
    """ArenaStore on the job store's SQLite file (WAL, a connection per thread, writes under BEGIN IMMEDIATE)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def issue(self, battle: Battle) -> None:
        self._db().execute(
            "INSERT INTO arena_battles (id, session, data, expires_at) VALUES (?,?,?,?)",
            (battle.id, battle.session, battle_json(battle), battle.expires_at),
        )

    def vote(self, battle_id: str, session: str, outcome: Outcome, votes_per_hour: int,
             now: Optional[float] = None) -> tuple[Battle, Vote]:  # fmt: skip
        now = time.time() if now is None else now
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT data, voted FROM arena_battles WHERE id = ?", (battle_id,)).fetchone()
            battle = battle_from_json(row[0], bool(row[1])) if row else None
            recent = db.execute(
                "SELECT COUNT(*) FROM arena_votes WHERE session = ? AND voted_at > ?", (session, now - HOUR)
            ).fetchone()[0]
            why = refusal(battle, session, now, recent, votes_per_hour)
            if why:
                raise VoteRefused(why)
            vote = vote_for(battle, outcome, now)
            db.execute("UPDATE arena_battles SET voted = 1 WHERE id = ?", (battle_id,))
            db.execute(f"INSERT INTO arena_votes ({VOTE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _vote_values(vote))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return replace(battle, voted=True), vote

    def votes(self) -> list[Vote]:
        rows = self._db().execute(f"SELECT {VOTE_COLUMNS} FROM arena_votes ORDER BY seq")
        return [_vote_from_row(r) for r in rows]

    def vote_count(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM arena_votes").fetchone()[0]

    def pair_counts(self) -> Counter:
        """Votes per unordered pair of models (``arena.pair_counts`` of every vote), counted by
        SQLite: a battle's draw reads a row per pair, not every vote."""
        counts: Counter = Counter()
        for a, b, n in self._db().execute("SELECT model_a, model_b, COUNT(*) FROM arena_votes GROUP BY model_a, model_b"):
            counts[frozenset((a, b))] += n
        return counts

    def expire(self, now: Optional[float] = None) -> int:
        """Forget battles that expired over KEEP_EXPIRED_SECONDS ago (their votes stay)."""
        now = time.time() if now is None else now
        cur = self._db().execute("DELETE FROM arena_battles WHERE expires_at < ?", (now - KEEP_EXPIRED_SECONDS,))
        return cur.rowcount


def _vote_values(v: Vote) -> tuple:
    return (v.battle, v.model_a, v.model_b, v.outcome, v.session, v.audio_sha256, v.audio_seconds, options_json(v.options),
            v.voted_at, v.seconds_to_vote, v.words, int(v.audio_shared))  # fmt: skip


def _vote_from_row(row: tuple) -> Vote:
    values = list(row)
    values[7] = options_from_json(values[7])
    values[11] = bool(values[11])
    return Vote(*values)

"""The arena at work: draws a pair, runs both models through the service, issues the battle,
records the vote and reveals, ranks on demand. The logic is ``explorer.arena``'s; here are the
side effects (the service, the store, the clock, the randomness, the caches).

Transcripts are cached by (audio SHA-256, model, options): the same audio drawn again with the
same model reuses the first run (its metrics are that run's, and the reveal says so), so a
popular sample clip costs one run per model, not one per battle.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from explorer import arena, catalog
from explorer.arena import Battle, Leaderboard, Vote
from explorer.audio import Audio
from explorer.config import Settings
from explorer.jobs import ArenaStore, AudioSpool, open_arena, session_key
from explorer.jobs.codec import options_json
from explorer.scoring import align, score
from explorer.service import ModelService
from explorer.sessions import SessionTokens, session_secret
from explorer.types import TranscribeOptions, Transcription

CACHE_ENTRIES = 256  # transcripts kept for reuse (a few KB each)
SIDES = ("A", "B")


def audio_sha256(audio: Audio) -> str:
    """The fingerprint a vote keeps of its audio: the decoded 16 kHz mono samples' SHA-256 (the
    same speech in another container or bit rate of the same decode hashes alike)."""
    return hashlib.sha256(np.ascontiguousarray(audio.samples, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class Issued:
    token: str  # the session's (issued with the first battle when the client had none)
    battle: Battle
    warnings: tuple[str, ...]  # the audio's repairs only: a model's own warnings could name it

    def public(self) -> dict:
        """All a client sees before its vote: no model names, no metrics, no timing."""
        b = self.battle
        language = b.options.language or b.result_a.language or b.result_b.language
        return {
            "token": self.token,
            "battle": b.id,
            "transcripts": {"A": b.result_a.text, "B": b.result_b.text},
            "diff": [[w.op, w.reference, w.hypothesis] for w in align(b.result_a.text, b.result_b.text, language)],
            "audio_seconds": round(b.audio_seconds, 3),
            "expires_at": b.expires_at,
            "warnings": list(self.warnings),
        }


def reveal(battle: Battle, vote: Vote, reference: str = "") -> dict:
    """What a vote unlocks: each side's model, transcript, metrics and, with a reference, WER."""
    language = battle.options.language or battle.result_a.language
    sides = {}
    for side, key, result, reused in (("A", battle.model_a, battle.result_a, battle.reused_a),
                                      ("B", battle.model_b, battle.result_b, battle.reused_b)):  # fmt: skip
        s = score(reference, result.text, language) if reference and reference.strip() else None
        sides[side] = {
            "model": key,
            "name": catalog.get(key).name,
            "text": result.text,
            "metrics": asdict(result.metrics),
            "reused": reused,  # the metrics are an earlier run's, on the same audio
            "wer": s.wer if s else None,
            "cer": s.cer if s else None,
            "warnings": list(result.warnings),
            "environment": result.environment.label() if result.environment else None,
        }
    return {"battle": battle.id, "outcome": vote.outcome, "models": sides, "reference": reference or None}


class Arena:
    def __init__(self, service: ModelService, settings: Settings, store: Optional[ArenaStore] = None,
                 spool: Optional[AudioSpool] = None, tokens: Optional[SessionTokens] = None):  # fmt: skip
        self.service, self.settings = service, settings
        if store is None:
            store, spool = open_arena(settings.job_store, settings.data_dir)
        self.store, self.spool = store, spool
        self.tokens = tokens or SessionTokens(session_secret(settings.session_secret, settings.data_dir))
        self._rng = np.random.default_rng(secrets.randbits(128))
        self._cache: "OrderedDict[tuple[str, str, str], Transcription]" = OrderedDict()
        self._board: dict[bool, tuple[int, Leaderboard]] = {}
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    # -- sessions and models ----------------------------------------------------------------------
    def session(self, token: Optional[str]) -> tuple[str, str]:
        """(token, its store key): a fresh token for none; PermissionError for one not issued here."""
        token = (token or "").strip() or self.tokens.issue()
        if not self.tokens.valid(token):
            raise PermissionError("unknown session token: pass the token /arena_battle returned (or none, for a new session)")
        return token, session_key(token)

    def models(self) -> list[str]:
        """The models that battle: ARENA_MODELS, else every ready one; only those that can run here."""
        keys = self.settings.arena_models or [k for k, a in self.service.availability.items() if a.status == "ready"]
        return [k for k in keys if k in self.service.availability and self.service.availability[k].status != "unavailable"]

    # -- battle ----------------------------------------------------------------------------------
    def _transcribe(self, key: str, audio: Audio, sha: str, options: TranscribeOptions) -> tuple[Transcription, bool]:
        cache_key = (sha, key, options_json(options))
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None:
                self._cache.move_to_end(cache_key)
                return cached, True
        result = self.service.transcribe(key, audio, options)
        with self._lock:
            self._cache[cache_key] = result
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return result, False

    def battle(self, token: Optional[str], audio: Audio, options: TranscribeOptions, share_audio: bool = False) -> Issued:
        """Two models drawn by the server (the client has no say) on one audio; both run before
        either transcript is shown."""
        token, session = self.session(token)
        models = self.models()
        if len(models) < 2:
            raise ValueError(f"the arena needs two ready models, this server has {len(models)}")
        sha = audio_sha256(audio)
        with self._lock:
            counts = self.store.pair_counts()  # per pair, counted by the store
            model_a, model_b = arena.draw_pair(models, counts, self._rng)
        result_a, reused_a = self._transcribe(model_a, audio, sha, options)
        result_b, reused_b = self._transcribe(model_b, audio, sha, options)
        now = time.time()
        battle = Battle(
            id=arena.new_battle_id(), session=session, model_a=model_a, model_b=model_b, audio_sha256=sha,
            audio_seconds=audio.duration, options=options, issued_at=now,
            expires_at=now + self.settings.arena_battle_ttl_minutes * 60, result_a=result_a, result_b=result_b,
            audio_shared=bool(share_audio), reused_a=reused_a, reused_b=reused_b,
        )  # fmt: skip
        if share_audio and self.spool is not None:
            self.spool.write(battle.id, audio.samples)
        self.store.issue(battle)
        self.sweep()
        return Issued(token, battle, tuple(audio.warnings))

    # -- vote ------------------------------------------------------------------------------------
    def vote(self, token: Optional[str], battle_id: str, vote: str, reference: str = "") -> dict:
        """Record one vote (refused: arena.VoteRefused, PermissionError; a bad choice: ValueError); the reveal."""
        outcome = arena.outcome_of(vote)
        if not (token or "").strip():
            raise PermissionError(arena.UNKNOWN_BATTLE)
        _, session = self.session(token)
        battle, recorded = self.store.vote((battle_id or "").strip(), session, outcome, self.settings.arena_votes_per_hour)
        return reveal(battle, recorded, reference)

    # -- leaderboard -----------------------------------------------------------------------------
    def leaderboard(self, exclude_flagged: bool = True) -> Leaderboard:
        """Recomputed when votes were added since the last computation, else the cached one."""
        self.sweep()
        count = self.store.vote_count()
        with self._lock:
            cached = self._board.get(exclude_flagged)
            if cached and cached[0] == count:
                return cached[1]
        votes = self.store.votes()
        board = arena.leaderboard(votes, exclude_flagged)
        with self._lock:
            self._board[exclude_flagged] = (len(votes), board)
        return board

    def sweep(self, now: Optional[float] = None) -> None:
        """Expired battles, and shared audio older than JOB_TTL_HOURS, at most every SWEEP_INTERVAL_SECONDS."""
        now = time.time() if now is None else now
        if now - self._last_sweep < self.settings.sweep_interval_seconds:
            return
        self._last_sweep = now
        self.store.expire(now)
        if self.spool is not None:
            self.spool.delete(self.spool.orphans(set(), now - self.settings.job_ttl_hours * 3600))

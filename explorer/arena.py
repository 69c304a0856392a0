"""The blind arena's logic: pairs, battles, votes, abuse flags and the Bradley–Terry leaderboard.

Pure functions over dataclasses; the stores (``explorer.jobs.arena_store``) keep battles and votes,
and ``explorer.battles`` runs the models. The method follows FastChat's Chatbot Arena
(``fastchat/serve/monitor/elo_analysis.py``): a Bradley–Terry model fitted to the votes (here with
``choix``'s maximum-likelihood solver over the win-count matrix), ratings on an Elo-like scale
(400 points = 10:1 odds, mean 1000), 95 % intervals from bootstrap rounds that resample votes,
and ties counted as FastChat counts them: every decisive vote is two wins for its winner, every tie
(or "both bad") one win each way, i.e. half a win for each side.
"""

from __future__ import annotations

import json
import math
import secrets
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Literal, Mapping, Optional, Sequence

import choix
import numpy as np
import pandas as pd

from explorer.types import TranscribeOptions, Transcription

Outcome = Literal["model_a", "model_b", "tie", "tie (bothbad)"]  # FastChat's names
OUTCOMES: tuple[Outcome, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")
# What a client may send as a vote, and the outcome it means.
VOTE_NAMES: dict[str, Outcome] = {
    "a": "model_a", "b": "model_b", "tie": "tie", "both_bad": "tie (bothbad)",
    **{o: o for o in OUTCOMES},
}  # fmt: skip
SCALE, BASE, INIT_RATING = 400.0, 10.0, 1000.0  # FastChat's Elo-like scale
ALPHA = 0.01  # choix's regularisation: finite ratings for a model that never lost (or never won)
BOOTSTRAP_ROUNDS = 200
# Abuse: a session whose last SAME_SIDE_VOTES votes or more all name the same outcome, or whose
# votes came, for at least FAST_VOTES of them and half of all, before both transcripts could be
# skimmed (READ_WORDS_PER_SECOND, at least MIN_READ_SECONDS).
SAME_SIDE_VOTES = 10
FAST_VOTES = 3
READ_WORDS_PER_SECOND = 8.0
MIN_READ_SECONDS = 1.0
HOUR = 3600.0

UNKNOWN_BATTLE = "unknown battle: it was not issued to this session (start a battle first)"


class VoteRefused(PermissionError):
    """A vote the arena will not count; str() is a message for the user."""


def new_battle_id() -> str:
    """An unguessable battle id (128 random bits)."""
    return secrets.token_urlsafe(16)


def outcome_of(vote: str) -> Outcome:
    key = (vote or "").strip().lower()
    if key not in VOTE_NAMES:
        raise ValueError(f"vote must be one of a, b, tie, both_bad (got {vote!r})")
    return VOTE_NAMES[key]


# -- battles and votes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Battle:
    """Two anonymous models' transcripts of one audio, issued to one session until `expires_at`."""

    id: str
    session: str  # the session token's SHA-256, never the token
    model_a: str
    model_b: str
    audio_sha256: str
    audio_seconds: float
    options: TranscribeOptions
    issued_at: float  # when both transcripts were ready (shown)
    expires_at: float
    result_a: Transcription
    result_b: Transcription
    audio_shared: bool = False  # the user agreed to keep the audio for review (JOB_TTL_HOURS)
    reused_a: bool = False  # the transcript is an earlier run's on the same audio (its metrics too)
    reused_b: bool = False
    voted: bool = False

    def words(self) -> int:
        return len(self.result_a.text.split()) + len(self.result_b.text.split())


@dataclass(frozen=True)
class Vote:
    battle: str
    model_a: str
    model_b: str
    outcome: Outcome
    session: str
    audio_sha256: str
    audio_seconds: float
    options: TranscribeOptions
    voted_at: float
    seconds_to_vote: float  # from the transcripts being shown to the vote
    words: int  # in both transcripts: how long they take to read
    audio_shared: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Vote":
        data = json.loads(text)
        data["options"] = TranscribeOptions(**data["options"])
        return cls(**data)


def refusal(battle: Optional[Battle], session: str, now: float, recent_votes: int, votes_per_hour: int) -> Optional[str]:
    """Why this session may not vote on this battle now (None: it may). The stores call it inside
    the transaction that records the vote, so two votes can never both pass."""
    if battle is None or battle.session != session:  # one message: no telling a stranger's ids from made-up ones
        return UNKNOWN_BATTLE
    if battle.voted:
        return "this battle already has your vote: start a new battle"
    if now > battle.expires_at:
        return "this battle has expired: start a new battle"
    if recent_votes >= votes_per_hour:
        return f"this session has cast {recent_votes} votes in the last hour, the limit (ARENA_VOTES_PER_HOUR): try again later"
    return None


def vote_for(battle: Battle, outcome: Outcome, now: float) -> Vote:
    return Vote(
        battle=battle.id, model_a=battle.model_a, model_b=battle.model_b, outcome=outcome, session=battle.session,
        audio_sha256=battle.audio_sha256, audio_seconds=battle.audio_seconds, options=battle.options, voted_at=now,
        seconds_to_vote=max(0.0, now - battle.issued_at), words=battle.words(), audio_shared=battle.audio_shared,
    )  # fmt: skip


# -- pair sampling --------------------------------------------------------------------------------
def pair_counts(votes: Sequence[Vote]) -> Counter:
    return Counter(frozenset((v.model_a, v.model_b)) for v in votes)


def draw_pair(models: Sequence[str], counts: Mapping[frozenset, int], rng: np.random.Generator) -> tuple[str, str]:
    """Two different models, the pair drawn with weight 1 / (1 + how many more votes it has than
    the least voted pair), so pairs that met less meet sooner; which one is A is a coin toss."""
    models = sorted(set(models))
    if len(models) < 2:
        raise ValueError("the arena needs at least two ready models")
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]
    seen = np.array([counts.get(frozenset(p), 0) for p in pairs], dtype=float)
    weights = 1.0 / (1.0 + seen - seen.min())
    a, b = pairs[rng.choice(len(pairs), p=weights / weights.sum())]
    return (a, b) if rng.random() < 0.5 else (b, a)


# -- abuse ----------------------------------------------------------------------------------------
def read_seconds(words: int) -> float:
    """The least time in which both transcripts could be skimmed."""
    return max(MIN_READ_SECONDS, words / READ_WORDS_PER_SECOND)


def flag_sessions(votes: Sequence[Vote]) -> dict[str, str]:
    """Sessions whose votes look automated or careless, with why: always the same outcome (at least
    SAME_SIDE_VOTES votes), or mostly faster than the transcripts could be read."""
    by_session: dict[str, list[Vote]] = {}
    for v in votes:
        by_session.setdefault(v.session, []).append(v)
    flags = {}
    for session, own in by_session.items():
        fast = sum(v.seconds_to_vote < read_seconds(v.words) for v in own)
        if len(own) >= SAME_SIDE_VOTES and len({v.outcome for v in own}) == 1:
            flags[session] = f"all {len(own)} votes {own[0].outcome}"
        elif fast >= FAST_VOTES and fast * 2 >= len(own):
            flags[session] = f"{fast} of {len(own)} votes faster than the transcripts could be read"
    return flags


# -- the leaderboard ------------------------------------------------------------------------------
def win_matrix(models: Sequence[str], a: np.ndarray, b: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """m[i, j]: how many times model i beat model j, FastChat's way: a decisive vote counts two
    wins for its winner, a tie (either kind) one win for each side."""
    n = len(models)
    m = np.zeros((n, n))
    won_a, won_b, tied = outcomes == 0, outcomes == 1, outcomes >= 2
    np.add.at(m, (a[won_a], b[won_a]), 2.0)
    np.add.at(m, (b[won_b], a[won_b]), 2.0)
    np.add.at(m, (a[tied], b[tied]), 1.0)
    np.add.at(m, (b[tied], a[tied]), 1.0)
    return m


def bradley_terry(m: np.ndarray) -> np.ndarray:
    """Ratings on the Elo-like scale (mean INIT_RATING) from a win matrix (choix's ILSR solver)."""
    strengths = choix.ilsr_pairwise_dense(m, alpha=ALPHA, max_iter=1000)
    return INIT_RATING + SCALE / math.log(BASE) * (strengths - strengths.mean())


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    lower: float  # 95 % bootstrap interval
    upper: float
    votes: int
    wins: int
    losses: int
    ties: int  # "tie" and "both bad"
    win_rate: float  # (wins + ties / 2) / votes


LEADERBOARD_COLUMNS = [f.name for f in Rating.__dataclass_fields__.values()]


@dataclass(frozen=True)
class Leaderboard:
    ratings: tuple[Rating, ...]  # best first
    # win_fraction[a][b]: the share of a's decisive votes against b that a won (ties left out, as
    # FastChat's pairwise table); None where the two never had a decisive vote.
    win_fraction: dict[str, dict[str, Optional[float]]]
    votes: int  # counted
    excluded_votes: int  # from flagged sessions, when they are excluded
    flagged_sessions: int
    exclude_flagged: bool
    rounds: int

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.ratings], columns=LEADERBOARD_COLUMNS)

    def to_dict(self) -> dict:
        return {
            "ratings": [asdict(r) for r in self.ratings],
            "win_fraction": self.win_fraction,
            "votes": self.votes,
            "excluded_votes": self.excluded_votes,
            "flagged_sessions": self.flagged_sessions,
            "exclude_flagged": self.exclude_flagged,
            "bootstrap_rounds": self.rounds,
            "method": "Bradley-Terry (choix), Elo-like scale: 400 points = 10:1 odds, mean 1000; "
            "95% intervals from bootstrap rounds over votes; a tie counts half a win for each side",
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        return self.frame.to_csv(index=False)


def leaderboard(
    votes: Sequence[Vote], exclude_flagged: bool = True, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> Leaderboard:
    """Bradley–Terry ratings with bootstrap intervals, counts and the pairwise win fractions."""
    flags = flag_sessions(votes)
    counted = [v for v in votes if not (exclude_flagged and v.session in flags)]
    models = sorted({m for v in counted for m in (v.model_a, v.model_b)})
    index = {m: i for i, m in enumerate(models)}
    a = np.array([index[v.model_a] for v in counted], dtype=int)
    b = np.array([index[v.model_b] for v in counted], dtype=int)
    outcomes = np.array([OUTCOMES.index(v.outcome) for v in counted], dtype=int)
    ratings: list[Rating] = []
    if len(models) >= 2:
        point = bradley_terry(win_matrix(models, a, b, outcomes))
        rng = np.random.default_rng(seed)
        samples = np.empty((rounds, len(models)))
        for r in range(rounds):  # resample votes with replacement, refit
            pick = rng.integers(0, len(counted), len(counted))
            samples[r] = bradley_terry(win_matrix(models, a[pick], b[pick], outcomes[pick]))
        lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
        for i, model in enumerate(models):
            mine_a, mine_b = a == i, b == i
            wins = int(np.sum(mine_a & (outcomes == 0)) + np.sum(mine_b & (outcomes == 1)))
            ties = int(np.sum((mine_a | mine_b) & (outcomes >= 2)))
            total = int(np.sum(mine_a | mine_b))
            ratings.append(Rating(model, round(float(point[i]), 1), round(float(lower[i]), 1), round(float(upper[i]), 1),
                                  total, wins, total - wins - ties, ties, round((wins + ties / 2) / total, 4)))  # fmt: skip
        ratings.sort(key=lambda r: -r.rating)
    return Leaderboard(
        ratings=tuple(ratings),
        win_fraction=win_fractions([r.model for r in ratings], counted),
        votes=len(counted),
        excluded_votes=len(votes) - len(counted),
        flagged_sessions=len(flags),
        exclude_flagged=exclude_flagged,
        rounds=rounds,
    )


def win_fractions(models: Sequence[str], votes: Sequence[Vote]) -> dict[str, dict[str, Optional[float]]]:
    won: Counter = Counter()
    for v in votes:
        if v.outcome == "model_a":
            won[(v.model_a, v.model_b)] += 1
        elif v.outcome == "model_b":
            won[(v.model_b, v.model_a)] += 1
    out: dict[str, dict[str, Optional[float]]] = {}
    for x in models:
        out[x] = {}
        for y in models:
            decisive = won[(x, y)] + won[(y, x)]
            out[x][y] = round(won[(x, y)] / decisive, 4) if x != y and decisive else None
    return out

"""The arena's logic and stores: Bradley–Terry recovery of known strengths from simulated votes,
ties counted as FastChat counts them (checked against FastChat's own logistic regression),
pair sampling, abuse flags, and the stores (a real SQLite file, a real redis-server): refused
votes (forged, foreign, expired, reused, over the hourly limit) and 8 concurrent voters that lose
no vote and double none. Battles carry real transcripts of real speech (faster-whisper tiny.en
and base on a LibriVox clip)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from explorer import arena, catalog
from explorer.arena import Battle, Vote, VoteRefused
from explorer.audio import load_audio
from explorer.battles import Arena, audio_sha256
from explorer.jobs import open_arena
from explorer.types import TranscribeOptions

MODELS = ["m0", "m1", "m2", "m3", "m4"]
# True Bradley-Terry strengths (natural log odds), mean zero: 0.5 apart ≈ 62 % wins for the stronger.
TRUE_STRENGTHS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
EN = TranscribeOptions(language="en")


def expected_rating(strength: float) -> float:
    return arena.INIT_RATING + arena.SCALE / math.log(arena.BASE) * strength


def simulated_votes(n: int, seed: int, tie_share: float = 0.0) -> list[Vote]:
    """Voters who prefer A with the Bradley-Terry probability of the true strengths; pairs drawn
    as the server draws them; 50 sessions, each vote read for 10 s."""
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    votes = []
    for k in range(n):
        a, b = arena.draw_pair(MODELS, counts, rng)
        counts[frozenset((a, b))] += 1
        p_a = 1 / (1 + math.exp(TRUE_STRENGTHS[MODELS.index(b)] - TRUE_STRENGTHS[MODELS.index(a)]))
        outcome = "tie" if rng.random() < tie_share else ("model_a" if rng.random() < p_a else "model_b")
        votes.append(Vote(f"b{k}", a, b, outcome, f"s{k % 50}", "0" * 64, 3.0, EN, 1e9 + k, 10.0, 16))
    return votes


def test_bradley_terry_recovers_the_order_and_covers_the_true_strengths_from_2000_votes():
    """20 electorates of 2,000 votes each (fixed seeds): the order is recovered every time, and
    the issue's check, intervals covering at least 4 of the 5 true strengths, holds in 18 of 20.
    The percentile bootstrap is a little narrow: 90 of these 100 intervals cover (95 % nominal)."""
    covered_per_run = []
    for seed in range(20):
        board = arena.leaderboard(simulated_votes(2000, seed))
        assert board.votes == 2000 and board.excluded_votes == 0
        assert [r.model for r in board.ratings] == MODELS[::-1], board.ratings
        assert sum(r.votes for r in board.ratings) == 2 * 2000
        covered_per_run.append(
            sum(r.lower <= expected_rating(TRUE_STRENGTHS[MODELS.index(r.model)]) <= r.upper for r in board.ratings)
        )
    assert sum(c >= 4 for c in covered_per_run) >= 18, covered_per_run
    assert sum(covered_per_run) >= 90, covered_per_run


def fastchat_mle(votes: list[Vote]) -> dict[str, float]:
    """FastChat's compute_mle_elo (fastchat/serve/monitor/elo_analysis.py), as published: every
    battle twice; a decisive one won by its winner both times, a tie won by A once and by B once;
    a logistic regression without intercept or penalty; SCALE * coef + INIT_RATING."""
    from sklearn.linear_model import LogisticRegression

    df = pd.DataFrame([{"model_a": v.model_a, "model_b": v.model_b, "winner": v.outcome} for v in votes])
    models = pd.Series(np.arange(len(MODELS)), index=MODELS)
    df = pd.concat([df, df], ignore_index=True)
    n = len(df)
    X = np.zeros([n, len(MODELS)])
    X[np.arange(n), models[df["model_a"]]] = +math.log(arena.BASE)
    X[np.arange(n), models[df["model_b"]]] = -math.log(arena.BASE)
    Y = np.zeros(n)
    Y[df["winner"] == "model_a"] = 1.0
    tie_idx = ((df["winner"] == "tie") | (df["winner"] == "tie (bothbad)")).to_numpy().copy()
    tie_idx[n // 2 :] = False
    Y[tie_idx] = 1.0
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000)
    lr.fit(X, Y)
    scores = arena.SCALE * lr.coef_[0]
    return dict(zip(MODELS, scores - scores.mean() + arena.INIT_RATING))


def test_ties_count_as_fastchat_counts_them():
    votes = simulated_votes(600, seed=7, tie_share=0.3)
    votes = [replace(v, outcome="tie (bothbad)") if i % 7 == 0 and v.outcome == "tie" else v for i, v in enumerate(votes)]
    assert {v.outcome for v in votes} == set(arena.OUTCOMES)
    ours = {r.model: r.rating for r in arena.leaderboard(votes, rounds=10).ratings}
    theirs = fastchat_mle(votes)
    for model in MODELS:
        assert abs(ours[model] - theirs[model]) < 1.0, (model, ours, theirs)
    # Ties pull the ratings together: with 30 % ties the spread is smaller than without them.
    untied = {r.model: r.rating for r in arena.leaderboard(simulated_votes(600, seed=7), rounds=10).ratings}
    assert ours["m4"] - ours["m0"] < untied["m4"] - untied["m0"]


def test_only_ties_give_equal_ratings_and_win_rates_of_a_half():
    votes = [Vote(f"b{i}", a, b, "tie", "s", "0" * 64, 3.0, EN, 1e9 + i, 10.0, 16)
             for i, (a, b) in enumerate([("m0", "m1"), ("m1", "m2"), ("m2", "m0")] * 10)]  # fmt: skip
    board = arena.leaderboard(votes, exclude_flagged=False, rounds=20)  # 30 ties from one session: flagged
    assert {r.rating for r in board.ratings} == {arena.INIT_RATING}
    assert all(r.win_rate == 0.5 and r.ties == 20 for r in board.ratings)
    assert all(f is None for row in board.win_fraction.values() for f in row.values())  # no decisive votes


def test_pair_sampling_evens_out_pair_counts_and_never_pairs_a_model_with_itself():
    rng = np.random.default_rng(3)
    counts: Counter = Counter()
    sides: Counter = Counter()
    for _ in range(1000):
        a, b = arena.draw_pair(MODELS, counts, rng)
        assert a != b
        counts[frozenset((a, b))] += 1
        sides[a] += 1
    assert len(counts) == 10
    assert max(counts.values()) - min(counts.values()) <= 6, counts
    assert all(170 <= n <= 230 for n in sides.values()), sides  # each model is A about as often as B
    # A pair far behind is drawn first.
    behind = {p: 50 for p in counts}
    behind[frozenset(("m0", "m1"))] = 0
    drawn = Counter(frozenset(arena.draw_pair(MODELS, behind, rng)) for _ in range(400))
    assert drawn[frozenset(("m0", "m1"))] > 400 * 0.5, drawn


def test_flagged_sessions_are_left_out_unless_the_toggle_includes_them():
    honest = simulated_votes(300, seed=1)
    same_side = [Vote(f"x{i}", "m0", "m4", "model_a", "always-a", "0" * 64, 3.0, EN, 1e9 + i, 10.0, 16) for i in range(40)]
    too_fast = [Vote(f"y{i}", "m0", "m4", "model_a" if i % 2 else "model_b", "speedy", "0" * 64, 3.0, EN, 1e9 + i, 0.3, 40)
                for i in range(10)]  # fmt: skip
    flags = arena.flag_sessions(honest + same_side + too_fast)
    assert set(flags) == {"always-a", "speedy"}, flags
    excluded = arena.leaderboard(honest + same_side + too_fast, exclude_flagged=True, rounds=20)
    included = arena.leaderboard(honest + same_side + too_fast, exclude_flagged=False, rounds=20)
    assert (excluded.votes, excluded.excluded_votes, excluded.flagged_sessions) == (300, 50, 2)
    assert (included.votes, included.excluded_votes) == (350, 0)
    rating = lambda board, m: next(r.rating for r in board.ratings if r.model == m)  # noqa: E731
    assert rating(included, "m0") > rating(excluded, "m0") + 20  # 40 stuffed wins for m0 over m4 show


def test_a_vote_must_name_a_known_choice():
    assert arena.outcome_of(" A ") == "model_a" and arena.outcome_of("both_bad") == "tie (bothbad)"
    with pytest.raises(ValueError, match="a, b, tie, both_bad"):
        arena.outcome_of("model_c")


# -- the stores --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transcripts(service, clips):
    """Real transcripts of one LibriVox clip by two models."""
    audio = load_audio(str(clips[0].path))
    return audio, service.transcribe("faster-whisper/tiny.en", audio, EN), service.transcribe("faster-whisper/base", audio, EN)


def make_battle(transcripts, session: str, now: float, ttl: float = 600.0) -> Battle:
    audio, a, b = transcripts
    return Battle(arena.new_battle_id(), session, a.model, b.model, audio_sha256(audio), audio.duration, EN, now, now + ttl, a, b)


def test_votes_are_refused_when_forged_foreign_expired_reused_or_over_the_limit(backend, transcripts):
    store, _ = open_arena(*backend)
    now = time.time()
    mine = make_battle(transcripts, "me", now)
    store.issue(mine)
    with pytest.raises(VoteRefused, match="not issued to this session"):
        store.vote(arena.new_battle_id(), "me", "model_a", 10, now)  # forged
    with pytest.raises(VoteRefused, match="not issued to this session"):
        store.vote(mine.id, "someone else", "model_a", 10, now)  # another session's
    with pytest.raises(VoteRefused, match="expired"):
        store.vote(mine.id, "me", "model_a", 10, now + 601)
    battle, vote = store.vote(mine.id, "me", "model_b", 10, now + 5)
    assert battle.voted and battle.result_a.text == transcripts[1].text
    assert (vote.outcome, vote.model_a, vote.model_b, vote.session) == ("model_b", mine.model_a, mine.model_b, "me")
    assert vote.audio_sha256 == mine.audio_sha256 and vote.seconds_to_vote == pytest.approx(5) and vote.options == EN
    with pytest.raises(VoteRefused, match="already"):
        store.vote(mine.id, "me", "model_a", 10, now + 6)  # reused
    assert store.votes() == [vote] and store.vote_count() == 1
    # The hourly limit counts this session's votes of the last hour only.
    more = [make_battle(transcripts, "me", now, ttl=7200) for _ in range(2)]
    for b in more:
        store.issue(b)
    store.vote(more[0].id, "me", "tie", 2, now + 10)
    with pytest.raises(VoteRefused, match="2 votes in the last hour"):
        store.vote(more[1].id, "me", "tie", 2, now + 11)
    store.vote(more[1].id, "me", "tie", 2, now + 3610)  # an hour later: room again
    assert store.vote_count() == 3
    # Votes per pair, counted by the store whichever model was A: what a battle's draw reads.
    swapped = replace(make_battle(transcripts, "me", now + 3620), model_a=mine.model_b, model_b=mine.model_a)
    store.issue(swapped)
    store.vote(swapped.id, "me", "model_a", 10, now + 3620)
    assert store.pair_counts() == arena.pair_counts(store.votes()) == Counter({frozenset((mine.model_a, mine.model_b)): 4})
    if backend[0]:  # Redis: votes recorded before the per-pair hash existed are counted into it once
        store.client.delete(store._key("pairs"))
        assert store.pair_counts() == Counter({frozenset((mine.model_a, mine.model_b)): 4})
        assert store.client.exists(store._key("pairs"))


def test_eight_concurrent_voters_lose_no_vote_and_double_none(backend, transcripts):
    """8 sessions, 25 battles each; 8 voter threads send every battle's vote, each thread in its
    own order, so every battle is voted on by all 8 at nearly once: exactly one vote per battle."""
    store, _ = open_arena(*backend)
    now = time.time()
    battles = [make_battle(transcripts, f"session-{i % 8}", now) for i in range(200)]
    for b in battles:
        store.issue(b)
    accepted: Counter = Counter()
    refused: Counter = Counter()
    lock = threading.Lock()

    def voter(seed: int) -> None:
        order = np.random.default_rng(seed).permutation(len(battles))
        own = open_arena(*backend)[0]  # each voter its own connection, as replicas would have
        for i in order:
            b = battles[i]
            try:
                own.vote(b.id, b.session, "model_a" if seed % 2 else "model_b", 1000)
            except VoteRefused:
                with lock:
                    refused[b.id] += 1
            else:
                with lock:
                    accepted[b.id] += 1

    threads = [threading.Thread(target=voter, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(accepted.values()) == {1} and len(accepted) == 200
    assert all(refused[b.id] == 7 for b in battles)
    votes = store.votes()
    assert len(votes) == 200 and len({v.battle for v in votes}) == 200
    # The hourly limit holds under the same race: 8 threads, one session, room for 5.
    limited = [make_battle(transcripts, "limited", now) for _ in range(40)]
    for b in limited:
        store.issue(b)
    results = []

    def greedy(part: list[Battle]) -> None:
        own = open_arena(*backend)[0]
        for b in part:
            try:
                own.vote(b.id, "limited", "tie", 5)
                results.append(b.id)
            except VoteRefused:
                pass

    threads = [threading.Thread(target=greedy, args=(limited[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 5 and store.vote_count() == 205
    assert store.pair_counts() == arena.pair_counts(store.votes()) == Counter({frozenset((battles[0].model_a, battles[0].model_b)): 205})


def test_arena_issues_anonymous_battles_reuses_transcripts_and_sweeps_shared_audio(service, offline_settings, clips, tmp_path):
    settings = replace(offline_settings, data_dir=tmp_path, arena_models=("faster-whisper/tiny.en", "faster-whisper/base"))
    board = Arena(service, settings)
    audio = load_audio(str(clips[1].path))
    first = board.battle("", audio, EN, share_audio=True)
    public = first.public()
    assert set(public) == {"token", "battle", "transcripts", "diff", "audio_seconds", "expires_at", "warnings"}
    text = repr(public).lower()
    for key in settings.arena_models:  # no key, name or engine anywhere
        assert key.lower() not in text and catalog.get(key).name.lower() not in text and "faster-whisper" not in text
    assert {first.battle.model_a, first.battle.model_b} == set(settings.arena_models)
    assert board.spool.exists(first.battle.id)
    second = board.battle(public["token"], audio, EN)  # the same audio again: both transcripts reused
    assert second.battle.reused_a and second.battle.reused_b and second.token == first.token
    revealed = board.vote(first.token, first.battle.id, "b", clips[1].reference)
    assert revealed["models"]["A"]["model"] == first.battle.model_a and revealed["outcome"] == "model_b"
    assert all(0 <= side["wer"] < 0.5 for side in revealed["models"].values())  # real tiny/base on clean speech
    assert board.leaderboard(exclude_flagged=False).votes == 1
    with pytest.raises(PermissionError):
        board.vote("a.forged-token", second.battle.id, "a")
    with pytest.raises(PermissionError):
        board.battle("a.forged-token", audio, EN)
    board.sweep(now=time.time() + settings.job_ttl_hours * 3600 + settings.sweep_interval_seconds + 1)
    assert not board.spool.exists(first.battle.id)  # shared audio goes with JOB_TTL_HOURS


def test_arena_settings_are_read_and_checked():
    from explorer.config import Settings

    s = Settings.from_env({"ARENA_MODELS": "faster-whisper/tiny.en, faster-whisper/base", "ARENA_VOTES_PER_HOUR": "5",
                           "ARENA_BATTLE_TTL_MINUTES": "0.5"})  # fmt: skip
    assert (s.arena_models, s.arena_votes_per_hour, s.arena_battle_ttl_minutes) == (
        ("faster-whisper/tiny.en", "faster-whisper/base"), 5, 0.5)  # fmt: skip
    for bad, message in [({"ARENA_VOTES_PER_HOUR": "0"}, "ARENA_VOTES_PER_HOUR"),
                         ({"ARENA_BATTLE_TTL_MINUTES": "-1"}, "ARENA_BATTLE_TTL_MINUTES"),
                         ({"ARENA_MODELS": "faster-whisper/base"}, "at least two")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            Settings.from_env(bad)

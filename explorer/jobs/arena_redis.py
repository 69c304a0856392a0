"""The arena's store on a Redis/Valkey server (JOB_STORE=redis://...), keys under the job store's
prefix (default ``explorer:``):

- ``arena:battle:<id>``: a hash (``data``: the battle as JSON, ``session``, ``voted``), gone
  KEEP_EXPIRED_SECONDS after the battle expired;
- ``arena:votes``: a list of every vote as JSON, in the order recorded;
- ``arena:pairs``: a hash of votes per unordered pair of models (field: the two keys, sorted, as
  JSON), kept with each vote, so that a battle's draw does not read every vote;
- ``arena:recent:<session hash>``: a session's vote times of the last hour (the hourly limit).

A vote is one optimistic transaction (WATCH the battle and the session's times, check with
``explorer.arena.refusal``, then MULTI/EXEC), tried again when another client changed either in
between: two votes on one battle can never both be recorded.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from typing import Optional

import redis

from explorer.arena import HOUR, Battle, Outcome, Vote, VoteRefused, refusal, vote_for
from explorer.arena import pair_counts as arena_pair_counts
from explorer.jobs.arena_store import KEEP_EXPIRED_SECONDS, battle_from_json, battle_json
from explorer.jobs.redis_store import DEFAULT_PREFIX, connect, split_url


class RedisArenaStore:
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX):
        self.client, self.prefix = client, prefix + "arena:"

    @classmethod
    def open(cls, url: str) -> "RedisArenaStore":
        server, prefix = split_url(url)
        return cls(connect(server), prefix)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def issue(self, battle: Battle) -> None:
        key = self._key("battle", battle.id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"data": battle_json(battle), "session": battle.session, "voted": 0})
        pipe.pexpireat(key, int((battle.expires_at + KEEP_EXPIRED_SECONDS) * 1000))
        pipe.execute()

    def vote(self, battle_id: str, session: str, outcome: Outcome, votes_per_hour: int,
             now: Optional[float] = None) -> tuple[Battle, Vote]:  # fmt: skip
        now = time.time() if now is None else now
        key, recent_key = self._key("battle", battle_id), self._key("recent", session)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key, recent_key)
                    data, voted = pipe.hmget(key, "data", "voted")
                    battle = battle_from_json(data.decode(), voted == b"1") if data else None
                    recent = pipe.zcount(recent_key, f"({now - HOUR}", "+inf")
                    why = refusal(battle, session, now, recent, votes_per_hour)
                    if why:
                        raise VoteRefused(why)
                    vote = vote_for(battle, outcome, now)
                    pipe.multi()
                    pipe.hset(key, "voted", 1)
                    pipe.rpush(self._key("votes"), vote.to_json())
                    pipe.hincrby(self._key("pairs"), _pair_field(vote.model_a, vote.model_b), 1)
                    pipe.zadd(recent_key, {battle_id: now})
                    pipe.zremrangebyscore(recent_key, "-inf", now - HOUR)
                    pipe.expire(recent_key, int(HOUR) + 60)
                    pipe.execute()
                    return replace(battle, voted=True), vote
                except redis.WatchError:
                    continue

    def votes(self) -> list[Vote]:
        return [Vote.from_json(v.decode()) for v in self.client.lrange(self._key("votes"), 0, -1)]

    def vote_count(self) -> int:
        return self.client.llen(self._key("votes"))

    def pair_counts(self) -> Counter:
        """Votes per unordered pair of models, from ``arena:pairs``; votes recorded before that
        hash existed are counted into it once (WATCHed, so no vote in between is lost)."""
        pairs, votes = self._key("pairs"), self._key("votes")
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(pairs, votes)
                    if pipe.exists(pairs) or not pipe.llen(votes):
                        fields = pipe.hgetall(pairs)
                        pipe.unwatch()
                        return Counter({frozenset(json.loads(k)): int(n) for k, n in fields.items()})
                    old = arena_pair_counts(Vote.from_json(v.decode()) for v in pipe.lrange(votes, 0, -1))
                    pipe.multi()
                    pipe.hset(pairs, mapping={_pair_field(*pair): n for pair, n in old.items()})
                    pipe.execute()
                except redis.WatchError:
                    continue

    def expire(self, now: Optional[float] = None) -> int:
        return 0  # Redis drops a battle's key by itself (PEXPIREAT)


def _pair_field(model_a: str, model_b: str) -> str:
    return json.dumps(sorted((model_a, model_b)))

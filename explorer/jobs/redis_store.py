"""The job store and the audio spool on a Redis or Valkey server (``JOB_STORE=redis://host:6379/0``).

Same contract as ``explorer.jobs.sqlite.SqliteJobStore`` (FIFO queue, atomic claims, leases, TTL
expiry, session scoping), for workers on several machines that share one server. Keys, all under
a prefix (default ``explorer:``; ``?prefix=name:`` in the URL sets another):

- ``job:<id>``: a hash per job, the same fields as a row of the SQLite table (an absent field is
  NULL; absent warnings, none);
- ``seq``: the counter that numbers jobs in submission order;
- ``queue``: queued job ids scored by seq (the FIFO), ``processing``: claimed ids scored by lease deadline;
- ``session:<hash>``: a session's job ids scored by seq, ``created``: every job id scored by submission time (TTL);
- ``worker:<id>``: a hash per worker, ``workers``: worker ids scored by when they last reported;
- ``audio:<id>``: a job's audio (FLAC bytes), ``audio-written``: audio ids scored by when written;
- ``claim:<worker>:<id>``: the job ids one claim took, for one lease (a repeated claim hands them back).

Every change that touches more than one key is one Lua script, which Redis runs atomically: adding
jobs (numbering them), claiming, finishing, cancelling, deleting, recovering, extending and
releasing leases, and expiring. The scripts build job keys from the prefix, so they need one server (or a Sentinel
primary), not a Redis Cluster. The server must keep what it is given: ``maxmemory-policy
noeviction`` (Debian's default) and AOF persistence (``appendonly yes``) for jobs to survive a
restart. Times are the clients' clocks (leases of minutes tolerate seconds of skew).

Audio lives in the store itself, not in a shared directory: a worker on any machine then needs
only the store's URL (no shared file system to mount and keep consistent), and audio is written,
copied and deleted together with its job by the same sweeper. It is small enough: 24-bit FLAC at
16 kHz mono is about 1 MB per minute of speech (2.9 MB at most, uncompressible noise), and
MAX_AUDIO_SECONDS (30 min by default) bounds one file; job TTL bounds how many are kept.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Iterable, Optional, Sequence
from urllib.parse import parse_qsl, urlencode

import redis

from explorer.config import DEFAULT_LEASE_SECONDS
from explorer.jobs.codec import (
    WORKER_FIELDS, options_from_json, options_json, result_from_json, result_json, warnings_from_json, warnings_json,
    worker_from_values, worker_values,
)  # fmt: skip
from explorer.jobs.model import MAX_ATTEMPTS, STATUSES, Job, Limit, NewJob, WorkerInfo, crashed_error
from explorer.jobs.spools import FlacSpool
from explorer.types import Transcription

DEFAULT_PREFIX = "explorer:"

# KEYS: seq, queue, session, created. ARGV: prefix, jobs as JSON [[id, status, field, value, ...], ...]
# (every value a string, so that floats keep every digit), submission time. Numbers the jobs in order;
# an id that is already stored is left as it is (a script run twice, after a lost reply, adds nothing twice).
ADD = """
for _, job in ipairs(cjson.decode(ARGV[2])) do
  local id, status, key = job[1], job[2], ARGV[1] .. 'job:' .. job[1]
  if redis.call('EXISTS', key) == 0 then
    local seq = redis.call('INCR', KEYS[1])
    redis.call('HSET', key, 'id', id, 'seq', seq, 'status', status, unpack(job, 3))
    if status == 'queued' then redis.call('ZADD', KEYS[2], seq, id) end
    redis.call('ZADD', KEYS[3], seq, id)
    redis.call('ZADD', KEYS[4], ARGV[3], id)
  end
end
"""
# Lua functions the scripts below share (each script is sent with them): a job's lease pushed to a
# deadline, and a job back in the queue at its place (as SQLite's REQUEUED).
HOLD = """
local function hold(processing, key, id, deadline)
  redis.call('ZADD', processing, deadline, id)
  redis.call('HSET', key, 'lease_until', deadline)
end
"""
QUEUE_AGAIN = """
local function queue_again(queue, key, id, seq)
  redis.call('HSET', key, 'status', 'queued', 'worker', '')
  redis.call('HDEL', key, 'started_at', 'lease_until')
  redis.call('ZADD', queue, seq, id)
end
"""
# KEYS: queue, processing, this claim's record. ARGV: prefix, n, model, options, now, lease deadline,
# worker, lease in ms. A record (the ids a claim took, kept for one lease) makes a repeated claim
# hand back what it took, lease renewed, instead of taking more: redis-py resends a command whose
# connection dropped, and the worker retries with the same claim id, when the first reply was lost.
# Otherwise the head must still ask for the model and options the caller computed n for, or nothing is claimed.
CLAIM = HOLD + """
local out = {}
local record = redis.call('GET', KEYS[3])
if record then
  for _, id in ipairs(cjson.decode(record)) do
    local key = ARGV[1] .. 'job:' .. id
    local job = redis.call('HMGET', key, 'status', 'worker')
    if job[1] == 'processing' and job[2] == ARGV[7] then
      hold(KEYS[2], key, id, ARGV[6])
      table.insert(out, redis.call('HGETALL', key))
    end
  end
  if #out > 0 then return out end
  redis.call('DEL', KEYS[3])  -- it holds none of them any more: claim anew
end
if tonumber(ARGV[2]) < 1 then return out end
local ids = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local key = ARGV[1] .. 'job:' .. id
  local alike = redis.call('HMGET', key, 'model', 'options')
  if alike[1] ~= ARGV[3] or alike[2] ~= ARGV[4] then break end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[6], id)
  redis.call('HSET', key, 'status', 'processing', 'started_at', ARGV[5], 'worker', ARGV[7], 'lease_until', ARGV[6])
  redis.call('HINCRBY', key, 'attempts', 1)
  table.insert(out, redis.call('HGETALL', key))
  table.insert(ids, id)
end
if #ids > 0 then redis.call('SET', KEYS[3], cjson.encode(ids), 'PX', ARGV[8]) end
return out
"""
# KEYS: job, processing. ARGV: id, status, error, result ('' for none), now, worker ('' for any).
FINISH = """
local job = redis.call('HMGET', KEYS[1], 'status', 'worker')
if job[1] ~= 'processing' or (ARGV[6] ~= '' and job[2] ~= ARGV[6]) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'error', ARGV[3], 'finished_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease_until', 'result')
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[4]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
# KEYS: job, queue. ARGV: id, session, now.
CANCEL = """
local job = redis.call('HMGET', KEYS[1], 'session', 'status')
if job[1] ~= ARGV[2] or job[2] ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
# KEYS: job, session, queue, processing, created. ARGV: id, session.
DELETE = """
if redis.call('HGET', KEYS[1], 'session') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, 5 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""
# KEYS: processing, queue. ARGV: prefix, the latest lease deadline to take back ('+inf': all),
# MAX_ATTEMPTS, the error of a job that reached it, now. Returns {queued again, failed}.
RECOVER = QUEUE_AGAIN + """
local queued, failed = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])) do
  local key = ARGV[1] .. 'job:' .. id
  local job = redis.call('HMGET', key, 'seq', 'attempts')
  redis.call('ZREM', KEYS[1], id)
  if job[1] and tonumber(job[2] or '0') >= tonumber(ARGV[3]) then
    redis.call('HSET', key, 'status', 'failed', 'error', ARGV[4], 'finished_at', ARGV[5])
    redis.call('HDEL', key, 'lease_until')
    failed = failed + 1
  elseif job[1] then
    queue_again(KEYS[2], key, id, job[1])
    queued = queued + 1
  end
end
return {queued, failed}
"""
# KEYS: processing. ARGV: prefix, deadline, worker ('' for any), ids...
EXTEND = HOLD + """
local n = 0
for i = 4, #ARGV do
  local key = ARGV[1] .. 'job:' .. ARGV[i]
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) and (ARGV[3] == '' or redis.call('HGET', key, 'worker') == ARGV[3]) then
    hold(KEYS[1], key, ARGV[i], ARGV[2])
    n = n + 1
  end
end
return n
"""
# KEYS: processing, queue. ARGV: prefix, worker, ids... Only jobs that worker still holds.
RELEASE = QUEUE_AGAIN + """
local n = 0
for i = 3, #ARGV do
  local key = ARGV[1] .. 'job:' .. ARGV[i]
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) and redis.call('HGET', key, 'worker') == ARGV[2] then
    redis.call('ZREM', KEYS[1], ARGV[i])
    queue_again(KEYS[2], key, ARGV[i], redis.call('HGET', key, 'seq'))
    n = n + 1
  end
end
return n
"""
# KEYS: created, queue, processing. ARGV: prefix, exclusive upper bound ('(' .. time).
EXPIRE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, id in ipairs(ids) do
  local key = ARGV[1] .. 'job:' .. id
  local session = redis.call('HGET', key, 'session')
  if session then redis.call('ZREM', ARGV[1] .. 'session:' .. session, id) end
  redis.call('DEL', key)
  for i = 1, 3 do redis.call('ZREM', KEYS[i], id) end
end
return ids
"""


def _text(value: float | int | str) -> str:
    """A value as the store keeps it: repr() keeps every digit of a float."""
    return repr(value) if isinstance(value, float) else str(value)


def _decode(pairs: Sequence[bytes] | dict) -> dict[str, str]:
    items = pairs.items() if isinstance(pairs, dict) else zip(pairs[::2], pairs[1::2])
    return {k.decode(): v.decode() for k, v in items}


def _job(h: dict[str, str]) -> Job:
    def number(name: str) -> Optional[float]:
        return float(h[name]) if h.get(name) else None

    return Job(
        h["id"], int(h["seq"]), h["session"], h["batch"], h["filename"], h["model"], options_from_json(h["options"]),
        h["status"], float(h["audio_seconds"]), float(h["created_at"]), number("started_at"), number("finished_at"),
        int(h.get("attempts", 0)), h.get("error", ""), result_from_json(h.get("result")), h.get("worker", ""),
        number("lease_until"), warnings_from_json(h.get("warnings")),
    )  # fmt: skip


def _new_fields(job: NewJob, session: str, batch: str, now: float) -> list[str]:
    """[id, status, field, value, ...] for the ADD script."""
    fields = dict(session=session, batch=batch, filename=job.filename, model=job.model,
                  options=options_json(job.options), audio_seconds=_text(float(job.audio_seconds)),
                  created_at=_text(now), attempts="0", error=job.error, worker="",
                  warnings=warnings_json(job.warnings))  # fmt: skip
    if job.error:
        fields["finished_at"] = _text(now)
    return [job.id, "failed" if job.error else "queued", *(x for kv in fields.items() for x in kv)]


def split_url(url: str) -> tuple[str, str]:
    """(the server URL, the key prefix): ``?prefix=`` is ours, every other parameter is redis-py's."""
    base, _, query = url.partition("?")  # not urlunsplit: it would turn unix:///path into unix:/path
    pairs = parse_qsl(query, keep_blank_values=True)
    prefix = next((v for k, v in pairs if k == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(k, v) for k, v in pairs if k != "prefix"])
    return base + (f"?{rest}" if rest else ""), prefix


def connect(url: str) -> redis.Redis:
    # A dead server fails a call within seconds instead of hanging a worker for good.
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)


def open_redis(url: str) -> tuple["RedisJobStore", "RedisSpool"]:
    """The store and the spool on the server at `url` (one connection pool for both)."""
    server, prefix = split_url(url)
    client = connect(server)
    return RedisJobStore(client, prefix), RedisSpool(client, prefix)


class RedisJobStore:
    """JobStore on a Redis/Valkey server (see the module docstring for its keys)."""

    shared = True  # workers elsewhere may hold leases: a start takes back only expired ones
    # Unreachable for now: refused or dropped connections, timeouts, a restarted server still
    # loading its AOF (BusyLoadingError is a ConnectionError).
    transient = (redis.ConnectionError, redis.TimeoutError)
    # ConnectionErrors too in redis-py, but no outage: the server refuses these credentials.
    refused = (redis.AuthenticationError, redis.exceptions.AuthorizationError)

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX):
        self.client, self.prefix = client, prefix
        self._scripts = {name: client.register_script(code) for name, code in SCRIPTS.items()}

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _run(self, script: str, keys: Sequence[str], args: Sequence) -> object:
        return self._scripts[script](keys=list(keys), args=list(args))

    def add(self, session: str, batch: str, jobs: Sequence[NewJob]) -> list[Job]:
        """As SqliteJobStore.add: an id already stored is left as it is."""
        now = time.time()
        payload = json.dumps([_new_fields(job, session, batch, now) for job in jobs], ensure_ascii=False)
        keys = [self._key("seq"), self._key("queue"), self._key("session", session), self._key("created")]
        self._run("add", keys, [self.prefix, payload, _text(now)])
        return [job for job in self._jobs(dict.fromkeys(j.id for j in jobs)) if job and job.session == session]

    def _jobs(self, job_ids: Iterable[str]) -> list[Optional[Job]]:
        """The jobs with these ids, None for those that are gone, read as one snapshot (MULTI)."""
        pipe = self.client.pipeline(transaction=True)
        for job_id in job_ids:
            pipe.hgetall(self._key("job", job_id))
        return [_job(_decode(h)) if h else None for h in pipe.execute()]

    def claim(
        self, limit: Limit = 1, worker: str = "", lease: float = DEFAULT_LEASE_SECONDS, claim_id: str = ""
    ) -> list[Job]:
        """As SqliteJobStore.claim. The head is read first to compute `limit` for its model; the
        script then claims only if the head still asks for that model and those options (another
        worker may have taken it meanwhile), and otherwise this looks again. Without a claim_id,
        one made here still covers redis-py's own resending of this call."""
        record = self._key("claim", worker, claim_id or uuid.uuid4().hex)
        keys = [self._key("queue"), self._key("processing"), record]
        while True:
            now = time.time()
            timing = [_text(now), _text(now + lease), worker, max(1, int(lease * 1000))]
            head = self.client.zrange(self._key("queue"), 0, 0)
            if not head:  # the queue may be empty because the claim being repeated took its last jobs
                claimed = self._run("claim", keys, [self.prefix, 0, "", "", *timing]) if claim_id else []
                return [_job(_decode(h)) for h in claimed]
            model, options = self.client.hmget(self._key("job", head[0].decode()), "model", "options")
            if model is None:  # deleted between the two reads (or lost): a queued id with no job leaves the queue
                self.client.zrem(self._key("queue"), head[0])
                continue
            n = limit(model.decode()) if callable(limit) else limit
            claimed = self._run("claim", keys, [self.prefix, n, model, options, *timing])
            if claimed:
                return [_job(_decode(h)) for h in claimed]

    def extend(self, job_ids: Sequence[str], lease: float = DEFAULT_LEASE_SECONDS, worker: str = "") -> int:
        if not job_ids:
            return 0
        args = [self.prefix, _text(time.time() + lease), worker, *job_ids]
        return self._run("extend", [self._key("processing")], args)

    def release(self, job_ids: Sequence[str], worker: str) -> int:
        """As SqliteJobStore.release: the jobs `worker` still holds go back to their place in the queue."""
        if not job_ids:
            return 0
        return self._run("release", [self._key("processing"), self._key("queue")], [self.prefix, worker, *job_ids])

    def _finish(self, job_id: str, status: str, error: str, result: str, worker: str) -> bool:
        keys = [self._key("job", job_id), self._key("processing")]
        return self._run("finish", keys, [job_id, status, error, result, _text(time.time()), worker]) == 1

    def complete(self, job_id: str, result: Transcription, worker: str = "") -> bool:
        return self._finish(job_id, "completed", "", result_json(result), worker)

    def fail(self, job_id: str, error: str, worker: str = "") -> bool:
        return self._finish(job_id, "failed", error, "", worker)

    def get(self, session: str, job_id: str) -> Optional[Job]:
        (job,) = self._jobs([job_id])
        return job if job and job.session == session else None

    def list(self, session: str, batch: Optional[str] = None) -> list[Job]:
        ids = [i.decode() for i in self.client.zrange(self._key("session", session), 0, -1)]
        jobs = [j for j in self._jobs(ids) if j and j.session == session]
        return [j for j in jobs if j.batch == batch] if batch else jobs

    def counts(self, session: str, batch: Optional[str] = None) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=True)
        for job_id in self.client.zrange(self._key("session", session), 0, -1):
            pipe.hmget(self._key("job", job_id.decode()), "status", "batch", "session")
        found = dict.fromkeys(STATUSES, 0)
        for status, job_batch, job_session in pipe.execute():
            if status and job_session.decode() == session and (not batch or job_batch.decode() == batch):
                found[status.decode()] += 1
        return found

    def cancel(self, session: str, job_id: str) -> bool:
        keys = [self._key("job", job_id), self._key("queue")]
        return self._run("cancel", keys, [job_id, session, _text(time.time())]) == 1

    def delete(self, session: str, job_id: str) -> bool:
        keys = [self._key("job", job_id), self._key("session", session)]
        keys += [self._key("queue"), self._key("processing"), self._key("created")]
        return self._run("delete", keys, [job_id, session]) == 1

    def recover(self, expired_only: bool = False) -> tuple[int, int]:
        """As SqliteJobStore.recover: jobs whose lease has run out, or every processing job; one
        claimed MAX_ATTEMPTS times fails. Returns (how many were queued again, how many failed)."""
        now = time.time()
        until = f"({_text(now)}" if expired_only else "+inf"
        args = [self.prefix, until, MAX_ATTEMPTS, crashed_error(MAX_ATTEMPTS), _text(now)]
        queued, failed = self._run("recover", [self._key("processing"), self._key("queue")], args)
        return queued, failed

    def expire(self, before: float) -> list[str]:
        keys = [self._key("created"), self._key("queue"), self._key("processing")]
        return [i.decode() for i in self._run("expire", keys, [self.prefix, f"({_text(before)}"])]

    def ids(self) -> set[str]:
        return {i.decode() for i in self.client.zrange(self._key("created"), 0, -1)}

    def beat(self, info: WorkerInfo) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._key("worker", info.id), mapping=dict(zip(WORKER_FIELDS, map(_text, worker_values(info)))))
        pipe.zadd(self._key("workers"), {info.id: info.last_seen})
        pipe.execute()

    def workers(self, max_age: float) -> list[WorkerInfo]:
        """Workers heard from in the last `max_age` seconds, oldest first."""
        ids = self.client.zrangebyscore(self._key("workers"), time.time() - max_age, "+inf")
        pipe = self.client.pipeline(transaction=True)
        for worker_id in ids:
            pipe.hmget(self._key("worker", worker_id.decode()), WORKER_FIELDS)
        found = [worker_from_values([v.decode() for v in values]) for values in pipe.execute() if None not in values]
        return sorted(found, key=lambda w: (w.started_at, w.id))

    def forget_worker(self, worker_id: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._key("worker", worker_id))
        pipe.zrem(self._key("workers"), worker_id)
        return pipe.execute()[0] == 1


SCRIPTS = {
    "add": ADD, "claim": CLAIM, "finish": FINISH, "cancel": CANCEL, "delete": DELETE, "recover": RECOVER,
    "extend": EXTEND, "release": RELEASE, "expire": EXPIRE,
}  # fmt: skip


class RedisSpool(FlacSpool):
    """The audio spool in the store: ``audio:<id>`` holds the same 24-bit FLAC bytes as a spool
    file; ``audio-written`` (write times) finds orphans without scanning the key space."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX):
        self.client, self.prefix = client, prefix
        self._written = prefix + "audio-written"

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}audio:{job_id}"

    def put_bytes(self, job_id: str, data: bytes) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._key(job_id), data)
        pipe.zadd(self._written, {job_id: time.time()})
        pipe.execute()

    def get_bytes(self, job_id: str) -> bytes:
        data = self.client.get(self._key(job_id))
        if data is None:
            raise FileNotFoundError(f"no audio for job {job_id!r}")
        return data

    def exists(self, job_id: str) -> bool:
        return self.client.exists(self._key(job_id)) == 1

    def delete(self, job_ids: Iterable[str]) -> None:
        job_ids = list(job_ids)
        if job_ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(*map(self._key, job_ids))
            pipe.zrem(self._written, *job_ids)
            pipe.execute()

    def orphans(self, known: set[str], older_than: float) -> list[str]:
        """As Spool.orphans: audio with no job, written before `older_than`."""
        written = self.client.zrangebyscore(self._written, "-inf", f"({_text(older_than)}")
        return sorted(i for i in (w.decode() for w in written) if i not in known)

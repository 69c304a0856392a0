"""The job store and spool contract, one suite run on both stores: SQLite on a real file, and Redis
on a real redis-server (Debian's, started by conftest); expiry with the sweeper; Redis persistence."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from explorer.batch import FORGET_WORKER_SECONDS, ORPHAN_GRACE_SECONDS, BatchRunner
from explorer.config import Settings, store_kind
from explorer.jobs import MAX_ATTEMPTS, NewJob, Running, SqliteJobStore, WorkerInfo, open_store, session_key
from explorer.jobs.codec import options_json
from explorer.metrics import compute
from explorer.types import Segment, TranscribeOptions, Transcription, Word
from tests.redis_server import RedisServer

TINY, BASE = "faster-whisper/tiny.en", "faster-whisper/base"
EN = TranscribeOptions(language="en")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(backend):
    # One contract for every store, each opened the way the app opens it (JOB_STORE).
    return open_store(*backend)[0]


@pytest.fixture
def spool(backend):
    return open_store(*backend)[1]


def new(name: str, model: str = TINY, options: TranscribeOptions = EN, error: str = "") -> NewJob:
    return NewJob(name, model, options, 3.0, error=error)


def result(model: str = TINY, text: str = "hello there") -> Transcription:
    return Transcription(model, text, (Segment(0.0, 1.0, text),), "en", EN, compute([0.5], "segment", 3.0, 1.0))


A, B = session_key("token-a"), session_key("token-b")


def test_claims_are_first_in_first_out_and_batch_only_alike_neighbours(store):
    jobs = store.add(A, "b1", [new("1"), new("2"), new("3", BASE), new("4"), new("5", options=TranscribeOptions())])
    assert [j.status for j in jobs] == ["queued"] * 5 and [j.seq for j in jobs] == sorted(j.seq for j in jobs)
    first = store.claim(limit=8)
    assert [j.filename for j in first] == ["1", "2"]  # stops at the first job with another model
    assert all(j.status == "processing" and j.attempts == 1 and j.started_at for j in first)
    assert [j.filename for j in store.claim(lambda model: 8 if model == BASE else 1)] == ["3"]
    assert [j.filename for j in store.claim(8)] == ["4"]  # other options: not in the same call
    assert [j.filename for j in store.claim(8)] == ["5"]
    assert store.claim(8) == []


def test_concurrent_claims_never_hand_out_a_job_twice(backend):
    open_store(*backend)[0].add(A, "b", [new(str(i)) for i in range(200)])
    claimed: list[str] = []
    lock = threading.Lock()

    def worker():
        store, _ = open_store(*backend)  # its own connections, as another process would have
        while jobs := store.claim(limit=3):
            with lock:
                claimed.extend(j.id for j in jobs)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 200 and len(set(claimed)) == 200


def test_outcomes_are_recorded_once_and_only_for_running_jobs(store):
    j1, j2, j3 = store.add(A, "b", [new("1"), new("2"), new("3")])
    assert not store.complete(j1.id, result())  # queued, not claimed: refused
    store.claim(limit=2)
    assert store.complete(j1.id, result(text="first"))
    assert not store.complete(j1.id, result(text="again"))  # no second outcome
    assert store.fail(j2.id, "engine exploded")
    got1, got2 = store.get(A, j1.id), store.get(A, j2.id)
    assert got1.status == "completed" and got1.result.text == "first" and got1.result.segments[0].end == 1.0
    assert got1.result.metrics.ttft_seconds == 0.5 and got1.finished_at >= got1.started_at
    assert got2.status == "failed" and got2.error == "engine exploded" and got2.result is None
    assert store.cancel(A, j3.id) and store.get(A, j3.id).status == "cancelled"
    assert not store.cancel(A, j1.id)  # only queued jobs can be cancelled
    assert store.counts(A) == {"queued": 0, "processing": 0, "completed": 1, "failed": 1, "cancelled": 1}


def test_a_job_that_failed_to_decode_is_stored_failed(store):
    (job,) = store.add(A, "b", [new("bad.wav", error="This is not audio")])
    assert job.status == "failed" and job.error == "This is not audio" and job.finished_at
    assert store.claim(8) == []


def test_sessions_see_only_their_own_jobs(store):
    (mine,) = store.add(A, "b", [new("mine")])
    (theirs,) = store.add(B, "c", [new("theirs")])
    assert [j.filename for j in store.list(A)] == ["mine"] and store.list(A, "c") == []
    assert store.get(B, mine.id) is None
    assert store.get(A, theirs.id) is None
    assert not store.cancel(B, mine.id) and not store.delete(B, mine.id)
    assert store.get(A, mine.id).status == "queued"
    assert store.counts(B)["queued"] == 1 and store.counts(A, "b")["queued"] == 1
    assert store.delete(A, mine.id) and store.get(A, mine.id) is None


def test_session_tokens_are_required_and_never_stored():
    with pytest.raises(PermissionError, match="no session token"):
        session_key("")
    with pytest.raises(PermissionError):
        session_key(None)
    assert session_key("abc") == session_key(" abc ") != "abc" and len(session_key("abc")) == 64


def test_recover_requeues_processing_jobs_in_their_place(store):
    jobs = store.add(A, "b", [new("1"), new("2"), new("3")])
    store.claim(limit=2)
    store.complete(jobs[0].id, result())
    assert store.recover() == (1, 0)
    assert [j.status for j in store.list(A)] == ["completed", "queued", "queued"]
    requeued = store.get(A, jobs[1].id)
    assert requeued.worker == "" and requeued.lease_until is None and requeued.started_at is None
    again = store.claim(limit=8)
    assert [j.filename for j in again] == ["2", "3"] and again[0].attempts == 2
    assert store.get(A, jobs[0].id).result.text == "hello there"


@pytest.mark.parametrize("expired_only", [True, False], ids=["expired", "all"])
def test_a_job_whose_worker_stops_on_every_attempt_fails_instead_of_going_round_again(store, expired_only):
    crash, other = store.add(A, "b", [new("crash"), new("other")])
    for attempt in range(1, MAX_ATTEMPTS):  # its worker dies (a segfault, out of memory) each time
        (job,) = store.claim(1, worker=f"w{attempt}", lease=0.05)
        assert (job.id, job.attempts) == (crash.id, attempt)
        time.sleep(0.1)
        assert store.recover(expired_only=expired_only) == (1, 0)  # back at the head of the queue
    last, first_try = store.claim(2, worker="w3", lease=0.05)
    assert (last.id, last.attempts, first_try.attempts) == (crash.id, MAX_ATTEMPTS, 1)
    time.sleep(0.1)
    assert store.recover(expired_only=expired_only) == (1, 1)  # the other one is queued again
    failed = store.get(A, crash.id)
    assert failed.status == "failed" and failed.result is None and failed.lease_until is None
    crashed = f"its worker stopped while running it on each of {MAX_ATTEMPTS} attempts (crashed, killed or lost)"
    assert failed.error == crashed
    assert (failed.worker, failed.started_at, failed.attempts) == ("w3", last.started_at, MAX_ATTEMPTS)
    assert failed.finished_at >= failed.started_at
    assert not store.complete(crash.id, result(), worker="w3")  # its last worker's late result: refused
    assert [j.id for j in store.claim(8)] == [other.id] and store.recover() == (1, 0)
    assert store.counts(A) == {"queued": 1, "processing": 0, "completed": 0, "failed": 1, "cancelled": 0}


def test_adding_a_job_id_that_is_already_stored_changes_nothing(store):
    one, two, three = new("1"), new("2"), new("3")
    store.add(A, "b", [one, two])
    (running,) = store.claim(1, worker="w")
    before = store.list(A)
    again = store.add(A, "b", [one, two, three, three])  # an add tried again (a lost reply), and a new job
    assert [j.id for j in again] == [one.id, two.id, three.id] and again[:2] == before
    assert store.list(A) == again and again[2].status == "queued" and again[2].seq > before[1].seq
    assert [j.id for j in store.claim(8)] == [two.id, three.id]  # each queued once; the running one not again
    assert store.get(A, running.id).worker == "w"
    assert store.add(B, "c", [one]) == [] and store.list(B) == []  # another session's id: neither taken nor shown
    assert len(store.ids()) == 3


# A claiming process: opens the store as the app would, says it is ready, and on "go" claims until
# the queue is empty, printing the ids it got.
CLAIMER = """
import sys, time
from pathlib import Path
from explorer.jobs import open_store
store, _ = open_store(sys.argv[1], Path(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()
while jobs := store.claim(limit=2, worker=sys.argv[3]):
    print(*(j.id for j in jobs), flush=True)
    time.sleep(0.002)  # a little work, so that the others get their turn
"""


def test_claims_from_several_processes_never_hand_out_a_job_twice(backend):
    url, folder = backend
    store, _ = open_store(url, folder)
    jobs = store.add(A, "b", [new(str(i)) for i in range(300)])
    procs = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, url, str(folder), f"w{n}"], cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for n in range(4)
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:  # all start claiming together
        proc.stdin.write("go\n")
        proc.stdin.flush()
    claimed = {f"w{n}": proc.communicate(timeout=120)[0].split() for n, proc in enumerate(procs)}
    assert all(proc.returncode == 0 for proc in procs)
    every = [i for ids in claimed.values() for i in ids]
    assert sorted(every) == sorted(j.id for j in jobs)  # every job, each exactly once
    assert sum(1 for ids in claimed.values() if ids) >= 2, "one process took everything: nothing was tested"
    assert all(store.get(A, i).worker == w for w, ids in claimed.items() for i in ids)


def test_an_expired_lease_sends_a_job_back_to_its_place_in_the_queue(store):
    jobs = store.add(A, "b", [new("1"), new("2"), new("3")])
    (short,) = store.claim(1, worker="w1", lease=0.3)
    (held,) = store.claim(1, worker="w2", lease=60)
    assert (short.worker, held.worker) == ("w1", "w2")
    assert short.lease_until - short.started_at == pytest.approx(0.3, abs=1e-6)
    assert held.lease_until - held.started_at == pytest.approx(60, abs=1e-6)
    time.sleep(0.4)
    assert store.recover(expired_only=True) == (1, 0)  # w1's job only: w2 still holds its lease
    assert [j.status for j in store.list(A)] == ["queued", "processing", "queued"]
    back = store.get(A, jobs[0].id)
    assert back.worker == "" and back.lease_until is None and back.started_at is None and back.attempts == 1
    again = store.claim(8, worker="w3")
    assert [j.filename for j in again] == ["1", "3"] and [j.attempts for j in again] == [2, 1]
    assert store.recover(expired_only=True) == (0, 0)
    assert store.complete(held.id, result())
    done = store.get(A, held.id)
    assert done.worker == "w2" and done.lease_until is None  # who ran it stays on record


def test_a_heartbeat_keeps_a_job_from_being_taken_back(store):
    a, b = store.add(A, "b", [new("1"), new("2")])
    store.claim(2, worker="w", lease=0.3)
    assert store.extend([a.id, "no-such-job"], lease=60) == 1
    time.sleep(0.4)
    assert store.recover(expired_only=True) == (1, 0)  # b, whose lease nobody renewed
    kept = store.get(A, a.id)
    assert kept.status == "processing" and kept.lease_until > time.time() + 50
    assert store.get(A, b.id).status == "queued" and store.extend([b.id], lease=60) == 0  # queued: not held
    assert store.complete(a.id, result()) and store.extend([a.id], lease=60) == 0  # finished: not held
    assert store.extend([], lease=60) == 0


def test_a_repeated_claim_hands_back_what_it_took_instead_of_taking_more(store):
    """A worker whose claim reply was lost (the server died after running it) claims again with the
    same claim id: it gets the same jobs, lease renewed, still on their first attempt, and nothing
    more is taken. The queue may be empty by then: that claim took its last jobs."""
    a, b, c = store.add(A, "b", [new("1"), new("2"), new("3", BASE)])
    first = store.claim(8, worker="w", lease=0.5, claim_id="c1")
    assert [j.id for j in first] == [a.id, b.id]
    assert [j.id for j in store.claim(8, worker="w2", claim_id="c2")] == [c.id]  # the queue is empty now
    again = store.claim(8, worker="w", lease=60, claim_id="c1")
    assert [j.id for j in again] == [a.id, b.id] and [j.attempts for j in again] == [1, 1]
    assert all(j.lease_until > time.time() + 50 for j in again) and store.recover(expired_only=True) == (0, 0)
    assert store.complete(a.id, result(), worker="w")
    assert [j.id for j in store.claim(8, worker="w", claim_id="c1")] == [b.id]  # a is done: what it still holds
    assert store.claim(8, worker="intruder", claim_id="c1") == []  # another worker's claim id gives it nothing
    assert [j.id for j in store.claim(8, worker="w", claim_id="c1")] == [b.id]  # and takes nothing from w
    assert store.release([b.id], worker="w") == 1
    fresh = store.claim(8, worker="w", claim_id="c1")  # it holds none of them now: a new claim
    assert [(j.id, j.attempts) for j in fresh] == [(b.id, 2)]
    assert store.counts(A) == {"queued": 0, "processing": 2, "completed": 1, "failed": 0, "cancelled": 0}


def test_a_stopping_worker_gives_back_only_the_jobs_it_still_holds_in_their_place(store):
    a, b, c, d = store.add(A, "b", [new("1"), new("2"), new("3"), new("4")])
    store.claim(3, worker="w1", lease=60)
    assert store.complete(a.id, result(), worker="w1")
    assert store.release([a.id, b.id, c.id, "no-such-job"], worker="w2") == 0  # not w2's
    assert store.release([a.id, b.id, c.id, "no-such-job"], worker="w1") == 2  # a is finished: not given back
    assert [j.status for j in store.list(A)] == ["completed", "queued", "queued", "queued"]
    back = store.get(A, b.id)
    assert back.worker == "" and back.lease_until is None and back.started_at is None and back.attempts == 1
    again = store.claim(8, worker="w2")
    assert [j.filename for j in again] == ["2", "3", "4"] and [j.attempts for j in again] == [2, 2, 1]
    assert store.release([], worker="w2") == 0 and store.recover(expired_only=True) == (0, 0)


def test_only_the_worker_holding_a_job_renews_or_records_it(store):
    a, b = store.add(A, "b", [new("1"), new("2")])
    store.claim(2, worker="w1", lease=60)
    assert store.extend([a.id, b.id], lease=120, worker="w2") == 0
    assert store.extend([a.id], lease=120, worker="w1") == 1 and store.get(A, a.id).lease_until > time.time() + 100
    assert not store.complete(a.id, result(), worker="w2") and not store.fail(a.id, "boom", worker="w2")
    assert store.get(A, a.id).status == "processing"
    assert store.complete(a.id, result(), worker="w1") and store.fail(b.id, "boom")  # no worker given: any
    assert [(j.status, j.worker) for j in store.list(A)] == [("completed", "w1"), ("failed", "w1")]


def test_workers_report_themselves_and_age_out(store):
    now = time.time()
    one = WorkerInfo("host-a:11:ab", "host-a", 11, (TINY, BASE), 0, now - 100, now)
    two = WorkerInfo("host-b:22:cd", "host-b", 22, (), 5, now - 50, now - 30, current=(Running(TINY, ("job-x",)),))
    store.beat(two)
    store.beat(one)
    assert store.workers(max_age=60) == [one, two]  # oldest first
    assert store.workers(max_age=10) == [one]  # two has not reported for 30 s
    busier = replace(one, models=(TINY,), jobs_done=3, last_seen=now + 1,
                     current=(Running(TINY, ("job-y", "job-z")), Running(BASE, ("job-w",))))  # fmt: skip
    store.beat(busier)  # the same worker again: replaced, not added
    assert store.workers(max_age=60) == [busier, two]
    assert store.forget_worker(two.id) and not store.forget_worker(two.id)
    assert store.workers(max_age=3600) == [busier]


def test_spool_round_trips_audio_within_24_bit_precision(spool, tmp_path):
    samples = np.sin(np.linspace(0, 200, 16000)).astype(np.float32) * 0.5
    spool.write("job1", samples)
    assert spool.exists("job1") and not spool.exists("job2")
    np.testing.assert_allclose(spool.read("job1"), samples, atol=2**-23)
    spool.copy("job1", "job2")
    np.testing.assert_array_equal(spool.read("job2"), spool.read("job1"))
    exported = spool.export("job1", tmp_path / "out", "my talk")
    assert exported == tmp_path / "out" / "my talk.flac"
    data, rate = sf.read(exported, dtype="float32")
    assert rate == 16000 and np.array_equal(data, spool.read("job1"))
    spool.delete(["job1", "missing"])
    assert not spool.exists("job1") and spool.exists("job2")
    with pytest.raises(FileNotFoundError):
        spool.read("job1")
    with pytest.raises(FileNotFoundError):
        spool.export("job1", tmp_path)
    with pytest.raises(FileNotFoundError):
        spool.copy("job1", "job3")
    assert not spool.exists("job3")


def test_spool_orphans_are_audio_with_no_job_written_before_a_time(spool):
    silence = np.zeros(160, dtype=np.float32)
    spool.write("old-orphan", silence)
    spool.write("old-job", silence)
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    spool.write("new-orphan", silence)
    assert spool.orphans({"old-job"}, older_than=cutoff) == ["old-orphan"]
    assert spool.orphans({"old-job"}, older_than=time.time() + 1) == ["new-orphan", "old-orphan"]
    spool.delete(["old-orphan"])
    assert spool.orphans(set(), older_than=cutoff) == ["old-job"]


def test_sweep_removes_exactly_expired_jobs_and_old_orphans(backend):
    """TTL expiry and the orphan sweep on a real store and spool (no model runs: no workers)."""
    url, folder = backend
    settings = Settings(data_dir=folder, batch_workers=0, job_ttl_hours=ORPHAN_GRACE_SECONDS / 3600, job_store=url)
    runner = BatchRunner(service=None, settings=settings)
    silence = np.zeros(1600, dtype=np.float32)
    (old,) = runner.store.add(A, "b", [new("old")])
    runner.spool.write(old.id, silence)
    runner.spool.write("orphan-old", silence)
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    (fresh,) = runner.store.add(B, "c", [new("fresh")])
    runner.spool.write(fresh.id, silence)
    runner.spool.write("orphan-new", silence)

    # Two minutes on, a submission still decoding its last files keeps its first files' audio.
    assert runner.sweep(now=cutoff + 120) == ([], []) and runner.spool.exists("orphan-old")
    expired, orphans = runner.sweep(now=cutoff + ORPHAN_GRACE_SECONDS)  # the TTL and the grace end between the two
    assert expired == [old.id] and orphans == ["orphan-old"]
    assert runner.store.get(A, old.id) is None and not runner.spool.exists(old.id)
    assert runner.store.get(B, fresh.id) is not None and runner.spool.exists(fresh.id)
    assert runner.spool.exists("orphan-new")  # too recent: it may be a submission in progress
    assert runner.sweep(now=cutoff + ORPHAN_GRACE_SECONDS) == ([], [])


def test_sweep_forgets_workers_not_heard_from_for_an_hour(backend):
    url, folder = backend
    runner = BatchRunner(None, Settings(data_dir=folder, batch_workers=0, job_store=url))
    now = time.time()
    gone = WorkerInfo("gone", "host-a", 1, (), 3, now - 9000, now - FORGET_WORKER_SECONDS - 60)  # killed long ago
    quiet = WorkerInfo("quiet", "host-b", 2, (), 0, now - 9000, now - FORGET_WORKER_SECONDS + 60)
    runner.store.beat(gone)
    runner.store.beat(quiet)
    runner.sweep(now=now)
    assert runner.store.workers(max_age=float("inf")) == [quiet]


def test_audio_copy_of_a_job_without_audio_is_none_and_leaves_no_folder(backend, tmp_path):
    url, folder = backend
    copies = tmp_path / "copies"
    runner = BatchRunner(None, Settings(data_dir=folder, batch_workers=0, job_store=url), audio_copies=copies)
    token = runner.tokens.issue()  # the runner accepts only tokens it issued
    (bad,) = runner.store.add(session_key(token), "b", [new("bad.wav", error="not audio")])
    (good,) = runner.store.add(session_key(token), "b", [new("talk.wav")])
    runner.spool.write(good.id, np.zeros(1600, dtype=np.float32))
    assert runner.audio_copy(token, bad.id) is None
    assert not copies.exists() or list(copies.iterdir()) == []
    copy = runner.audio_copy(token, good.id)
    assert copy == copies / good.id / "talk.flac" and copy.read_bytes() == runner.spool.get_bytes(good.id)


def test_audio_copies_go_with_their_job_deleted_expired_or_gone(backend, tmp_path):
    """A job's player copy is removed by /delete_job, by "*", by the TTL sweep, and (past a grace)
    when its job is gone without this runner knowing (deleted through another app)."""
    url, folder = backend
    copies = tmp_path / "copies"
    settings = Settings(data_dir=folder, batch_workers=0, job_store=url, job_ttl_hours=1.0)
    runner = BatchRunner(None, settings, audio_copies=copies)
    silence = np.zeros(1600, dtype=np.float32)
    token = runner.tokens.issue()
    session = session_key(token)
    jobs = runner.store.add(session, "b", [new(f"{n}.wav") for n in ("one", "two", "three", "four")])
    for job in jobs:
        runner.spool.write(job.id, silence)
        assert runner.audio_copy(token, job.id).is_file()
    one, two, three, four = jobs
    runner.delete(token, one.id)
    assert not (copies / one.id).exists() and (copies / two.id).is_dir()
    runner.store.delete(session, two.id)  # as another app would: this runner never hears of it
    now = time.time()
    runner.sweep(now=now)  # too recent to be taken for an orphan
    assert (copies / two.id).is_dir()
    expired, _ = runner.sweep(now=now + 2 * 3600)  # past the TTL and the copies' grace
    assert set(expired) == {three.id, four.id}
    assert list(copies.iterdir()) == []
    more = runner.store.add(session, "c", [new("five.wav"), new("six.wav")])
    for job in more:
        runner.spool.write(job.id, silence)
        runner.audio_copy(token, job.id)
    assert runner.delete_all(token) == 2 and list(copies.iterdir()) == []


def test_job_store_setting_opens_that_store(backend):
    store, spool = open_store(*backend)
    kind = store_kind(backend[0])
    names = {"sqlite": ("SqliteJobStore", "Spool"), "redis": ("RedisJobStore", "RedisSpool")}[kind]
    assert (type(store).__name__, type(spool).__name__) == names and store.shared == (kind == "redis")


def test_job_store_urls_and_redis_only_when_asked_for():
    assert Settings.from_env({}).job_store == "" and store_kind("sqlite") == "sqlite"
    with pytest.raises(ValueError, match="JOB_STORE"):
        Settings.from_env({"JOB_STORE": "postgres://db/jobs"})
    from explorer.jobs.redis_store import split_url

    assert split_url("redis://h:6380/2?prefix=app1:&socket_timeout=5") == ("redis://h:6380/2?socket_timeout=5", "app1:")
    assert split_url("unix:///run/redis.sock?db=1") == ("unix:///run/redis.sock?db=1", "explorer:")
    code = "import sys, explorer.batch; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # redis-py is imported only when JOB_STORE names a server


def timeless(job):
    """A job with its times replaced by their types (two stores run a moment apart)."""
    times = ("created_at", "started_at", "finished_at", "lease_until")
    return replace(job, **{name: type(getattr(job, name)).__name__ for name in times})


def test_both_stores_return_identical_jobs(tmp_path, redis_url):
    odd = TranscribeOptions(None, "translate", 5, True, False, prompt="Ünïcode 😀")
    words = (Word(0.0, 0.5, "hi", 0.9), Word(0.6, 1.5, "there"))
    out = Transcription(
        TINY, "hi there", (Segment(0.0, 1.5, "hi there", words),), "en", EN,
        compute([0.25, 0.5], "token", 3.0, 1.25, 0.5, 2), ("a warning",),
    )  # fmt: skip
    repaired = NewJob("é 😀.wav", TINY, EN, 3.0, warnings=("Ünïcode repair 😀", "another"))
    submitted = [repaired, new("b.wav", BASE, odd), new("bad.wav", error="not audio"), new("c.wav")]
    seen = []
    for url in ("", f"{redis_url}?prefix=same-{time.monotonic_ns()}:"):
        store, _ = open_store(url, tmp_path)
        added = store.add(A, "b", submitted)
        (first,) = store.claim(8, worker="w")
        store.complete(first.id, out)
        (second,) = store.claim(8, worker="w", lease=30)
        store.fail(second.id, "engine exploded")
        store.cancel(A, submitted[3].id)
        listed = store.list(A)
        seen.append(([timeless(j) for j in added + listed], store.counts(A), store.counts(A, "b"), sorted(store.ids())))
        assert [j.status for j in listed] == ["completed", "failed", "failed", "cancelled"]
        assert listed[0].result == out and listed[1].options == odd and listed[0].filename == "é 😀.wav"
        assert listed[0].warnings == repaired.warnings and listed[1].warnings == ()
    assert seen[0] == seen[1] and repr(seen[0]) == repr(seen[1])  # repr: 3 and 3.0, a list and a tuple differ


OLD_SCHEMA = """CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
session TEXT NOT NULL, batch TEXT NOT NULL, filename TEXT NOT NULL, model TEXT NOT NULL, options TEXT NOT NULL, status TEXT NOT NULL,
audio_seconds REAL NOT NULL, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
attempts INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', result TEXT);
CREATE INDEX jobs_queue ON jobs (status, seq);
CREATE INDEX jobs_session ON jobs (session, seq);"""


def test_a_store_file_from_before_leases_opens_with_its_jobs(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        row = "INSERT INTO jobs (id, session, batch, filename, model, options, status, audio_seconds, created_at,"
        row += " started_at, attempts) VALUES (?, ?, 'b', ?, ?, ?, ?, 3.0, 1.0, ?, ?)"
        db.execute(row, ("j1", A, "1.wav", TINY, options_json(EN), "processing", 2.0, 1))
        db.execute(row, ("j2", A, "2.wav", TINY, options_json(EN), "queued", None, 0))
    store = SqliteJobStore(path)
    running = store.get(A, "j1")
    assert running.status == "processing" and running.worker == "" and running.lease_until is None
    assert running.warnings == ()  # from before jobs kept their file's warnings: none
    assert store.recover(expired_only=True) == (1, 0)  # from before leases: it has none, so it counts as run out
    assert [j.filename for j in store.claim(8, worker="w")] == ["1.wav", "2.wav"]
    store.beat(WorkerInfo("w", "h", 1, (), 0, 1.0, time.time()))
    again = SqliteJobStore(path)  # opening it again changes nothing
    assert [(j.worker, j.attempts) for j in again.list(A)] == [("w", 2), ("w", 1)] and len(again.workers(60)) == 1


def test_redis_jobs_survive_a_crash_of_the_server(tmp_path, redis_available):
    server = RedisServer(tmp_path / "redis").start()
    try:
        store, spool = open_store(server.url, tmp_path)
        jobs = store.add(A, "b", [new(str(i)) for i in range(5)])
        samples = np.sin(np.linspace(0, 100, 8000)).astype(np.float32)
        spool.write(jobs[4].id, samples)
        done, failed, running = store.claim(3, worker="w")
        store.complete(done.id, result())
        store.fail(failed.id, "boom")
        store.cancel(A, jobs[3].id)
        worker = WorkerInfo("w", "host", 7, (TINY,), 2, time.time(), time.time())
        store.beat(worker)
        before = store.list(A)
        time.sleep(1.2)  # appendfsync everysec: a write postponed behind a running fsync lands within a second
        server.kill()  # SIGKILL: no shutdown, no flush
        server.start()  # the same folder (its AOF), another port

        store, spool = open_store(server.url, tmp_path)
        assert store.list(A) == before
        assert [j.status for j in before] == ["completed", "failed", "processing", "cancelled", "queued"]
        assert store.workers(max_age=3600) == [worker]
        np.testing.assert_array_equal(spool.read(jobs[4].id), spool.read(jobs[4].id))
        np.testing.assert_allclose(spool.read(jobs[4].id), samples, atol=2**-23)
        (later,) = store.add(A, "b", [new("later")])
        assert later.seq == 6  # the counter survived too
        assert store.recover() == (1, 0) and [j.filename for j in store.claim(8)] == ["2", "4", "later"]
    finally:
        server.stop()


# -- the runner's own threads: lease renewal, recovery, the registry, a clean stop -------------------
class GatedService:
    """A stand-in for ModelService whose model call returns only once the test opens the gate
    (the runner's threads are what is tested here, not a model)."""

    def __init__(self):
        self.started, self.gate = threading.Event(), threading.Event()

    def health(self) -> dict:
        return {"loaded_models": [{"key": TINY}]}

    def transcribe_batch(self, key, audios, options):
        self.started.set()
        assert self.gate.wait(30)
        return [result(key, "gated") for _ in audios]


def gated_runner(backend, lease: float) -> tuple[BatchRunner, GatedService, list]:
    """A runner with one worker thread (one job per claim) and two queued jobs with audio."""
    url, folder = backend
    service = GatedService()
    settings = Settings(data_dir=folder, job_store=url, batch_workers=1, batch_size=1, job_lease_seconds=lease,
                        worker_beat_seconds=0.2)  # fmt: skip
    runner = BatchRunner(service, settings)
    jobs = runner.store.add(A, "b", [new("1"), new("2")])
    for job in jobs:
        runner.spool.write(job.id, np.zeros(1600, dtype=np.float32))
    return runner, service, jobs


def test_a_runner_renews_the_lease_of_a_long_job_and_lets_it_finish_when_stopped(backend):
    runner, service, (job, later) = gated_runner(backend, lease=1.0)
    runner.start()
    try:
        assert service.started.wait(10)
        (me,) = runner.workers()
        assert me.id == runner.worker and me.current == (Running(TINY, (job.id,)),) and me.models == (TINY,)
        assert me.jobs_done == 0 and me.pid == os.getpid()
        threading.Timer(2.5, service.gate.set).start()  # longer than two leases: only the heartbeat keeps it
        assert runner.stop(grace=20) == 0  # it finished within the grace: nothing given back
    finally:
        service.gate.set()
        runner.stop(grace=0)
    done = runner.store.get(A, job.id)
    assert (done.status, done.attempts, done.worker, done.result.text) == ("completed", 1, runner.worker, "gated")
    assert runner.store.get(A, later.id).status == "queued"  # nothing claimed once stopping
    assert runner.workers(max_age=3600) == []  # it left the registry


def test_a_runner_stopped_mid_job_gives_it_back_and_its_late_result_is_refused(backend):
    runner, service, (job, later) = gated_runner(backend, lease=60)
    runner.start()
    try:
        assert service.started.wait(10)
        assert runner.stop(grace=0.2) == 1
        back = runner.store.get(A, job.id)
        assert (back.status, back.worker, back.attempts, back.lease_until) == ("queued", "", 1, None)
        assert [j.id for j in runner.store.claim(8, worker="other")] == [job.id, later.id]  # its old place
    finally:
        service.gate.set()  # the call given up on returns now
    deadline = time.monotonic() + 10
    while runner.working() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runner.working()
    again = runner.store.get(A, job.id)
    assert (again.status, again.worker, again.attempts) == ("processing", "other", 2)  # untouched by the late result
    assert runner.spool.exists(job.id) and runner.workers(max_age=3600) == []


class LostFirstClaimReply:
    """The real store, except that the first claim that takes jobs runs and then raises the store's
    own outage error, as when the server dies between running a claim and answering it (the fault
    is injected here: a test cannot time a real crash into that gap)."""

    def __init__(self, store):
        self.store, self.claims = store, []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def claim(self, *args, **kwargs):
        self.claims.append(kwargs.get("claim_id"))
        jobs = self.store.claim(*args, **kwargs)
        if jobs and len(self.claims) == 1:
            raise self.store.transient[0]("connection lost before the reply")
        return jobs


def test_a_runner_whose_claim_reply_was_lost_gets_those_jobs_back_at_once(backend):
    url, folder = backend
    store, spool = open_store(url, folder)
    lossy = LostFirstClaimReply(store)
    service = GatedService()
    service.gate.set()
    settings = Settings(data_dir=folder, job_store=url, batch_workers=1, batch_size=2, job_lease_seconds=60)
    runner = BatchRunner(service, settings, lossy, spool)
    jobs = store.add(A, "b", [new("1"), new("2")])
    for job in jobs:
        spool.write(job.id, np.zeros(1600, dtype=np.float32))
    runner.start()
    try:
        deadline = time.monotonic() + 20  # a third of the lease: no expiry brought them back
        while store.counts(A)["completed"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    done = store.list(A)
    assert [(j.status, j.attempts, j.worker) for j in done] == [("completed", 1, runner.worker)] * 2
    assert lossy.claims[0] and lossy.claims[1] == lossy.claims[0]  # the retry repeated the lost claim's id
    assert len(set(lossy.claims[1:])) == len(lossy.claims) - 1  # and later claims had new ones


class ClaimStalledAtStop:
    """The real store, except that the first claim waits for the test's go before it runs: a claim
    in flight when the runner is told to stop (a thread between its draining check and the reply)."""

    def __init__(self, store):
        self.store, self.entered, self.go = store, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.store, name)

    def claim(self, *args, **kwargs):
        if not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(10)
        return self.store.claim(*args, **kwargs)


def test_a_claim_in_flight_when_the_runner_stops_gives_its_jobs_back(backend):
    url, folder = backend
    store, spool = open_store(url, folder)
    stalled = ClaimStalledAtStop(store)
    service = GatedService()
    settings = Settings(data_dir=folder, job_store=url, batch_workers=1, batch_size=2, job_lease_seconds=60)
    runner = BatchRunner(service, settings, stalled, spool)
    a, b = store.add(A, "b", [new("1"), new("2")])
    runner.start()
    assert stalled.entered.wait(10)
    released: list[int] = []
    stopping = threading.Thread(target=lambda: released.append(runner.stop(grace=0)))
    stopping.start()
    time.sleep(0.5)  # stop() has given back what was held (nothing) and waits for the claim
    stalled.go.set()
    stopping.join(15)
    assert not stopping.is_alive() and released == [2]
    jobs = store.list(A)
    assert [(j.status, j.worker, j.attempts) for j in jobs] == [("queued", "", 1)] * 2  # none left in its name
    assert not service.started.is_set() and [j.id for j in store.claim(8, worker="next")] == [a.id, b.id]


def test_every_runner_takes_back_expired_leases_without_waiting_for_the_sweeper(backend):
    url, folder = backend
    settings = Settings(data_dir=folder, job_store=url, batch_workers=0, job_lease_seconds=1.0)  # sweeps every 600 s
    runner = BatchRunner(None, settings).start()
    try:
        (job,) = runner.store.add(A, "b", [new("1")])
        runner.store.claim(1, worker="dead", lease=0.5)
        claimed = time.monotonic()
        while runner.store.get(A, job.id).status != "queued" and time.monotonic() < claimed + 5:
            time.sleep(0.05)
        took = time.monotonic() - claimed
    finally:
        runner.stop()
    assert runner.store.get(A, job.id).status == "queued" and took < 0.5 + 0.5 + 0.5  # lease + half a lease + slack
    assert runner.workers(max_age=3600) == []  # no worker threads: not in the registry


def test_a_job_for_a_model_this_host_does_not_know_fails_with_the_reason(backend):
    """A newer app may queue a model this worker's catalog lacks: the job fails, the worker goes on."""
    from explorer.service import ModelService

    url, folder = backend
    settings = Settings(data_dir=folder, job_store=url, batch_workers=1, offline=True, models_dir=folder / "models")
    runner = BatchRunner(ModelService(settings, online=False), settings)
    (job,) = runner.store.add(A, "b", [new("x.wav", model="newer/model-v9")])
    runner.spool.write(job.id, np.zeros(1600, dtype=np.float32))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while runner.store.get(A, job.id).status in ("queued", "processing") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    done = runner.store.get(A, job.id)
    assert done.status == "failed" and done.error.startswith("unknown model 'newer/model-v9'"), done
    assert done.attempts == 1 and done.worker == runner.worker


def test_refused_credentials_are_an_error_not_an_outage_to_wait_out(redis_url, tmp_path, caplog):
    import redis

    url = redis_url.replace("redis://", "redis://nobody:wrong@")  # no such user on the test server
    runner = BatchRunner(None, Settings(data_dir=tmp_path, job_store=url, batch_workers=0, job_lease_seconds=1))
    calls = []

    def refused():
        calls.append(1)
        raise redis.AuthenticationError("invalid username-password pair")

    with pytest.raises(redis.AuthenticationError):
        runner._patiently(refused, "recording a job")  # not retried for two leases as an outage would be
    assert len(calls) == 1
    with caplog.at_level(logging.WARNING, logger="explorer.batch"):
        runner.start()
        runner.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("refused access" in m and "check the credentials in JOB_STORE" in m for m in errors), errors


def test_lease_and_beat_settings():
    settings = Settings.from_env({"JOB_LEASE_SECONDS": "6", "WORKER_BEAT_SECONDS": "0.5"})
    assert (settings.job_lease_seconds, settings.worker_beat_seconds) == (6.0, 0.5)
    assert Settings.from_env({}).job_lease_seconds == 120.0
    for name in ("JOB_LEASE_SECONDS", "WORKER_BEAT_SECONDS"):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: "0"})


def test_concurrent_submits_of_one_session_never_pass_max_queued_jobs(backend, service, clips):
    """Eight submits of two files at once, with room for five unfinished jobs: exactly two pass.
    Each submit decodes its files between the bound's check and the store's write; the places
    it holds meanwhile keep the others from passing on the same count."""
    url, folder = backend
    runner = BatchRunner(service, Settings(data_dir=folder, batch_workers=0, job_store=url, max_queued_jobs=5))
    token = runner.tokens.issue()
    outcomes: list = []
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait()
        try:
            outcomes.append(runner.submit(token, [clips[0].path, clips[1].path], TINY, TranscribeOptions()))
        except Exception as exc:  # JobError: over the bound
            outcomes.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    passed = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(outcomes) == 8 and len(passed) == 2, outcomes
    assert all("MAX_QUEUED_JOBS" in str(o) for o in outcomes if isinstance(o, Exception))
    counts = runner.store.counts(session_key(token))
    assert counts["queued"] == 4
    with pytest.raises(Exception, match="MAX_QUEUED_JOBS"):  # the places held during the submits were given back
        runner.submit(token, [clips[0].path, clips[1].path], TINY, TranscribeOptions())
    assert runner.submit(token, [clips[2].path], TINY, TranscribeOptions()).jobs

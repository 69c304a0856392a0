"""The job store contract on a real SQLite file, the spool, and expiry with the sweeper."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from explorer.batch import BatchRunner
from explorer.config import Settings
from explorer.jobs import NewJob, Spool, SqliteJobStore, session_key
from explorer.metrics import compute
from explorer.types import Segment, TranscribeOptions, Transcription

TINY, BASE = "faster-whisper/tiny.en", "faster-whisper/base"
EN = TranscribeOptions(language="en")


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path):
    # One contract for every store; a shared-server store joins the params.
    return SqliteJobStore(tmp_path / "jobs.sqlite3")


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


def test_concurrent_claims_never_hand_out_a_job_twice(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    SqliteJobStore(path).add(A, "b", [new(str(i)) for i in range(200)])
    claimed: list[str] = []
    lock = threading.Lock()

    def worker():
        store = SqliteJobStore(path)  # its own connections, as another process would have
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
    assert store.recover() == 1
    assert [j.status for j in store.list(A)] == ["completed", "queued", "queued"]
    again = store.claim(limit=8)
    assert [j.filename for j in again] == ["2", "3"] and again[0].attempts == 2
    assert store.get(A, jobs[0].id).result.text == "hello there"


def test_spool_round_trips_audio_within_24_bit_precision(tmp_path):
    spool = Spool(tmp_path / "spool")
    samples = np.sin(np.linspace(0, 200, 16000)).astype(np.float32) * 0.5
    path = spool.write("job1", samples)
    assert path.name == "job1.flac" and not list(spool.folder.glob("*.partial*"))
    np.testing.assert_allclose(spool.read("job1"), samples, atol=2**-23)
    spool.copy("job1", "job2")
    np.testing.assert_array_equal(spool.read("job2"), spool.read("job1"))
    spool.delete(["job1", "missing"])
    assert not spool.path("job1").exists() and spool.path("job2").exists()


def test_sweep_removes_exactly_expired_jobs_and_old_orphans(tmp_path):
    """TTL expiry and the orphan sweep on a real store and spool (no model runs: no workers)."""
    settings = Settings(data_dir=tmp_path, batch_workers=0, job_ttl_hours=1.0)
    runner = BatchRunner(service=None, settings=settings)
    old, fresh = runner.store.add(A, "b", [new("old")]), runner.store.add(B, "c", [new("fresh")])
    for job in old + fresh:
        runner.spool.write(job.id, np.zeros(1600, dtype=np.float32))
    orphan_old = runner.spool.write("orphan-old", np.zeros(16, dtype=np.float32))
    orphan_new = runner.spool.write("orphan-new", np.zeros(16, dtype=np.float32))
    now = time.time()
    os.utime(orphan_old, (now - 7200, now - 7200))
    with runner.store._write() as db:  # make one job two hours old
        db.execute("UPDATE jobs SET created_at = ? WHERE id = ?", (now - 7200, old[0].id))

    expired, orphans = runner.sweep(now)
    assert expired == [old[0].id] and orphans == [orphan_old]
    assert runner.store.get(A, old[0].id) is None and not runner.spool.path(old[0].id).exists()
    assert runner.store.get(B, fresh[0].id) is not None and runner.spool.path(fresh[0].id).exists()
    assert orphan_new.exists()  # too recent: it may be a submission in progress
    assert runner.sweep(now) == ([], [])

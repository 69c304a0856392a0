"""Standalone workers (``python -m explorer.worker``) as real processes on a real redis-server, with
real tiny.en and real speech: two workers and two app replicas share one store and run a batch
exactly once; a worker killed with SIGKILL mid-job loses nothing; a Redis crash and restart (AOF)
loses nothing; SIGTERM stops a worker cleanly. Leases are short (a few seconds) so that recovery
is quick to watch; each worker gets one CPU thread (OMP_NUM_THREADS=1)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar

import pytest

from explorer.batch import BatchRunner
from explorer.config import Settings
from explorer.jobs import Job, JobStore, WorkerInfo, open_store, session_key
from explorer.scoring import score
from explorer.types import TranscribeOptions
from tests.redis_server import RedisServer
from tests.running_app import RunningApp
from tests.test_batch import submit, wait_until

ROOT = Path(__file__).resolve().parent.parent
TINY = "faster-whisper/tiny.en"
OPTIONS = TranscribeOptions(language="en", beam_size=1)
LEASE, BEAT = 6.0, 1.0  # seconds: a killed worker's jobs come back within 1.5 leases
SECRET = "shared-session-secret-" + "s" * 16  # apps sharing a store share it (README); workers need none
ADMIN = "admin-token-" + "a" * 16
COMPLETED = re.compile(r"job (\S+) \S+ completed in ")
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """condition()'s first truthy value, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Worker:
    """One `python -m explorer.worker` process and its stderr log."""

    proc: subprocess.Popen
    log: Path

    def info(self, store: JobStore, max_age: float = 3 * BEAT) -> Optional[WorkerInfo]:
        """Its entry in the registry (same host, same pid), if it has reported within max_age."""
        host = socket.gethostname()
        return next((w for w in store.workers(max_age) if w.pid == self.proc.pid and w.host == host), None)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def completed(self) -> list[str]:
        """Ids of the jobs it logged as completed (one line per job)."""
        return COMPLETED.findall(self.text())


@pytest.fixture
def start_worker(models_dir, tmp_path):
    """start_worker(url, *args, **env) starts a worker with tiny.en preloaded; all are killed after the test."""
    started: list[Worker] = []

    def start(url: str, *args: str, **env) -> Worker:
        log = tmp_path / f"worker{len(started)}.log"
        full_env = {
            **os.environ, "JOB_STORE": url, "MODELS_DIR": str(models_dir), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "JOB_LEASE_SECONDS": str(LEASE), "WORKER_BEAT_SECONDS": str(BEAT),
            **{k: str(v) for k, v in env.items()},
        }  # fmt: skip
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "explorer.worker", "--models", TINY, *args], cwd=ROOT,
                                    env=full_env, stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        started.append(Worker(proc, log))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(10)


def ready(store: JobStore, *workers: Worker, timeout: float = 180) -> list[WorkerInfo]:
    """Wait until every worker has loaded its model and reported itself (it starts taking jobs then)."""

    def infos():
        found = [w.info(store) for w in workers]
        for w in workers:
            assert w.proc.poll() is None, f"worker exited with {w.proc.returncode}:\n{w.text()[-3000:]}"
        return found if all(found) else None

    return wait_for(infos, timeout, "the workers to report themselves", every=0.25)


def store_url(server_url: str, name: str) -> str:
    return f"{server_url}?prefix=worker-{name}-{time.monotonic_ns()}:"


def submitter(service, url: str, tmp_path: Path) -> BatchRunner:
    """A runner that only submits (no worker threads, not started): the workers do the rest."""
    return BatchRunner(service, Settings(models_dir=service.settings.models_dir, offline=True, job_store=url,
                                         data_dir=tmp_path / "submitter", batch_workers=0))  # fmt: skip


def held_by(store: JobStore, session: str, worker_id: str) -> set[str]:
    return {j.id for j in store.list(session) if j.status == "processing" and j.worker == worker_id}


def settled(store: JobStore, session: str, total: int) -> Optional[list[Job]]:
    """The session's jobs once none is queued or processing."""
    counts = store.counts(session)
    done = sum(counts.values()) == total and counts["queued"] == counts["processing"] == 0
    return store.list(session) if done else None


def assert_each_completed_once(jobs: list[Job], *workers: Worker) -> None:
    assert all(j.status == "completed" for j in jobs), Counter(j.status for j in jobs)
    logged = Counter(i for w in workers for i in w.completed())
    assert {j.id for j in jobs} == set(logged) and set(logged.values()) == {1}, logged.most_common(3)


def test_two_workers_and_two_apps_share_one_store_and_run_a_batch_exactly_once(
    redis_url, models_dir, clips, tmp_path, start_worker
):
    url = store_url(redis_url, "share")
    store, _ = open_store(url, tmp_path)
    workers = [start_worker(url), start_worker(url)]
    env = dict(JOB_STORE=url, BATCH_WORKERS=0, JOB_LEASE_SECONDS=LEASE, WORKER_BEAT_SECONDS=BEAT,
               SESSION_SECRET=SECRET, ADMIN_TOKEN=ADMIN)  # fmt: skip
    apps = []
    try:
        for n in range(2):
            apps.append(RunningApp(models_dir, tmp_path / f"app{n}.log", DATA_DIR=tmp_path / f"data{n}", **env))
        ready(store, *workers)
        first, second = (app.client() for app in apps)
        paths = [c.path for c in clips] * 10
        sub = submit(first, paths, beam_size=5)  # as test_batch: greedy decoding misses one clip's 25 % bound
        state = wait_until(second, sub["token"], lambda c: c["queued"] == c["processing"] == 0, timeout=400)
        # Each worker reports its count just after recording its last job.
        registry = wait_for(lambda: (r := store.workers(3 * BEAT)) and sum(w.jobs_done for w in r) == 50 and r, 10,
                            "the workers to report 50 jobs done")  # fmt: skip
        health = second.predict(ADMIN, api_name="/health")["detail"]  # what either app shows its admin of the workers
    finally:
        for app in apps:
            app.stop()
    assert state["counts"]["completed"] == 50
    jobs = store.list(session_key(sub["token"]))
    assert [j.id for j in jobs] == [j["id"] for j in sub["jobs"]]  # nothing lost, nothing added
    assert all(j.attempts == 1 for j in jobs)
    assert_each_completed_once(jobs, *workers)
    ids = {w.info(store).id for w in workers}
    assert {w.id for w in registry} == ids  # the apps (BATCH_WORKERS=0) take no jobs and do not report
    assert {j.worker for j in jobs} == ids, "one worker took every job: nothing was shared"
    assert all(w.jobs_done > 0 and w.models == (TINY,) and w.current == () for w in registry)
    assert health["job_store"] == "redis" and {w["worker"] for w in health["workers"]} == ids
    assert sum(w["jobs_done"] for w in health["workers"]) == 50 and {w["models_loaded"] for w in health["workers"]} == {TINY}
    refs = {c.path.name: c.reference for c in clips}
    for job in jobs:
        assert score(refs[job.filename], job.result.text).wer <= 0.25, job.result.text
        assert job.result.metrics.rtfx > 0 and job.result.model == TINY


def test_a_worker_killed_mid_job_loses_nothing(redis_url, service, clips, tmp_path, start_worker):
    url = store_url(redis_url, "kill")
    store, _ = open_store(url, tmp_path)
    victim, survivor = start_worker(url, BATCH_SIZE=2), start_worker(url, BATCH_SIZE=2)
    ready(store, victim, survivor)
    sub = submitter(service, url, tmp_path).submit(None, [c.path for c in clips] * 3, TINY, OPTIONS)
    session = session_key(sub.token)

    def caught_holding() -> Optional[WorkerInfo]:
        """Freeze the victim (SIGSTOP) while the registry says it runs a job; keep it frozen if the
        store agrees, else let it go on and look again."""
        info = victim.info(store)
        if not (info and info.current):
            return None
        victim.proc.send_signal(signal.SIGSTOP)
        if held_by(store, session, info.id):
            return info
        victim.proc.send_signal(signal.SIGCONT)
        return None

    info = wait_for(caught_holding, 120, "the victim to hold a job", every=0.02)
    victim.proc.kill()  # SIGKILL: no chance to give anything back
    victim.proc.wait(10)
    killed = time.monotonic()
    held: set[str] = set()

    def taken_back() -> bool:  # the last snapshot before its jobs are queued again is what it held
        nonlocal held
        now = held_by(store, session, info.id)
        held = now or held
        return not now

    wait_for(taken_back, 3 * LEASE, "the dead worker's jobs to go back to the queue", every=0.05)
    assert held and time.monotonic() - killed <= 1.5 * LEASE + 1  # its lease ran out; a runner took it back
    jobs = wait_for(lambda: settled(store, session, 15), 300, "the batch to finish")
    wait_for(lambda: victim.info(store) is None, 3 * BEAT + 2, "the dead worker to leave workers()")
    assert [j.id for j in jobs] == [j.id for j in sub.jobs] and all(j.status == "completed" for j in jobs)
    assert {j.id for j in jobs if j.attempts == 2} == held and max(j.attempts for j in jobs) == 2
    assert {j.worker for j in jobs if j.id in held} == {survivor.info(store).id}
    logged = Counter(victim.completed() + survivor.completed())
    assert set(logged.values()) == {1} and set(survivor.completed()) >= held


def test_a_redis_crash_and_restart_loses_no_job(redis_available, service, clips, tmp_path, start_worker):
    """SIGKILL of the server mid-batch, then a restart on the same folder (AOF) and port. This
    server fsyncs every write before answering (appendfsync always): with Redis' default
    (everysec) a crash may lose the last second of acknowledged writes, a claim or a result."""
    server = RedisServer(tmp_path / "redis", fsync="always").start()
    try:
        url = store_url(server.url, "restart")
        store, _ = open_store(url, tmp_path)
        # Leases well past the outage: noticing it takes redis-py's own retries (up to ~7 s of backoff),
        # and the first renewal after the restart may wait as long again.
        env = dict(BATCH_SIZE=2, JOB_LEASE_SECONDS=60)
        workers = [start_worker(url, **env), start_worker(url, **env)]
        ready(store, *workers)
        sub = submitter(service, url, tmp_path).submit(None, [c.path for c in clips] * 3, TINY, OPTIONS)
        session = session_key(sub.token)
        before = wait_for(lambda: (c := store.counts(session))["completed"] >= 3 and c, 300, "3 jobs to complete")
        server.kill()  # a crash: no shutdown, no flush
        assert before["queued"] > 0, "the batch finished before the crash: nothing was tested"
        wait_for(lambda: all("job store unreachable" in w.text() for w in workers), 30, "both workers to notice")
        server.start(same_port=True)  # the same folder (its AOF) and port: the workers find it again
        jobs = wait_for(lambda: settled(store, session, 15), 300, "the batch to finish after the restart")
        assert all(w.proc.poll() is None for w in workers)  # they outlived the outage
        assert [j.id for j in jobs] == [j.id for j in sub.jobs]  # nothing lost, nothing added
        again = [(j.filename, j.attempts) for j in jobs if j.attempts != 1]
        assert not again, f"handed out twice: {again}\n" + "\n".join(w.text()[-2000:] for w in workers)
        assert_each_completed_once(jobs, *workers)
    finally:
        server.stop()


def test_sigterm_lets_the_job_in_hand_finish_or_gives_it_back(redis_url, service, clips, tmp_path, start_worker):
    url = store_url(redis_url, "term")
    store, _ = open_store(url, tmp_path)
    patient, hasty = start_worker(url, "--grace", "30", BATCH_SIZE=2), start_worker(url, "--grace", "0", BATCH_SIZE=2)
    ready(store, patient, hasty)
    sub = submitter(service, url, tmp_path).submit(None, [c.path for c in clips] * 3, TINY, OPTIONS)
    session = session_key(sub.token)

    def stop(worker: Worker) -> tuple[str, set[str], float]:
        """SIGTERM once it holds a job; (its id, what it held, seconds it took to exit 0)."""
        info = wait_for(lambda: (i := worker.info(store)) and i.current and held_by(store, session, i.id) and i,
                        120, "a worker to hold a job", every=0.02)  # fmt: skip
        held = held_by(store, session, info.id)
        sent = time.monotonic()
        worker.proc.terminate()
        assert worker.proc.wait(40) == 0, worker.text()[-3000:]
        took = time.monotonic() - sent
        assert worker.info(store, max_age=3600) is None  # it left the registry
        assert not held_by(store, session, info.id)  # nothing left processing in its name
        return info.id, held, took

    # Grace 30 s: the jobs in hand (and any claimed just before the signal) finish in this worker.
    patient_id, held, took = stop(patient)
    assert took < 30 and "0 job(s) given back" in patient.text()
    assert all(store.get(session, i).status == "completed" and store.get(session, i).worker == patient_id for i in held)
    # Grace 0: jobs still running go back to the queue at once, in their place, for another worker.
    hasty_id, held, took = stop(hasty)
    now = store.list(session)
    # Given back: claimed once and queued again. Those it held, and those of a claim in flight at
    # the signal (stop() waits for it: its jobs must not stay in the stopped worker's name).
    back = {j.id for j in now if j.status == "queued" and j.attempts == 1}
    assert f"({len(back)} job(s) given back)" in hasty.text()
    assert all(store.get(session, i).status == "completed" for i in held - back)  # finished just before the signal
    assert all(j.worker == "" for j in now if j.id in back)
    queued = [j.id for j in now if j.status == "queued"]
    assert set(queued[: len(back)]) == back  # at the head of the queue: their old place

    last = start_worker(url, BATCH_SIZE=2)
    jobs = wait_for(lambda: settled(store, session, 15), 300, "the last worker to finish the batch")
    assert [j.id for j in jobs] == [j.id for j in sub.jobs]
    assert {j.id for j in jobs if j.attempts == 2} == back and max(j.attempts for j in jobs) <= 2
    assert_each_completed_once(jobs, patient, hasty, last)
    assert {j.worker for j in jobs if j.id in back} <= {last.info(store).id}


@pytest.mark.parametrize(
    "store, args, message",
    [
        ("", [], "a standalone worker needs a shared job store"),  # SQLite: the app's own threads run its jobs
        ("redis://127.0.0.1:1/0", ["--workers", "0"], "--workers (or BATCH_WORKERS) must be at least 1"),
        ("redis://127.0.0.1:1/0", ["--models", "nope/model"], "unknown model key(s) nope/model"),
        ("redis://127.0.0.1:1/0", ["--grace", "-1"], "--grace must be 0 or more"),
        # Nothing listens there: checked once at start, not waited for as an outage.
        ("redis://127.0.0.1:1/0", [], "cannot use the job store at redis://127.0.0.1:1/0: ConnectionError: "),
        ("redis://127.0.0.1:x/0", [], "cannot use the job store at redis://127.0.0.1:x/0: ValueError"),
    ],
)
def test_a_worker_refuses_what_it_cannot_run_with_the_reason(store, args, message):
    env = {**os.environ, "JOB_STORE": store, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "explorer.worker", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_a_worker_with_refused_credentials_exits_with_the_reason(redis_url):
    url = redis_url.replace("redis://", "redis://nobody:s3cret-pw@")  # no such user on the test server
    env = {**os.environ, "JOB_STORE": url, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "explorer.worker"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "cannot use the job store at redis://nobody:***@" in out.stderr and "AuthenticationError" in out.stderr
    assert "s3cret-pw" not in out.stderr


# A worker whose model load takes a minute (its preload replaced), announcing the load on stdout.
SLOW_LOAD = """
import sys, time
from explorer import worker
from explorer.service import ModelService

def preload(self, key):
    print("loading", flush=True)
    time.sleep(60)

ModelService.preload = preload
sys.exit(worker.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_models_load_ends_the_worker_at_once(redis_url, tmp_path, signum):
    url = store_url(redis_url, "load")
    env = {**os.environ, "JOB_STORE": url, "HF_HUB_OFFLINE": "1", "MODELS_DIR": str(tmp_path / "models")}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_LOAD, "--models", TINY], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        if proc.stdout.readline().strip() != "loading":
            proc.kill()
            pytest.fail(f"the worker did not start loading:\n{proc.communicate()[1][-3000:]}")
        sent = time.monotonic()
        proc.send_signal(signum)
        proc.wait(10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signum and took < 5  # nothing was held yet: the signal's default action
    assert open_store(url, tmp_path)[0].workers(max_age=3600) == []

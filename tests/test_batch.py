"""Batch jobs through the running app and gradio_client: a real batch, sessions, a real crash, two
servers sharing one Redis job store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import soundfile as sf
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from explorer.jobs import open_store, session_key
from explorer.scoring import score
from tests.running_app import RunningApp

TINY = "faster-whisper/tiny.en"


def submit(client, paths, token="", model=TINY, beam_size=1):
    files = [handle_file(str(p)) for p in paths]
    return client.predict(files, model, "en", "transcribe", beam_size, False, True, token, api_name="/submit_batch")


def wait_until(client, token, done, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.predict(token, "", api_name="/jobs")
        if done(state["counts"]):
            return state
        time.sleep(0.5)
    raise AssertionError(f"timed out: {state['counts']}")


def exported(client, token):
    paths = client.predict(token, "", api_name="/export_jobs")
    return json.loads(Path(next(p for p in paths if p.endswith(".json"))).read_text())


def test_fifty_clips_complete_in_order_with_progress_equal_to_the_store(app, clips, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    paths = [c.path for c in clips] * 10
    paths.insert(23, bad)
    client = app.client()
    sub = submit(client, paths, beam_size=5)
    token, batch = sub["token"], sub["batch"]
    assert len(sub["jobs"]) == 51 and sub["jobs"][23]["status"] == "failed"
    assert "broken.wav" in sub["jobs"][23]["error"] and "not audio" in sub["jobs"][23]["error"]

    updates = list(client.submit(token, batch, api_name="/watch_batch"))
    finished = [u["counts"]["completed"] + u["counts"]["failed"] for u in updates]
    assert finished == sorted(finished) and finished[-1] == 51 and len(updates) >= 3
    store = client.predict(token, batch, api_name="/jobs")
    assert updates[-1]["counts"] == store["counts"] == {
        "queued": 0, "processing": 0, "completed": 50, "failed": 1, "cancelled": 0
    }  # fmt: skip

    jobs = exported(client, token)
    assert [j["filename"] for j in jobs] == [p.name for p in paths]
    done = [j for j in jobs if j["status"] == "completed"]
    times = [j["finished_at"] for j in done]
    assert times == sorted(times), "jobs finished out of submission order"
    assert max(j["result"]["metrics"]["batch_size"] for j in done) > 1  # cross-file batching happened
    refs = {c.path.name: c.reference for c in clips}
    for j in done:
        assert score(refs[j["filename"]], j["result"]["text"]).wer <= 0.25, j["result"]["text"]
    total = score([refs[j["filename"]] for j in done], [j["result"]["text"] for j in done])
    assert total.wer <= 0.10


def test_sessions_cannot_touch_each_others_jobs(app, clips):
    client = app.client()
    a = submit(client, [clips[0].path, clips[1].path])
    b = submit(client, [clips[2].path])
    assert a["token"] != b["token"]
    job_a = a["jobs"][0]["id"]
    assert [j["id"] for j in client.predict(b["token"], "", api_name="/jobs")["jobs"]] == [b["jobs"][0]["id"]]
    token = b["token"]  # a real session's token finds nothing of another (forged ones: test_bounds)
    with pytest.raises(AppError, match="no job"):
        client.predict(token, job_a, api_name="/job")
    with pytest.raises(AppError, match="no job"):
        client.predict(token, job_a, api_name="/cancel_job")
    with pytest.raises(AppError, match="no job"):
        client.predict(token, job_a, api_name="/delete_job")
    with pytest.raises(AppError, match="no job"):
        client.predict(token, job_a, "", api_name="/resubmit")
    assert client.predict(token, "*", api_name="/delete_job") == {"deleted": 1}
    with pytest.raises(AppError, match="unknown session token"):
        client.predict("forged-token-" + "x" * 30, "*", api_name="/delete_job")
    for call in (lambda: client.predict("", "", api_name="/jobs"), lambda: client.predict("", job_a, api_name="/job")):
        with pytest.raises(AppError, match="no session token"):
            call()
    state = wait_until(client, a["token"], lambda c: c["completed"] == 2)
    assert len(state["jobs"]) == 2  # a's jobs survived every attempt
    data, audio = client.predict(a["token"], job_a, api_name="/job")
    assert data["result"]["text"] and audio.endswith(".flac")


def test_resubmit_with_another_model_and_cancel(app, clips):
    client = app.client()
    sub = submit(client, [clips[1].path])
    wait_until(client, sub["token"], lambda c: c["completed"] == 1)
    again = client.predict(sub["token"], sub["jobs"][0]["id"], "transformers/whisper-tiny.en", api_name="/resubmit")
    assert again["model"] == "transformers/whisper-tiny.en" and again["id"] != sub["jobs"][0]["id"]
    state = wait_until(client, sub["token"], lambda c: c["completed"] == 2)
    texts = [client.predict(sub["token"], j["id"], api_name="/job")[0]["result"]["text"] for j in state["jobs"]]
    assert all(score(clips[1].reference, t).wer <= 0.25 for t in texts)
    with pytest.raises(AppError, match="only queued jobs can be cancelled"):
        client.predict(sub["token"], again["id"], api_name="/cancel_job")


def test_a_truncated_file_keeps_its_repair_warning_in_its_batch_job(app, clips, tmp_path):
    """The note decoding made (the Transcribe tab shows it) stays with the job: in /job, in the
    Batch tab's job view, in its result, in both exports and in a resubmitted job."""
    import csv

    from explorer.audio import load_audio
    from explorer.ui.batch import job_view

    whole = tmp_path / "whole.wav"
    sf.write(whole, clips[1].samples, 16000, subtype="PCM_16")
    truncated = tmp_path / "truncated.wav"
    data = whole.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])  # its last third cut off
    expected = load_audio(truncated).warnings
    assert len(expected) == 1 and "truncated or damaged" in expected[0]

    client = app.client()
    sub = submit(client, [truncated])
    token, job_id = sub["token"], sub["jobs"][0]["id"]
    wait_until(client, token, lambda c: c["completed"] == 1)
    data, _ = client.predict(token, job_id, api_name="/job")
    assert data["warnings"] == list(expected) and data["result"]["warnings"][: len(expected)] == list(expected)
    assert data["result"]["text"]
    view = job_view(data)
    assert view["warnings"] == f"⚠️ {expected[0]}" and view["transcript"] == data["result"]["text"]

    again = client.predict(token, job_id, "", api_name="/resubmit")
    wait_until(client, token, lambda c: c["completed"] == 2)
    assert client.predict(token, again["id"], api_name="/job")[0]["warnings"] == list(expected)

    paths = client.predict(token, "", api_name="/export_jobs")
    jobs = json.loads(Path(next(p for p in paths if p.endswith(".json"))).read_text())
    assert [j["warnings"] for j in jobs] == [list(expected)] * 2
    with open(next(p for p in paths if p.endswith(".csv")), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["warnings"] for r in rows] == [expected[0]] * 2


def test_kill_9_mid_batch_then_restart_loses_and_duplicates_nothing(models_dir, clips, tmp_path):
    env = dict(DATA_DIR=tmp_path / "data", BATCH_SIZE=1, NUM_WORKERS=1)
    first = RunningApp(models_dir, tmp_path / "first.log", **env)
    try:
        client = first.client()
        sub = submit(client, [c.path for c in clips] * 3)
        token = sub["token"]
        before = wait_until(client, token, lambda c: c["completed"] >= 3, timeout=300)
        first.kill()  # SIGKILL in the middle of the batch
    finally:
        first.stop()
    assert before["counts"]["queued"] > 0, "the batch finished before the kill: nothing was tested"
    completed_before = {j["id"] for j in before["jobs"] if j["status"] == "completed"}

    second = RunningApp(models_dir, tmp_path / "second.log", **env)
    try:
        client = second.client()
        texts_before = {i: client.predict(token, i, api_name="/job")[0]["result"]["text"] for i in completed_before}
        wait_until(client, token, lambda c: c["queued"] == c["processing"] == 0, timeout=300)
        jobs = exported(client, token)
    finally:
        second.stop()
    assert [j["id"] for j in jobs] == [j["id"] for j in sub["jobs"]]  # nothing lost, nothing added
    assert all(j["status"] == "completed" for j in jobs)
    assert {j["id"]: j["result"]["text"] for j in jobs if j["id"] in completed_before} == texts_before
    assert all(j["attempts"] == 1 for j in jobs if j["id"] in completed_before)
    assert max(j["attempts"] for j in jobs) <= 2


def test_two_servers_share_one_redis_job_store(models_dir, clips, tmp_path, redis_url):
    """JOB_STORE on Redis: two app processes, each with its own DATA_DIR (no shared files), serve
    one queue; every job runs once, on one of them, and either serves any job's audio."""
    store_url = f"{redis_url}?prefix=apps-{time.monotonic_ns()}:"
    # One SESSION_SECRET: a token from either app is a session on both.
    env = dict(JOB_STORE=store_url, BATCH_SIZE=1, NUM_WORKERS=1, SESSION_SECRET="shared-" + "s" * 32)
    apps = [RunningApp(models_dir, tmp_path / f"app{n}.log", DATA_DIR=tmp_path / f"data{n}", **env) for n in range(2)]
    try:
        first, second = (app.client() for app in apps)
        sub = submit(first, [c.path for c in clips] * 2)
        state = wait_until(second, sub["token"], lambda c: c["completed"] == 10, timeout=300)
        data, audio = second.predict(sub["token"], sub["jobs"][0]["id"], api_name="/job")
    finally:
        for app in apps:
            app.stop()
    assert state["counts"]["completed"] == 10 and audio.endswith(".flac")
    assert score(clips[0].reference, data["result"]["text"]).wer <= 0.25
    store, _ = open_store(store_url, tmp_path)
    jobs = store.list(session_key(sub["token"]))
    assert [j.id for j in jobs] == [j["id"] for j in sub["jobs"]] and all(j.attempts == 1 for j in jobs)
    assert len({j.worker for j in jobs}) == 2, "one server took every job: nothing was shared"
    assert store.workers(max_age=3600) == []  # SIGTERM stopped each app's runner: it left the registry

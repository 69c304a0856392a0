"""What a stranger may start, through the running app and gradio_client: only server-issued session
tokens, bounded batches, queues and watchers, and /health detail only with ADMIN_TOKEN.

The app runs with no batch workers (BATCH_WORKERS=0): submitted jobs stay queued, so the
unfinished-jobs bound and long-lived watchers are deterministic, and no model run is needed."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from explorer.jobs import open_store
from explorer.sessions import UNKNOWN_TOKEN
from tests.running_app import RunningApp

TINY = "faster-whisper/tiny.en"
ADMIN = "admin-" + "k" * 20
WATCHERS = 2
JOB_ROWS = 3
SESSIONS = 20
HANG_GUARD = 180  # seconds: a loop that would otherwise wait for ever fails instead (not a speed target)


@pytest.fixture(scope="module")
def bounded(models_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bounded")
    running = RunningApp(
        models_dir, folder / "app.log", DATA_DIR=folder / "data", BATCH_WORKERS=0, MAX_BATCH_FILES=3,
        MAX_QUEUED_JOBS=4, MAX_WATCHERS_PER_SESSION=WATCHERS, MAX_WATCHERS=50, ADMIN_TOKEN=ADMIN, MAX_JOB_ROWS=JOB_ROWS,
        MAX_SESSIONS=SESSIONS,
    )  # fmt: skip
    running.data_dir = folder / "data"
    yield running
    running.stop()


def submit(client, paths, token=""):
    files = [handle_file(str(p)) for p in paths]
    return client.predict(files, TINY, "en", "transcribe", 1, False, True, token, api_name="/submit_batch")


def stored_ids(app) -> set[str]:
    store, _ = open_store("", app.data_dir)
    return store.ids()


def until(condition, what: str):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def test_forged_and_tampered_tokens_are_refused_before_anything_is_read(bounded, clips):
    client = bounded.client()
    real = submit(client, [clips[0].path])
    job_id = real["jobs"][0]["id"]
    token_id, _, mac = real["token"].partition(".")
    tampered = f"{token_id}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
    before = stored_ids(bounded)
    for forged in ("my-own-weak-token", tampered, real["token"] + "x"):
        calls = {
            "/jobs": lambda: client.predict(forged, "", api_name="/jobs"),
            "/job": lambda: client.predict(forged, job_id, api_name="/job"),
            "/cancel_job": lambda: client.predict(forged, job_id, api_name="/cancel_job"),
            "/delete_job": lambda: client.predict(forged, "*", api_name="/delete_job"),
            "/resubmit": lambda: client.predict(forged, job_id, "", api_name="/resubmit"),
            "/export_jobs": lambda: client.predict(forged, "", api_name="/export_jobs"),
            "/watch_batch": lambda: client.submit(forged, real["batch"], api_name="/watch_batch").result(),
            "/submit_batch": lambda: submit(client, [clips[1].path], forged),
        }
        for name, call in calls.items():
            with pytest.raises(AppError, match=UNKNOWN_TOKEN):
                call()
                pytest.fail(f"{name} took {forged!r}")
    assert stored_ids(bounded) == before  # nothing added, cancelled away or deleted
    state = client.predict(real["token"], "", api_name="/jobs")
    assert [(j["id"], j["status"]) for j in state["jobs"]] == [(job_id, "queued")]  # the real session is intact


def test_files_per_batch_and_unfinished_jobs_per_session_are_bounded(bounded, clips):
    client = bounded.client()
    before = stored_ids(bounded)
    with pytest.raises(AppError, match=r"4 files in one batch; the limit is 3 \(MAX_BATCH_FILES\)"):
        submit(client, [clips[0].path] * 4)
    assert stored_ids(bounded) == before
    first = submit(client, [c.path for c in clips[:3]])
    token = first["token"]
    second = submit(client, [clips[3].path], token)  # 4 unfinished: the limit
    assert second["token"] == token
    with pytest.raises(AppError, match=r"this session has 4 unfinished job\(s\) and may hold 4 \(MAX_QUEUED_JOBS\)"):
        submit(client, [clips[4].path], token)
    with pytest.raises(AppError, match="MAX_QUEUED_JOBS"):  # a resubmit is a queued job like any other
        client.predict(token, first["jobs"][0]["id"], "", api_name="/resubmit")
    client.predict(token, first["jobs"][0]["id"], api_name="/cancel_job")  # one finishes: room for one
    again = client.predict(token, first["jobs"][1]["id"], "", api_name="/resubmit")
    assert again["status"] == "queued"
    assert client.predict(token, "", api_name="/jobs")["counts"]["queued"] == 4
    other = submit(client, [clips[4].path])  # another session has its own bound
    assert other["token"] != token


def test_a_job_table_read_is_a_page_of_max_job_rows(bounded, clips):
    """/jobs answers at most MAX_JOB_ROWS rows from its offset; the counts and total are the session's."""
    client = bounded.client()
    first = submit(client, [c.path for c in clips[:3]])
    token = first["token"]
    second = submit(client, [clips[3].path], token)
    pages = [client.predict(token, "", offset, api_name="/jobs") for offset in (0, JOB_ROWS)]
    assert [len(p["jobs"]) for p in pages] == [JOB_ROWS, 4 - JOB_ROWS]
    assert all(p["total"] == 4 and p["counts"]["queued"] == 4 for p in pages)
    assert [j["id"] for p in pages for j in p["jobs"]] == [j["id"] for j in first["jobs"] + second["jobs"]]


def watch_over_http(url: str, token: str, batch: str, stay: threading.Event | None = None) -> tuple[str, object]:
    """One /watch_batch through Gradio's REST API (POST /call, then its event stream): ("error",
    message) when refused, ("generating", first update) when taken. A taken watcher keeps its
    connection until `stay` is set, then hangs up: a client that leaves. (Plain HTTP, not
    gradio_client: its shared event stream dies (KeyError in stream_messages, gradio_client 2.5)
    when hundreds of events answer at once.)"""
    with httpx.Client(timeout=HANG_GUARD) as http:
        posted = http.post(f"{url}gradio_api/call/watch_batch", json={"data": [token, batch]})
        if posted.status_code == 503:
            return "error", "queue is full"
        event_id = posted.json()["event_id"]
        with http.stream("GET", f"{url}gradio_api/call/watch_batch/{event_id}") as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[len("event:") :].strip()
                elif line.startswith("data:") and event in ("error", "generating", "complete"):
                    data = json.loads(line[len("data:") :])
                    if event == "generating" and stay is not None:
                        stay.wait(HANG_GUARD)
                    return event, data
    return "closed", None


def test_two_hundred_watchers_from_one_session_are_bounded_and_released(bounded, clips):
    client = bounded.client()
    sub = submit(client, [clips[0].path])  # no workers: the batch never finishes, a watcher stays
    token, batch = sub["token"], sub["batch"]
    leave = threading.Event()
    with ThreadPoolExecutor(max_workers=50) as pool:
        try:
            watches = [pool.submit(watch_over_http, bounded.url, token, batch, leave) for _ in range(200)]
            until(lambda: sum(w.done() for w in watches) >= 200 - WATCHERS, "the refused watchers to end")
            refused = [w.result() for w in watches if w.done()]
            assert len(refused) == 200 - WATCHERS, refused[:3]
            ours = [m for event, m in refused if event == "error" and "watchers open" in str(m)]
            assert len(ours) >= len(refused) // 2, refused[:3]  # most by the watcher bound ...
            expected = f"this session already has {WATCHERS} watchers open (the limit is {WATCHERS}): close one first"
            assert all(expected in str(m) for m in ours), ours[:1]
            assert all(e == "error" and ("watchers open" in str(m) or "queue is full" in str(m).lower())
                       for e, m in refused)  # ... the rest by the full queue, none served  # fmt: skip

            # The server keeps serving while the two watch: /health and a real transcription.
            assert client.predict(api_name="/health")["status"] == "ok"
            result = client.predict(handle_file(str(clips[1].path)), TINY, "en", "transcribe", 1, False, True,
                                    api_name="/transcribe")  # fmt: skip
            assert result["text"].strip()
        finally:
            leave.set()  # the two open watchers hang up
        taken = [r for r in (w.result() for w in watches) if r[0] == "generating"]
    assert len(taken) == WATCHERS and all(update["counts"]["queued"] == 1 for _, (update,) in taken)

    # Their slots came back when their clients left: a new watcher is taken again.
    until(lambda: watch_over_http(bounded.url, token, batch)[0] == "generating", "the left watchers' slots")


def test_health_shows_counts_to_anyone_and_worker_detail_only_with_the_admin_token(bounded, models_dir, tmp_path):
    client = bounded.client()
    public = client.predict(api_name="/health")
    for wrong in ("", "wrong-" + "k" * 20, ADMIN[:-1]):
        assert client.predict(wrong, api_name="/health").keys() == public.keys()  # no "detail"
    assert "detail" not in public and public["status"] == "ok" and public["workers"] == 0  # BATCH_WORKERS=0
    text = repr(public)
    assert str(bounded.proc.pid) not in text and socket.gethostname() not in text and "/" not in text
    admin = client.predict(ADMIN, api_name="/health")
    assert admin["detail"]["job_store"] == "sqlite" and admin["detail"]["workers"] == []
    assert {k: v for k, v in admin.items() if k != "detail"}.keys() == public.keys()


    # Without ADMIN_TOKEN (unset), no token opens the detail.
    unset = RunningApp(models_dir, tmp_path / "unset.log", DATA_DIR=tmp_path / "data", BATCH_WORKERS=1)
    try:
        shown = [unset.client().predict(token, api_name="/health") for token in ("", "None", ADMIN)]
    finally:
        unset.stop()
    assert all("detail" not in h and h["workers"] == 1 and str(unset.proc.pid) not in repr(h) for h in shown)


def test_gradio_sessions_held_in_memory_are_bounded_by_max_sessions(bounded):
    """Gradio keeps a copy of every component's config per session (~0.5 MB here, see
    bench/bench_memory.py) until the session is pushed out; MAX_SESSIONS bounds how many it holds."""

    def held() -> int:
        return bounded.client().predict(ADMIN, api_name="/health")["detail"]["sessions_in_memory"]

    for _ in range(SESSIONS + 10):  # each Client is a new session
        held()
    assert held() == SESSIONS


def test_the_models_list_names_no_server_path(bounded, models_dir):
    models = bounded.client().predict(api_name="/models")
    ready = [m for m in models if m["status"] == "ready"]
    assert ready and all(m["reason"] == "packaged weights in a folder on this server" for m in ready
                         if "packaged" in m["reason"])  # fmt: skip
    assert not any(str(models_dir) in m["reason"] or "/.cache" in m["reason"] for m in models)


def queue_join(http: httpx.Client, session: str, fn_index: int, data: list) -> httpx.Response:
    """One request joining Gradio's queue for `session` (the web page's protocol: join, then read
    the session's event stream at queue/data)."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    return http.post("gradio_api/queue/join", json=body)


def test_two_hundred_stream_requests_from_one_session_are_bounded_and_stop_when_it_leaves(bounded, clips):
    """/v1/live: one open stream per client (MAX_LIVE_STREAMS_PER_SESSION=1), the other 199 get 429.
    /simulate_stream: 200 joins from one Gradio session are held to the queue's size (the rest get
    the queue-full 503) and one model slot; when the session's event stream hangs up, its queued
    streams are dropped and the running one stops, so no model call follows."""
    client = bounded.client()
    with httpx.Client(base_url=bounded.url, timeout=HANG_GUARD) as http, ThreadPoolExecutor(max_workers=50) as pool:
        opens = list(pool.map(lambda _: http.post("/v1/live", params={"model": TINY}), range(200)))
        assert sorted(r.status_code for r in opens) == [200] + [429] * 199, {r.status_code for r in opens}
        refused = {r.json()["error"]["message"] for r in opens if r.status_code == 429}
        assert refused == {"this session has 1 live streams open (MAX_LIVE_STREAMS_PER_SESSION): close one first"}
        (opened,) = [r.json()["stream_id"] for r in opens if r.status_code == 200]
        assert http.post(f"/v1/live/{opened}/close").status_code == 200
        again = http.post("/v1/live", params={"model": TINY})  # its place came back
        assert again.status_code == 200 and http.post(f"/v1/live/{again.json()['stream_id']}/close").status_code == 200

        def runs() -> tuple[int, int]:
            health = client.predict(ADMIN, api_name="/health")
            return health["models_running"], sum(m["runs"] for m in health["detail"]["loaded_models"])

        config = http.get("config").json()
        (fn_index,) = [d["id"] for d in config["dependencies"] if d.get("api_name") == "simulate_stream"]
        with clips[0].path.open("rb") as f:  # 7.1 s: each stream would take at least that long
            (uploaded,) = http.post("gradio_api/upload", files={"files": (clips[0].path.name, f, "audio/wav")}).json()
        data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, TINY, "en", 1.0]
        session = "stream-swarm-" + "0" * 12
        joins = list(pool.map(lambda _: queue_join(http, session, fn_index, data), range(200)))
        taken = [j for j in joins if j.status_code == 200]
        full = [j for j in joins if j.status_code != 200]
        # At most QUEUE_MAX_SIZE (default 32) waiting and NUM_WORKERS (1) running, taken out of the queue
        assert 1 <= len(taken) <= 32 + 1 and len(taken) + len(full) == 200
        assert all(j.status_code == 503 and "Queue is full" in j.text for j in full), full[0].text

        # Read the session's events until a stream has run a pass, then hang up: the client leaves.
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                    break
        left = time.monotonic()
        until(lambda: runs()[0] == 0 and http.get("gradio_api/queue/status").json()["queue_size"] == 0,
              "the left session's streams to stop")  # fmt: skip
        stopped = time.monotonic() - left
        after = runs()[1]
        time.sleep(3)  # three more passes, had a stream gone on
        assert runs()[1] == after, "a model call followed the session's leaving"
        print(f"{len(taken)} streams taken, {len(full)} refused; stopped {stopped:.2f} s after the client left")
        assert stopped < 5, f"the streams stopped {stopped:.1f} s after their client left"
    assert client.predict(handle_file(str(clips[1].path)), TINY, "en", "transcribe", 1, False, True,
                          api_name="/transcribe")["text"].strip()  # fmt: skip

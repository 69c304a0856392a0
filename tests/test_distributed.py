"""The Ray backend (explorer.distributed) on a real local Ray cluster with real tiny.en: the same
rows as the in-process evaluation, failures recorded, and Ray kept out of the app."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest

from explorer.evaluate import Utterance, evaluate, summarize
from explorer.types import TranscribeOptions
from gradio_client import handle_file

from tests.running_app import RunningApp
from tests.test_evaluate import ROOT, run_cli

ray = pytest.importorskip("ray", reason="the Ray backend is optional: pip install -r requirements-dev.txt")

MODEL = "faster-whisper/tiny.en"
OPTIONS = TranscribeOptions(language="en", beam_size=1)


def test_app_and_local_backend_import_nothing_from_ray():
    code = "import explorer.evaluate, explorer.__main__, explorer.service, sys; assert 'ray' not in sys.modules, 'ray imported'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_cli_on_ray_writes_rows_with_node_ids_parquet_and_failures(clips, models_dir, tmp_path):
    """Runs before the in-process cluster below starts: the CLI starts (and stops) its own."""
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    manifest = tmp_path / "m.csv"
    audio = [str(c.path) for c in clips[:2]] + [str(bad)]
    pd.DataFrame({"audio": audio, "reference": [c.reference for c in clips[:2]] + ["anything"]}).to_csv(manifest, index=False)
    out = run_cli(models_dir, "--models", MODEL, "--data", manifest, "--out", tmp_path / "out", "--backend", "ray")
    assert out.returncode == 1, out.stderr[-3000:]  # one utterance failed; the rest completed
    rows = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert list(rows["id"]) == [c.path.stem for c in clips[:2]] + ["bad"]
    assert list(rows["error"] != "") == [False, False, True] and "bad.wav" in rows["error"].iloc[2]
    assert rows["node_id"].str.len().gt(0).all()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["meta"]["backend"] == "ray" and saved["summary"][0]["throughput_rtfx"] > 0
    assert saved["summary"][0]["failed"] == 1 and saved["summary"][0]["utterances"] == 2
    assert f"failed: {MODEL} bad:" in out.stderr


def _start_node(*args: str, env: dict) -> subprocess.Popen:
    """`ray start --block` (one CPU: room for one actor) in its own process group, so the test
    stops exactly what it started."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    command = [ray_cli, "start", "--block", "--num-cpus", "1", *args]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_node(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGTERM)  # the node drains for up to 30 s, then stops its processes
    try:
        node.wait(45)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def test_two_node_cluster_transcribes_on_both_nodes_from_the_cli_and_the_app(clips, models_dir, tmp_path):
    """A head and a second node on this machine (token auth off: loopback only), one CPU each, so
    the two actors (one CPU each) must run one per node: SPREAD scheduling alone put both on one
    node now and then. Ray Data starts actors asynchronously and feeds the first one up, which
    took all five rows once in CI (the second node joined, or its actor loaded, too late): the CLI
    here waits for both actors (RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S), so each takes some rows.
    Then the app, with RAY_ADDRESS pointing at the same cluster, evaluates through /evaluate
    (the Evaluate tab's code) and gets the CLI's hypotheses."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.update(MODELS_DIR=str(models_dir), HF_HUB_OFFLINE="1")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    head = _start_node("--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp_dir, env=env)
    nodes = [head]
    try:
        time.sleep(8)
        nodes.append(_start_node("--address", f"127.0.0.1:{port}", "--resources", '{"node2": 1}', env=env))
        time.sleep(8)
        manifest = tmp_path / "m.csv"
        pd.DataFrame({"audio": [str(c.path) for c in clips], "reference": [c.reference for c in clips]}).to_csv(manifest, index=False)
        args = ["eval", "--models", MODEL, "--data", manifest, "--out", tmp_path / "out", "--backend", "ray"]
        args += ["--address", f"127.0.0.1:{port}", "--actors", "2"]
        both_actors = {**env, "RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "120"}
        out = subprocess.run([sys.executable, "-m", "explorer", *map(str, args)], cwd=ROOT, env=both_actors, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        rows = pd.read_parquet(tmp_path / "out" / "results.parquet")
        assert len(rows) == 5 and (rows["error"] == "").all()
        assert rows["node_id"].nunique() == 2, rows[["id", "node_id"]]

        app = RunningApp(models_dir, tmp_path / "app.log", DATA_DIR=tmp_path / "data", RAY_ADDRESS=f"127.0.0.1:{port}",
                         RAY_ACTORS=2, RAY_AUTH_MODE="disabled", BATCH_WORKERS=0)  # fmt: skip
        try:
            files = [handle_file(str(c.path)) for c in clips] + [handle_file(str(_references(clips, tmp_path)))]
            api = app.client().predict(files, "", "", "", None, [MODEL], "en", 1, True, False, api_name="/evaluate")
        finally:
            app.stop()
        assert api["meta"]["backend"] == "ray"
        by_id = {r["id"]: r for r in api["utterances"]}
        assert {i: by_id[i]["hypothesis"] for i in rows["id"]} == dict(zip(rows["id"], rows["hypothesis"]))
        assert [r["id"] for r in api["utterances"]] == list(rows["id"])  # in dataset order, as they arrived or not
    finally:
        for node in reversed(nodes):
            _stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _references(clips, folder):
    """The uploaded dataset's manifest: the clips by file name, with their references."""
    manifest = folder / "upload.csv"
    pd.DataFrame({"audio": [c.path.name for c in clips], "reference": [c.reference for c in clips]}).to_csv(manifest, index=False)
    return manifest


@pytest.fixture(scope="module")
def ray_cluster(models_dir):
    from explorer import distributed

    saved = {k: os.environ.get(k) for k in ("MODELS_DIR", "HF_HUB_OFFLINE")}
    os.environ.update(MODELS_DIR=str(models_dir), HF_HUB_OFFLINE="1")  # handed to the workers
    distributed.connect(num_cpus=2)
    yield
    ray.shutdown()
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def test_ray_and_in_process_give_the_same_hypotheses_and_wer(ray_cluster, clips, service):
    """The same computation on both backends: the actors run at the driver's CPU_THREADS (not
    the OMP_NUM_THREADS=1 Ray gives them), so both run environments are equal, and only then
    are the words compared. A difference in environment is reported, not compared away."""
    from explorer.distributed import evaluate_on_ray
    from explorer.evaluate import compare_runs

    utterances = [Utterance(c.path.stem, c.path, c.reference) for c in clips]
    local = evaluate(service, [MODEL], utterances, OPTIONS)
    run = evaluate_on_ray([MODEL], utterances, OPTIONS, actors=1)
    diff = compare_runs(local, run.rows)
    assert diff.same_environment, diff.report()
    (environment,) = diff.environments[0]
    assert f"· {service.settings.cpu_threads} threads ·" in environment
    columns = ["model", "id", "kind", "reference", "hypothesis", "wer", "substitutions", "deletions", "insertions",
               "reference_words", "hypothesis_words", "audio_seconds", "error", "environment"]  # fmt: skip
    pd.testing.assert_frame_equal(run.rows[columns], local[columns])
    assert diff.changed == () and diff.pairs == 5
    assert run.rows["node_id"].eq(ray.get_runtime_context().get_node_id()).all()
    summary, expected = run.summary().iloc[0], summarize(local).iloc[0]
    assert summary["wer"] == expected["wer"] and summary["reference_words"] == 71
    assert summary["rtfx"] > 0 and 0 < summary["throughput_rtfx"] < summary["rtfx"]  # wall time includes the load


def test_a_bad_file_fails_alone_on_ray(ray_cluster, clips, tmp_path):
    from explorer.distributed import evaluate_on_ray

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    utterances = [Utterance("bad", bad, "anything")] + [Utterance(c.path.stem, c.path, c.reference) for c in clips[:2]]
    rows = evaluate_on_ray([MODEL], utterances, OPTIONS).rows
    assert list(rows["id"]) == ["bad"] + [c.path.stem for c in clips[:2]]
    assert "bad.wav" in rows["error"].iloc[0] and (rows["error"].iloc[1:] == "").all()
    assert rows["hypothesis"].iloc[1:].str.len().gt(0).all() and rows["wer"].iloc[1:].notna().all()


def _transcriber_processes() -> list:
    """The pool's actor processes: Ray titles them after the class (ray::MapWorker(MapBatches(Transcriber)))."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "Transcriber" in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def test_killing_a_worker_mid_run_loses_and_duplicates_nothing(ray_cluster, long_speech, clips):
    """SIGKILL of the transcribing actor while it works: Ray restarts it and the utterance it held
    is tried again, so every utterance ends with exactly one row, and here all of them succeed."""
    from explorer.distributed import gathered, iter_evaluate_on_ray
    from explorer.scoring import score

    reference = " ".join(c.reference for c in clips)
    utterances = [Utterance(f"u{i}", long_speech, reference) for i in range(4)]  # ~27 s each: 2-4 s of work
    rows, killed = [], []
    for row in iter_evaluate_on_ray([MODEL], utterances, OPTIONS, actors=1):
        rows.append(row)
        if not killed:
            time.sleep(0.5)  # into the next utterance
            killed = _transcriber_processes()
            assert killed, "no Transcriber actor process found"
            for proc in killed:
                proc.kill()
    assert sorted(r.index for r in rows) == [0, 1, 2, 3]  # one row each: none lost, none twice
    assert not any(p.is_running() and p.status() != "zombie" for p in killed)
    run = gathered([MODEL], rows)
    assert (run.rows["error"] == "").all(), run.rows["error"].tolist()
    assert run.rows["hypothesis"].nunique() == 1  # the same audio gives the same text, retried or not
    assert score(reference, run.rows["hypothesis"].iloc[0]).wer <= 0.15


def test_rows_gathered_in_any_order_come_out_in_dataset_order_with_each_models_wall_time():
    from explorer.distributed import LOST, RayRow, gathered
    from explorer.evaluate import failed_result, utterance_result

    # Real words: the leaderboard's normaliser joins runs of single letters ("a b c" -> "abc").
    utts = [Utterance(f"u{i}", b"", "the cat sat") for i in range(3)]
    arrived = [
        RayRow(2, utterance_result("m2", utts[2], "the cat sat", 1.0, 0.5, "en"), "n1", 4.0),
        RayRow(1, failed_result("m1", utts[1], LOST), "", 9.0),
        RayRow(0, utterance_result("m1", utts[0], "the cat", 1.0, 0.5, "en"), "n2", 3.0),
        RayRow(0, utterance_result("m2", utts[0], "the cat sat", 1.0, 0.5, "en"), "n1", 2.0),
    ]
    run = gathered(["m1", "m2"], arrived)
    assert list(zip(run.rows["model"], run.rows["id"])) == [("m1", "u0"), ("m1", "u1"), ("m2", "u0"), ("m2", "u2")]
    assert list(run.rows["node_id"]) == ["n2", "", "n1", "n1"] and run.wall_seconds == {"m1": 9.0, "m2": 4.0}
    assert run.rows["error"].iloc[1].startswith("lost:") and run.rows["wer"].iloc[0] == pytest.approx(1 / 3)

"""The running app (`python app.py`, offline) through gradio_client: the way API users meet it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from explorer.scoring import corpus_wer
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parent.parent
TINY = "faster-whisper/tiny.en"


def transcribe(client, path, model=TINY, language="auto", beam_size=1):
    return client.predict(
        handle_file(str(path)), model, language, "transcribe", beam_size, False, True, api_name="/transcribe"
    )


def test_tiny_en_through_the_api_is_under_10_percent_wer(app, clips):
    client = app.client()
    results = [transcribe(client, c.path, beam_size=5) for c in clips]
    score = corpus_wer([c.reference for c in clips], [r["text"] for r in results])
    assert score.wer <= 0.10, (score, [r["text"] for r in results])
    first = results[0]
    assert first["model"] == TINY and first["language"] == "en"
    assert first["segments"] and first["segments"][0]["end"] > first["segments"][0]["start"]


def test_transcribe_equals_a_direct_faster_whisper_call_with_the_same_settings(app, clips, models_dir):
    """/transcribe adds nothing to the words: the same weights, options and threads given to
    faster-whisper directly (the engine's condition_on_previous_text=False included) give the
    same segments, in a run environment the result states."""
    from faster_whisper import WhisperModel

    from explorer import zoo
    from explorer.audio import load_audio

    client = app.client()
    api = [transcribe(client, c.path, language="en", beam_size=5) for c in clips[:3]]
    env = api[0]["environment"]
    assert env["engine"] == "faster-whisper" and env["compute_type"] == "int8" and env["device"] == "cpu"
    model = WhisperModel(str(zoo.local_weights("whisper-tiny.en-ct2", models_dir)), device="cpu",
                         compute_type=env["compute_type"], cpu_threads=env["threads"])  # fmt: skip
    for c, result in zip(clips, api):
        segments, _ = model.transcribe(
            load_audio(c.path).samples, language="en", beam_size=5, vad_filter=True, condition_on_previous_text=False
        )
        direct = [(round(s.start, 3), round(s.end, 3), s.text) for s in segments]
        assert [(round(s["start"], 3), round(s["end"], 3), s["text"]) for s in result["segments"]] == direct, c.path.name


def test_stream_endpoint_yields_growing_text_then_the_result(app, long_speech, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, long_speech, 16000)
    client = app.client()
    job = client.submit(handle_file(str(path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe_stream")
    outputs = list(job)
    texts = [o[0] for o in outputs]
    assert len(outputs) >= 3
    assert texts[0] and len(texts[0]) < len(texts[-1])
    result = outputs[-1][5]
    assert result["text"] == texts[-1]
    assert result["metrics"]["ttft_seconds"] < result["metrics"]["processing_seconds"]
    downloads = outputs[-1][4]
    assert sorted(Path(d).suffix for d in downloads) == [".json", ".srt", ".txt", ".vtt"]
    srt = Path(downloads[[Path(d).suffix for d in downloads].index(".srt")]).read_text()
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S", srt)


def test_models_and_health_endpoints(app, models_dir):
    client = app.client()
    models = {m["key"]: m for m in client.predict(api_name="/models")}
    assert models[TINY]["status"] == "ready"
    assert models["faster-whisper/large-v3"]["status"] == "unavailable"
    assert "offline" in models["faster-whisper/large-v3"]["reason"]
    assert not any(str(models_dir) in m["reason"] for m in models.values())  # the public view names no server path
    health = client.predict(api_name="/health")  # anyone: status and counts
    assert health["status"] == "ok" and health["hub_online"] is False and "detail" not in health
    assert health["workers"] == 1 and health["job_store_problem"] == "" and str(app.proc.pid) not in repr(health)
    detail = client.predict(ADMIN_TOKEN, api_name="/health")["detail"]  # the admin: as before
    assert isinstance(detail["loaded_models"], list) and isinstance(detail["failed_models"], dict)
    assert detail["job_store"] == "sqlite"
    (worker,) = detail["workers"]  # the app's own batch worker (BATCH_WORKERS=1), as it last reported
    assert worker["pid"] == app.proc.pid and worker["host"] == socket.gethostname()
    assert worker["jobs_done"] >= 0 and worker["seen_seconds_ago"] < 60


def _bad_inputs(tmp_path: Path, clip: Path) -> list[tuple[str, Path, str]]:
    rng = np.random.default_rng(1)
    cases = []

    def add(name, data: bytes, pattern):
        path = tmp_path / name
        path.write_bytes(data)
        cases.append((name, path, pattern))

    add("empty.wav", b"", r"empty")
    add("notes.wav", b"this is a text file, not audio\n" * 20, r"not audio|could not decode")
    add("random.mp3", rng.bytes(50_000), r"not audio|could not decode")
    png = b"\x89PNG\r\n\x1a\n" + rng.bytes(5000)
    add("image.png", png, r"not audio|could not decode")
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(16000 * 61, dtype=np.float32), 16000)  # the test app's limit is 60 s
    cases.append(("long.wav", long, r"limit|too long|MAX_AUDIO_SECONDS"))
    big = tmp_path / "big.wav"
    sf.write(big, rng.normal(0, 0.1, 16000 * 45 * 4).astype(np.float32), 16000, subtype="FLOAT")  # ~11 MB > 5 MB
    cases.append(("big.wav", big, r"(?i)size|MB|too large"))
    return cases


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(app, clips, tmp_path):
    client = app.client()
    for name, path, pattern in _bad_inputs(tmp_path, clips[0].path):
        with pytest.raises(Exception) as info:
            transcribe(client, path)
        assert re.search(pattern, str(info.value), re.I), f"{name}: {info.value!r}"
    for bad_args, pattern in [
        ({"model": "no/such-model"}, r"unknown model"),
        ({"model": "faster-whisper/large-v3"}, r"unavailable"),
        ({"model": "faster-whisper/base", "language": "xx"}, r"does not support language"),
    ]:
        with pytest.raises(AppError, match=pattern):
            transcribe(client, clips[1].path, **bad_args)
    ok = transcribe(client, clips[1].path, beam_size=5)
    assert corpus_wer([clips[1].reference], [ok["text"]]).wer <= 0.25, ok["text"]


def test_damaged_audio_is_transcribed_with_a_warning(app, clips, tmp_path):
    data = clips[0].path.read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(data[: len(data) // 2])
    result = transcribe(app.client(), truncated)
    assert result["warnings"], "a truncated file must not be used silently"
    assert result["text"]


def test_readme_gradio_client_example_runs(app):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "gradio_client" in b)
    example = example.replace("http://127.0.0.1:7860/", app.url)
    sample = ROOT / "explorer" / "samples" / "librivox-austen-0870.wav"
    example = example.replace("speech.wav", str(sample))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(example)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "dashwood" in out.stdout.lower()


def test_a_flood_waits_its_turn_and_a_full_queue_says_so(models_dir, long_speech, tmp_path):
    from tests.running_app import RunningApp

    path = tmp_path / "long.wav"
    sf.write(path, long_speech, 16000)
    small = RunningApp(models_dir, tmp_path / "app.log", QUEUE_MAX_SIZE=1, NUM_WORKERS=1)
    try:
        client = small.client()
        jobs = [
            client.submit(handle_file(str(path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe")
            for _ in range(5)
        ]
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.result(timeout=120)["text"])
            except Exception as exc:  # noqa: BLE001 - the refusal's type varies by where it is raised
                outcomes.append(exc)
        refused = [o for o in outcomes if isinstance(o, Exception)]
        done = [o for o in outcomes if isinstance(o, str)]
        assert done and all(d == done[0] for d in done)
        assert refused and all(re.search(r"queue is full", str(e), re.I) for e in refused), refused
        assert transcribe(client, clips_path())["text"]  # and it serves again once the flood is over
    finally:
        small.stop()


def clips_path() -> Path:
    return ROOT / "explorer" / "samples" / "librivox-austen-0890.wav"


def compare(client, path, models, reference="", language="en", beam_size=1):
    return client.predict(handle_file(str(path)), models, reference, language, beam_size, True, api_name="/compare")


def test_compare_endpoint_scores_and_aligns_each_model(app, clips):
    clip = clips[0]
    out = compare(app.client(), clip.path, [TINY, "faster-whisper/base"], clip.reference)
    assert out["reference"] == clip.reference and out["against"] == "reference"
    rows = {r["model"]: r for r in out["rows"]}
    assert set(rows) == {TINY, "faster-whisper/base"}
    for key, row in rows.items():
        assert row["wer"] <= 0.2, row
        assert row["rtfx"] > 0 and row["against"] == "reference"
        steps = out["alignments"][key]
        assert steps and all(op in ("equal", "substitute", "insert", "delete") for op, _, _ in steps)
        assert sum(op == "substitute" for op, _, _ in steps) == row["substitutions"]
    assert [r["model"] for r in out["results"]] == [TINY, "faster-whisper/base"]
    assert out["results"][0]["text"] == rows[TINY]["text"]


def test_compare_names_an_unknown_model_and_the_server_keeps_serving(app, clips):
    client = app.client()
    with pytest.raises(AppError, match=r"no/such-model.*unknown model"):
        compare(client, clips[1].path, [TINY, "no/such-model"])
    with pytest.raises(AppError, match=r"faster-whisper/large-v3.*unavailable"):
        compare(client, clips[1].path, ["faster-whisper/large-v3"])
    assert transcribe(client, clips[1].path)["text"]


def test_worker_status_shows_what_runs_but_not_other_sessions_job_ids():
    from explorer.jobs import Running
    from explorer.jobs.codec import running_from_json, running_json
    from explorer.ui.widgets import running_summary

    assert running_summary(()) == ""
    assert running_summary((Running("faster-whisper/tiny.en", ("Ab_1", "c-D2")),)) == "faster-whisper/tiny.en (2 jobs)"
    both = (Running("m", ("x",)), Running("transformers/whisper-base", ("y",)))
    assert running_summary(both) == "m (1 job); transformers/whisper-base (1 job)"
    # Stored as JSON; a registry written before that holds "model: ids; model: ids", read as the same.
    assert running_from_json(running_json(both)) == both == running_from_json("m: x; transformers/whisper-base: y")
    assert running_from_json("") == running_from_json(running_json(())) == ()

"""What the app leaves on disk: every tab's API handler run on a real app whose temporary folder
(TMPDIR) and Gradio cache (GRADIO_TEMP_DIR) are fresh, with OUTPUT_TTL_MINUTES set to seconds.
Once that lifetime has passed, no file is left there that was not there at start; a deleted job
leaves nothing of its audio anywhere, at once."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from explorer.config import Settings
from explorer.ui.widgets import gradio_cache, output_folder, sweep_outputs
from tests.running_app import RunningApp

MODEL = "faster-whisper/tiny.en"
OUTPUT_TTL_SECONDS = 10  # outputs of the first calls are swept while later ones run


def files_under(*folders: Path) -> set[Path]:
    return {p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def holds(path: Path, samples: np.ndarray) -> bool:
    """Whether the file is audio that decodes to exactly these 16-bit samples (any container)."""
    try:
        found = sf.read(str(path), dtype="int16")[0]
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return False
    return found.shape == samples.shape and np.array_equal(found, samples)


def test_delete_cache_lifetime_follows_the_setting():
    assert Settings(output_ttl_minutes=60).delete_cache == (300, 3600)  # every 5 min, files over an hour old
    assert Settings(output_ttl_minutes=0.05).delete_cache == (1, 3)
    with pytest.raises(ValueError, match="OUTPUT_TTL_MINUTES"):
        Settings(output_ttl_minutes=0).validate()


def test_outputs_are_written_inside_gradios_cache(tmp_path, monkeypatch):
    """A file returned from inside the cache is served in place and tracked by delete_cache; one
    from elsewhere would be copied in, and the original would stay."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    folder = output_folder("transcript-")
    assert folder.is_dir() and folder.parent.parent == gradio_cache() == tmp_path / "cache"


def test_sweep_outputs_removes_folders_older_than_the_lifetime(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    old, new = output_folder("jobs-"), output_folder("compare-")
    (old / "jobs.csv").write_text("id")
    (new / "comparison.csv").write_text("model")
    now = time.time()
    os.utime(old, (now - 120, now - 120))
    assert sweep_outputs(60, now=now) == 1
    assert not old.exists() and (new / "comparison.csv").is_file()
    assert sweep_outputs(60, now=now + 61) == 1 and not new.exists()
    stub, upload = gradio_cache() / "tmpab12cd34", gradio_cache() / "0123abcd" / "tmpab12cd34"
    upload.parent.mkdir()
    stub.touch()
    upload.write_bytes(b"RIFF")
    assert sweep_outputs(60, now=now + 61) == 1  # gr.File's empty leftover, not an upload
    assert not stub.exists() and upload.is_file()


@pytest.fixture
def fresh_app(models_dir, tmp_path):
    folders = {name: tmp_path / name for name in ("tmp", "gradio", "data")}
    for folder in folders.values():
        folder.mkdir()
    app = RunningApp(
        models_dir, tmp_path / "app.log", TMPDIR=folders["tmp"], GRADIO_TEMP_DIR=folders["gradio"], DATA_DIR=folders["data"],
        OUTPUT_TTL_MINUTES=OUTPUT_TTL_SECONDS / 60, NUM_WORKERS=1, MAX_AUDIO_SECONDS=60,
    )  # fmt: skip
    yield app, folders
    app.stop()


def test_every_handler_leaves_nothing_past_its_lifetime_and_a_deleted_job_nothing_at_once(fresh_app, clips, tmp_path):
    from gradio_client import Client, handle_file

    app, folders = fresh_app
    temp = (folders["tmp"], folders["gradio"])
    at_start = files_under(*temp)  # the sample clips of the Examples, kept by Gradio for the page
    client = Client(app.url, verbose=False, download_files=False)  # nothing written on the client side
    clip = clips[3]  # ~6 s
    audio = handle_file(str(clip.path))

    # Transcribe, Compare, Browser (server streaming)
    assert client.predict(audio, MODEL, "en", "transcribe", 1, False, True, api_name="/transcribe")["text"]
    *_, downloads, result = client.predict(audio, MODEL, "en", "transcribe", 1, False, True, api_name="/transcribe_stream")
    assert result["text"] and len(downloads) == 4 and all(Path(d["path"]).is_relative_to(folders["gradio"]) for d in downloads)
    compared = client.predict(audio, [MODEL], clip.reference, "en", 1, True, api_name="/compare")
    assert compared["results"]
    updates = list(client.submit(audio, MODEL, "en", 1.0, api_name="/simulate_stream"))
    assert updates[-1][1]["text"]

    # Evaluate: a zip of audio + reference, unpacked for the run and removed after it
    dataset = tmp_path / "dataset.zip"
    with zipfile.ZipFile(dataset, "w") as z:
        z.write(clip.path, clip.path.name)
        z.writestr(clip.path.with_suffix(".txt").name, clip.reference)
    evaluated = client.predict([handle_file(str(dataset))], "", "", "", None, [MODEL], "en", 1, True, False, api_name="/evaluate")
    assert evaluated["summary"][0]["utterances"] == 1
    assert not list(folders["tmp"].glob("dataset-*"))  # gone as soon as the evaluation finished

    # Batch: submit, watch, open (the player's copy), export
    # Its file is new to the server (the clip with its first 32 samples' lowest bits set), so every
    # copy of its audio on disk can be told from the other tabs' uploads of the same clip.
    samples = sf.read(str(clip.path), dtype="int16")[0]
    samples[:32] |= 1
    distinct = tmp_path / "batch-clip.wav"
    sf.write(str(distinct), samples, 16000, subtype="PCM_16")
    sub = client.predict([handle_file(str(distinct))], MODEL, "en", "transcribe", 1, False, True, "", api_name="/submit_batch")
    token, job_id = sub["token"], sub["jobs"][0]["id"]
    assert list(client.submit(token, sub["batch"], api_name="/watch_batch"))[-1]["counts"]["completed"] == 1
    exports = client.predict(token, "", api_name="/export_jobs")
    assert {Path(e["path"]).name for e in exports} == {"jobs.csv", "jobs.json", "srt.zip"}
    assert all(Path(e["path"]).is_relative_to(folders["gradio"]) for e in exports)  # served in place
    data, copy = client.predict(token, job_id, api_name="/job")
    copy_path = Path(copy["path"])
    assert data["status"] == "completed" and copy_path.is_relative_to(folders["gradio"])

    # Deleting the job removes its audio at once: spool file, player copy (and Gradio's, the same
    # file). Found by content: every file on disk that decodes to the job's samples, whatever its
    # name or format. Before the deletion that is the spool, the player copy and the upload.
    audio_hash = sha256(copy_path)
    spool = folders["data"] / "spool" / f"{job_id}.flac"
    uploaded = {p for p in files_under(folders["gradio"]) if sha256(p) == sha256(distinct)}
    assert len(uploaded) == 1 and spool.is_file()
    holding = {p for p in files_under(*temp, folders["data"]) if holds(p, samples)}
    assert holding == {spool, copy_path} | uploaded, sorted(map(str, holding))  # the check finds every copy
    client.predict(token, job_id, api_name="/delete_job")
    everywhere = files_under(*temp, folders["data"])
    assert not [p for p in everywhere if job_id in str(p)], "a file named after the deleted job remains"
    assert not [p for p in everywhere if sha256(p) == audio_hash], "the deleted job's audio remains"
    # Only the upload, which like every upload goes at OUTPUT_TTL_MINUTES (checked below with the rest).
    assert {p for p in everywhere if holds(p, samples)} == uploaded

    # Past OUTPUT_TTL_MINUTES (swept every quarter of it), nothing new is left:
    # no download, export, upload or player copy (empty folders may stay).
    time.sleep(OUTPUT_TTL_SECONDS * 1.25 + 3)
    # onnxruntime's telemetry keeps a session marker (.ses, one small file) in the temporary folder.
    left = files_under(*temp) - at_start - {folders["tmp"] / ".ses"}
    assert not left, sorted(map(str, left))
    assert not [p for p in files_under(*temp, folders["data"]) if holds(p, samples)]  # the upload too
    assert "Traceback" not in app.log_path.read_text()

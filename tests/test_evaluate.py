"""Dataset evaluation: manifests in every accepted form, and the CLI on real speech and models."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from explorer.evaluate import DatasetError, load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_folder_csv_tsv_and_jsonl_give_the_same_utterances(clips, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for c in clips:
        shutil.copy(c.path, folder / c.path.name)
        (folder / c.path.name).with_suffix(".txt").write_text(c.reference + "\n")
    (tmp_path / "m.csv").write_text("audio,reference\n" + "".join(f"folder/{c.path.name},{c.reference}\n" for c in clips))
    (tmp_path / "m.tsv").write_text("path\ttext\n" + "".join(f"{c.path}\t{c.reference}\n" for c in clips))
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"audio": str(c.path), "text": c.reference}) + "\n" for c in clips))
    expected = sorted((c.path.stem, c.reference) for c in clips)
    for source in (folder, tmp_path / "m.csv", tmp_path / "m.tsv", tmp_path / "m.jsonl"):
        utterances = load_dataset(source)
        assert sorted((u.id, u.reference) for u in utterances) == expected, source
        assert all(u.audio.is_file() for u in utterances)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.csv", "audio,reference\nnope.wav,hello\n", r"row 1: audio file .*nope.wav does not exist"),
        ("m.csv", "file_name,words\nx.wav,hi\n", r"row 1: no audio column"),
        ("m.jsonl", '{"audio": "x.wav"\n', r"line 1: not JSON"),
        ("m.txt", "hello", r"expected a folder, or a .csv, .tsv or .jsonl manifest"),
        ("m.csv", "audio,reference\n", r"no utterances found"),
    ],
)
def test_bad_datasets_say_what_is_wrong(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_folder_without_references_names_the_files(clips, tmp_path):
    shutil.copy(clips[0].path, tmp_path / "a.wav")
    with pytest.raises(DatasetError, match=r"no .txt reference beside a.wav"):
        load_dataset(tmp_path)


def test_cli_evaluates_tiny_en_and_base_under_10_percent(clips, models_dir, tmp_path):
    manifest = tmp_path / "librivox.csv"
    pd.DataFrame({"audio": [str(c.path) for c in clips], "reference": [c.reference for c in clips]}).to_csv(manifest, index=False)
    env = {**os.environ, "MODELS_DIR": str(models_dir), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "eval", "--models", "faster-whisper/tiny.en,faster-whisper/base",
         "--data", str(manifest), "--out", str(tmp_path / "out"), "--beam-size", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("model")
    assert set(summary.index) == {"faster-whisper/tiny.en", "faster-whisper/base"}
    assert (summary["wer"] <= 0.10).all(), summary
    assert (summary["reference_words"] == 71).all() and (summary["rtfx"] > 0).all()
    assert (summary["normalizer"] == "whisper-english").all()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["utterances"]) == 10 and len(saved["summary"]) == 2
    assert "faster-whisper/base" in out.stdout  # the leaderboard is printed
    assert "10/10" in out.stderr  # tqdm progress


def test_cli_refuses_unknown_models_clearly(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "eval", "--models", "no/such", "--data", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 2 and "unknown model 'no/such'" in out.stderr

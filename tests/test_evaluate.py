"""Dataset evaluation: manifests in every accepted form, and the CLI on real speech and models."""

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from gradio_client import handle_file

import numpy as np

from explorer import probe
from explorer.evaluate import (
    DatasetError, Utterance, UtteranceResult, ZipLimits, dataset_from_files, evaluate, load_dataset, load_results, probe_utterances,
    rows_frame, save_results, summarize, summarize_datasets,
)  # fmt: skip
from explorer.scoring import score
from explorer.types import TranscribeOptions

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
        ("m.csv", "audio,reference\nnope.wav,hello\n", r"m.csv row 1: audio file nope.wav does not exist"),
        ("m.jsonl", '\n\n{"audio": "nope.wav", "text": "hi"}\n', r"m.jsonl line 3: audio file nope.wav does not exist"),
        ("m.jsonl", '["a", "b"]\n', r"line 1: expected a JSON object"),
        ("m.csv", "file_name,words\nx.wav,hi\n", r"row 1: no audio column"),
        ("m.jsonl", '{"audio": "x.wav"\n', r"line 1: not JSON"),
        ("m.txt", "hello", r"expected a folder, a .csv, .tsv or .jsonl manifest"),
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


def run_cli(models_dir, *args, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELS_DIR": str(models_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "explorer", "eval", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_and_api_evaluate_tiny_en_and_base_alike_under_10_percent(app, clips, models_dir, tmp_path):
    """The CLI and /evaluate through gradio_client run one code path: same hypotheses, same WER."""
    data = tmp_path / "data"
    data.mkdir()
    for c in clips:
        shutil.copy(c.path, data / c.path.name)
    manifest = data / "librivox.csv"  # bare file names: uploads arrive without their folders
    pd.DataFrame({"audio": [c.path.name for c in clips], "reference": [c.reference for c in clips]}).to_csv(manifest, index=False)
    models = ["faster-whisper/tiny.en", "faster-whisper/base"]
    out = run_cli(models_dir, "--models", ",".join(models), "--data", manifest, "--out", tmp_path / "out", "--beam-size", "5")
    assert out.returncode == 0, out.stderr
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("model")
    assert set(summary.index) == set(models)
    assert (summary["wer"] <= 0.10).all(), summary
    assert (summary["reference_words"] == 71).all() and (summary["rtfx"] > 0).all()
    assert (summary["normalizer"] == "open-asr-leaderboard").all()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["utterances"]) == 10 and len(saved["summary"]) == 2
    assert "faster-whisper/base" in out.stdout  # the leaderboard is printed
    assert "10/10" in out.stderr  # tqdm progress

    files = [handle_file(str(manifest))] + [handle_file(str(data / c.path.name)) for c in clips]
    api = app.client().predict(files, "", "", "", None, models, "en", 5, True, False, api_name="/evaluate")
    by_model = lambda records: {r["model"]: r for r in records}  # noqa: E731
    cli_summary, api_summary = by_model(saved["summary"]), by_model(api["summary"])
    for key in models:
        # The same computation only where the run environments are equal (threads, CPU, libraries).
        for column in ("environment", "wer", "cer", "substitutions", "deletions", "insertions", "reference_words", "utterances"):
            assert api_summary[key][column] == cli_summary[key][column], (key, column)
    pairs = lambda records: [(r["model"], r["id"], r["hypothesis"], r["wer"]) for r in records]  # noqa: E731
    assert pairs(api["utterances"]) == pairs(saved["utterances"])
    assert api["meta"]["options"]["beam_size"] == 5


def test_cli_refuses_unknown_models_clearly(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "eval", "--models", "no/such", "--data", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 2 and "unknown model 'no/such'" in out.stderr


def test_non_utf8_manifest_names_the_line(clips, tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"audio,reference\n" + f"{clips[0].path},fine\n".encode() + f"{clips[1].path},caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"m.csv line 3: not UTF-8 text \(byte 0xe9\)"):
        load_dataset(path)


def test_a_bad_row_stops_everything_before_any_model_runs(clips, service, tmp_path):
    """A manifest with one missing file evaluates nothing: load_dataset fails before evaluate."""
    path = tmp_path / "m.csv"
    path.write_text("audio,reference\n" + f"{clips[0].path},a\n" + "missing.wav,b\n")
    loaded = service.health()["loaded_models"]
    with pytest.raises(DatasetError, match=r"row 2: audio file missing.wav does not exist"):
        load_dataset(path)
    assert service.health()["loaded_models"] == loaded


def test_saved_hugging_face_dataset_is_read_with_its_audio(clips, tmp_path):
    """A real `datasets` dataset saved with save_to_disk: audio embedded as bytes, read by our decoder."""
    import datasets

    ds = datasets.Dataset.from_dict(
        {"audio": [str(c.path) for c in clips], "text": [c.reference for c in clips], "id": [c.path.stem for c in clips]}
    ).cast_column("audio", datasets.Audio(sampling_rate=16000))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved"))
    utterances = load_dataset(tmp_path / "saved", limit=3)
    assert [(u.id, u.reference) for u in utterances] == [(c.path.stem, c.reference) for c in clips[:3]]
    for u, c in zip(utterances, clips):
        np.testing.assert_allclose(u.load().samples, c.samples, atol=1e-4)
    with pytest.raises(DatasetError, match=r"no split 'train' \(has test\)"):
        load_dataset(tmp_path / "saved", split="train")


def test_hub_dataset_offline_fails_clearly(monkeypatch):
    """The Hub cannot be reached here: the message says which dataset and that it is the Hub."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read at import: the env is too late here
    with pytest.raises(DatasetError, match=r"could not load openslr/librispeech_asr from the Hugging Face Hub"):
        load_dataset("hf:openslr/librispeech_asr", config="clean", split="test", limit=2)


def test_probe_clips_are_deterministic_non_speech():
    a, b = probe.non_speech_clips(2.0), probe.non_speech_clips(2.0)
    assert list(a) == ["silence", "room-tone", "white-noise", "pink-noise", "tone-440hz", "mains-hum", "beeps"]
    for name in a:
        assert a[name].dtype == np.float32 and len(a[name]) == 32000
        assert np.array_equal(a[name], b[name]) and np.abs(a[name]).max() <= 1.0
    assert not a["silence"].any() and a["white-noise"].std() == pytest.approx(0.1, rel=0.05)
    assert probe.words_per_minute(5, 30.0) == 10.0


def test_evaluation_with_probe_and_a_corrupt_file(clips, service, tmp_path):
    """Real tiny.en on two clips, a corrupt 'wav' and the probe set, with VAD off: the corrupt file
    fails alone with its reason, speech is scored, and non-speech counts hallucinated words."""
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    utterances = [Utterance(c.path.stem, c.path, c.reference) for c in clips[:2]]
    utterances += [Utterance("bad", bad, "anything")] + probe_utterances(seconds=3.0)
    options = TranscribeOptions(language="en", vad_filter=False)
    rows = evaluate(service, ["transformers/whisper-tiny.en"], utterances, options)
    assert len(rows) == len(utterances) and list(rows["id"]) == [u.id for u in utterances]
    failed = rows[rows["error"] != ""]
    assert list(failed["id"]) == ["bad"] and "bad.wav" in failed["error"].iloc[0]
    summary = summarize(rows).iloc[0]
    speech = rows[(rows["kind"] == "speech") & (rows["error"] == "")]
    expected = score(list(speech["reference"]), list(speech["hypothesis"]))
    assert summary["wer"] == expected.wer <= 0.2 and summary["failed"] == 1 and summary["utterances"] == 2
    assert summary["non_speech_seconds"] == pytest.approx(7 * 3.0)
    quiet = rows[rows["kind"] == "non-speech"]
    assert summary["hallucinated_words"] == quiet["hypothesis_words"].sum()
    assert summary["hallucinations_per_minute"] == pytest.approx(quiet["hypothesis_words"].sum() / (21 / 60))
    assert quiet["wer"].isna().all()


def test_summary_rtfx_is_recomputed_from_the_saved_rows_without_the_warm_up(clips, service, tmp_path):
    """RTFx = Σ audio / Σ processing over the saved speech rows, and the warm-up call (the first
    utterance, run once before the timed runs) has no row and no share of it."""
    utterances = [Utterance(c.path.stem, c.path, c.reference) for c in clips]
    rows = evaluate(service, ["faster-whisper/tiny.en"], utterances, TranscribeOptions(language="en"))
    summary = summarize(rows).iloc[0]
    save_results(tmp_path / "out", rows, summarize(rows), {"language": "en"})
    saved = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(saved["id"]) == [u.id for u in utterances]  # one row each: none for the warm-up
    assert summary["rtfx"] == pytest.approx(saved["audio_seconds"].sum() / saved["processing_seconds"].sum(), rel=1e-9)
    assert summary["processing_seconds"] == pytest.approx(saved["processing_seconds"].sum(), rel=1e-9)


def test_runs_at_other_thread_counts_are_reported_not_hidden(clips, offline_settings):
    """Two evaluations at 1 and 2 threads are two computations: compare_runs says their
    environments differ, counts the utterances whose words changed and gives both WERs."""
    from dataclasses import replace

    from explorer.evaluate import compare_runs
    from explorer.service import ModelService

    utterances = [Utterance(c.path.stem, c.path, c.reference) for c in clips]
    runs = [
        evaluate(ModelService(replace(offline_settings, cpu_threads=n), online=False), ["faster-whisper/tiny.en"],
                 utterances, TranscribeOptions(language="en"))
        for n in (1, 2)
    ]  # fmt: skip
    diff = compare_runs(*runs)
    assert not diff.same_environment
    assert "1 threads" in diff.environments[0][0] and "2 threads" in diff.environments[1][0]
    changed = [(m, i) for m, i, a, b in zip(runs[0]["model"], runs[0]["id"], runs[0]["hypothesis"], runs[1]["hypothesis"]) if a != b]
    assert list(diff.changed) == changed and diff.pairs == 5
    assert diff.wer["faster-whisper/tiny.en"] == (summarize(runs[0]).iloc[0]["wer"], summarize(runs[1]).iloc[0]["wer"])
    report = diff.report()
    assert "different run environments" in report and f"{len(changed)} of 5 utterances changed" in report


def test_saved_results_reload_to_the_same_summary(clips, service, tmp_path):
    utterances = [Utterance(c.path.stem, c.path, c.reference) for c in clips[:2]] + probe_utterances(seconds=1.0)[:2]
    rows = evaluate(service, ["faster-whisper/tiny.en"], utterances, TranscribeOptions(language="en"))
    summary = summarize(rows)
    paths = save_results(tmp_path / "out", rows, summary, {"language": "en"})
    for path in (paths[2], paths[0]):  # results.json, then results.csv
        rows2, summary2, _ = load_results(path)
        assert list(rows2["hypothesis"]) == list(rows["hypothesis"])
        pd.testing.assert_frame_equal(summary2, summary, check_dtype=False)
    junk = tmp_path / "junk.json"
    junk.write_text('{"summary": []}')
    with pytest.raises(DatasetError, match=r"junk.json: not saved evaluation results"):
        load_results(junk)


def test_uploaded_files_and_zips_make_one_dataset(clips, tmp_path):
    import zipfile

    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for c in clips[:2]:
            z.write(c.path, f"set/{c.path.name}")
            z.writestr(f"set/{c.path.stem}.txt", c.reference)
    source = dataset_from_files([archive], tmp_path / "work1")
    assert source == tmp_path / "work1" / "set"
    assert [(u.id, u.reference) for u in load_dataset(source)] == [(c.path.stem, c.reference) for c in clips[:2]]

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio": c.path.name, "text": c.reference}) + "\n" for c in clips[:2]))
    source = dataset_from_files([manifest, *(c.path for c in clips[:2])], tmp_path / "work2")
    assert source.name == "m.jsonl" and len(load_dataset(source)) == 2

    (tmp_path / "n.csv").write_text("audio,reference\n")
    with pytest.raises(DatasetError, match=r"several manifests \(m.jsonl, n.csv\)"):
        dataset_from_files([manifest, tmp_path / "n.csv"], tmp_path / "work3")
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(DatasetError, match=r"fake.zip: not a zip archive"):
        dataset_from_files([tmp_path / "fake.zip"], tmp_path / "work4")


def test_several_datasets_from_the_cli_each_scored_and_averaged(clips, models_dir, tmp_path):
    """Two manifests and the probe, tiny.en, Whisper's plain normaliser chosen: every row names its
    dataset, each dataset is scored on its own, and mean_wer is their unweighted mean."""
    for name, part in (("first", clips[:2]), ("second", clips[2:5])):
        (tmp_path / name).mkdir()
        pd.DataFrame({"audio": [str(c.path) for c in part], "reference": [c.reference for c in part]}).to_csv(
            tmp_path / name / "set.csv", index=False
        )
    out = run_cli(
        models_dir, "--models", "faster-whisper/tiny.en", "--data", tmp_path / "first" / "set.csv",
        "--data", tmp_path / "second" / "set.csv", "--probe", "--out", tmp_path / "out", "--normalizer", "whisper-english",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows, summary, meta = load_results(tmp_path / "out" / "results.json")
    # the two file names collide, so the datasets are named by the arguments as given
    first, second = str(tmp_path / "first" / "set.csv"), str(tmp_path / "second" / "set.csv")
    assert list(rows["dataset"]) == [first] * 2 + [second] * 3 + ["probe"] * 7
    assert meta["normalizer"] == "whisper-english" and meta["data"] == [first, second]
    by_dataset = pd.read_csv(tmp_path / "out" / "datasets.csv", keep_default_na=False, na_values={"wer": [""]})
    assert list(by_dataset["dataset"]) == [first, second, "probe"]
    wers = []
    for dataset, n in ((first, 2), (second, 3)):
        part = rows[rows["dataset"] == dataset]
        expected = score(list(part["reference"]), list(part["hypothesis"]), normalizer="whisper-english")
        got = by_dataset.set_index("dataset").loc[dataset]
        assert got["wer"] == pytest.approx(expected.wer) and got["utterances"] == n
        assert list(part["wer"]) == [score(r, h, normalizer="whisper-english").wer for r, h in zip(part["reference"], part["hypothesis"])]
        wers.append(expected.wer)
    saved = pd.read_csv(tmp_path / "out" / "summary.csv").iloc[0]
    assert saved["mean_wer"] == pytest.approx(sum(wers) / 2) and saved["datasets"] == 2
    assert saved["normalizer"] == "whisper-english" and summary.iloc[0]["mean_wer"] == pytest.approx(saved["mean_wer"])
    assert first in out.stdout and "mean_wer" in out.stdout


def _row(model, dataset, reference, hypothesis, kind="speech"):
    return UtteranceResult(model, f"{dataset}-{reference}", kind, reference, hypothesis, None, 0, 0, 0, 0, 0, 1.0, 0.5, dataset=dataset)


def test_mean_wer_is_unweighted_over_datasets_and_ranks_the_models():
    """A small dataset counts as much as a large one: "a" is perfect on the large set and wrong on
    the small one, so it wins on pooled WER and loses on the mean."""
    large = ["the cat stays right here"] * 8  # 40 words
    rows = rows_frame(
        [_row("a", "large", r, r) for r in large] + [_row("a", "small", "red apple", "bad guess")]
        + [_row("b", "large", r, r.replace("here", "there")) for r in large] + [_row("b", "small", "red apple", "red apple")]
        + [_row("b", "probe", "", "hello", "non-speech")]
    )  # fmt: skip
    per = summarize_datasets(rows).set_index(["model", "dataset"])
    assert per.loc[("a", "small"), "wer"] == 1.0 and per.loc[("a", "large"), "wer"] == 0.0
    assert per.loc[("b", "large"), "wer"] == pytest.approx(8 / 40) and pd.isna(per.loc[("b", "probe"), "wer"])
    summary = summarize(rows).set_index("model")
    assert summary.loc["a", "wer"] == pytest.approx(2 / 42) and summary.loc["a", "mean_wer"] == pytest.approx(0.5)
    assert summary.loc["b", "mean_wer"] == pytest.approx(0.1) and (summary["datasets"] == 2).all()
    assert list(summarize(rows)["model"]) == ["b", "a"]  # ranked by the mean
    one = summarize(rows[rows["dataset"] == "large"])
    assert "mean_wer" not in one and list(one["model"]) == ["a", "b"]


def test_results_saved_without_a_dataset_column_still_load(tmp_path):
    rows = rows_frame([_row("a", "x", "the cat sat", "the cat sat down")]).drop(columns=["dataset"])
    rows.to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "results.json").write_text(json.dumps({"meta": {"language": "en"}, "summary": [], "utterances": rows.to_dict("records")}))
    for name in ("results.csv", "results.json"):
        loaded, summary, _ = load_results(tmp_path / name)
        assert list(loaded["dataset"]) == [""]
        assert summary.iloc[0]["wer"] == pytest.approx(1 / 3) and "mean_wer" not in summary


def test_summary_cost_per_audio_hour_is_price_over_rtfx_and_environments_are_listed():
    """DEVICE_PRICE_PER_HOUR's figure in the leaderboard: price / RTFx, from the rows' sums; rows
    from two environments are two computations, and the summary names both."""
    from explorer.evaluate import UtteranceResult, rows_frame

    rows = rows_frame([
        UtteranceResult("m", "u0", "speech", "the cat sat", "the cat sat", 0.0, 0, 0, 0, 3, 3, 10.0, 2.0, environment="A"),
        UtteranceResult("m", "u1", "speech", "the cat sat", "the cat", 1 / 3, 0, 1, 0, 3, 2, 20.0, 4.0, environment="B"),
    ])  # fmt: skip
    summary = summarize(rows, price_per_hour=0.5).iloc[0]
    assert summary["rtfx"] == pytest.approx(30 / 6)
    assert summary["cost_per_audio_hour"] == pytest.approx(0.5 / 5)
    assert summary["environment"] == "A | B"
    assert summarize(rows).iloc[0]["cost_per_audio_hour"] is None


# -- confinement: what the app reads for a stranger ------------------------------------------------
def _upload(tmp_path, clips, rows: str):
    """An upload folder: one real clip and a manifest with the given rows (audio,reference)."""
    root = tmp_path / "upload"
    root.mkdir()
    shutil.copy(clips[0].path, root / "a.wav")
    (root / "m.csv").write_text("audio,reference\n" + rows)
    return root


@pytest.mark.parametrize("audio", ["../x.wav", "sub/../../x.wav", "{clip}", "/usr/share/no/such.wav", "link.wav"])
def test_a_confined_manifest_refuses_paths_outside_the_upload_alike(clips, tmp_path, audio):
    """Traversal, an absolute path (real or not) and a symlink out all get the same message naming
    the row: it never says whether the path exists. The CLI (no root) still reads them."""
    audio = audio.format(clip=clips[1].path)
    root = _upload(tmp_path, clips, f"a.wav,first\n{audio},second\n")
    (root / "link.wav").symlink_to(clips[1].path)
    (tmp_path / "x.wav").write_bytes(clips[1].path.read_bytes())  # the escape's target exists
    with pytest.raises(DatasetError) as refused:
        load_dataset(root / "m.csv", root=root)
    assert str(refused.value) == f"m.csv row 2: audio path {audio} is outside the uploaded dataset (give a path relative to the manifest)"
    if audio in (str(clips[1].path), "link.wav"):
        assert len(load_dataset(root / "m.csv")) == 2  # no root: the CLI's own files


def test_a_confined_manifest_reads_relative_paths_inside_the_upload(clips, tmp_path):
    root = _upload(tmp_path, clips, "a.wav,first\nsub/../a.wav,again\n")
    (root / "sub").mkdir()
    assert [u.audio for u in load_dataset(root / "m.csv", root=root)] == [root / "a.wav", root / "sub" / ".." / "a.wav"]
    with pytest.raises(DatasetError, match=r"m.csv: outside the uploaded dataset"):
        load_dataset(root / "m.csv", root=root / "sub")


def test_a_confined_saved_dataset_refuses_rows_naming_paths_outside(clips, tmp_path):
    """A saved `datasets` folder whose audio column names files (not bytes): outside the upload it
    is refused like a manifest row; the same folder read by the CLI works."""
    import datasets

    root = tmp_path / "upload"
    datasets.Dataset.from_dict({"audio": [str(clips[0].path)], "text": [clips[0].reference]}).save_to_disk(str(root / "saved"))
    with pytest.raises(DatasetError, match=rf"saved row 0: audio path {clips[0].path} is outside the uploaded dataset"):
        load_dataset(root / "saved", root=root)
    assert len(load_dataset(root / "saved")) == 1


@pytest.mark.parametrize("name", [".", "..", "../x", "/abs", "hf:/abs", "/usr/share", "csv", "audiofolder", "a//b", "a/b/c"])
def test_a_confined_hub_name_is_only_a_hub_id(tmp_path, name):
    """`datasets` would read a local folder (or, with a builder's name, the working folder): the
    app takes only Hub ids, and says so the same way whether a path exists or not."""
    with pytest.raises(DatasetError, match=r"not a Hugging Face Hub dataset id \(expected NAME or OWNER/NAME\)"):
        load_dataset(f"hf:{name}", root=tmp_path)


def test_a_confined_hub_id_passes_the_check_and_goes_to_the_hub(monkeypatch, tmp_path):
    """Offline here, so each fails at the Hub; tests/data and tests are real folders (run from the
    repository) that `datasets` would read locally: confined, they are looked up on the Hub only."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(ROOT)
    for name in ("openslr/librispeech_asr", "librispeech_asr", "hf-audio/esb-datasets-test-only-sorted", "tests/data", "tests"):
        with pytest.raises(DatasetError, match=rf"could not load {name} from the Hugging Face Hub"):
            load_dataset(f"hf:{name}", root=tmp_path)


def _zip(path, members: dict, compression=None):
    import zipfile

    with zipfile.ZipFile(path, "w", compression or zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_zip_bombs_and_escaping_members_are_refused_before_anything_is_written(tmp_path):
    """4 MB of zeros (a 4 KB archive), too many members, too much, and a member leaving the folder:
    each refused with the setting to change, from the declared sizes, and nothing unpacked."""
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.wav": bytes(4 << 20)})
    assert bomb.stat().st_size < 10_000
    cases = [
        (bomb, ZipLimits(), r"bomb.zip: compressed \d+:1, more than the 100:1 allowed \(MAX_ZIP_RATIO\)"),
        (bomb, ZipLimits(bytes=1 << 20, ratio=1e9), r"bomb.zip: unpacks to 4 MB, more than the 1 MB allowed \(MAX_ZIP_MB\)"),
        (_zip(tmp_path / "many.zip", {f"{i}.txt": "x" for i in range(11)}), ZipLimits(members=10),
         r"many.zip: 11 files in the archive, more than the 10 allowed \(MAX_ZIP_MEMBERS\)"),
    ]  # fmt: skip
    for i, name in enumerate(("../evil.txt", "/abs/evil.txt", "set/../../evil.txt")):
        cases.append((_zip(tmp_path / f"evil{i}.zip", {"set/a.txt": "fine", name: "out"}), ZipLimits(),
                      rf"evil{i}.zip: member {re.escape(name)} has an absolute path or '..'"))  # fmt: skip
    for i, (archive, limits, message) in enumerate(cases):
        work = tmp_path / f"work{i}"
        with pytest.raises(DatasetError, match=message):
            dataset_from_files([archive], work, limits)
        assert not any(p.is_file() for p in work.rglob("*")) and not (tmp_path / "evil.txt").exists()


def test_a_zip_whose_declared_sizes_lie_is_stopped_at_the_cap(tmp_path):
    """Declared sizes edited down to 1 byte, so the checks before unpacking pass: zipfile reads a
    member only up to its declared size, then its CRC check fails, and that is refused with the
    reason; nothing beyond the declared size is written. (_unzip's count of the bytes it writes is
    a second guard, for a reader that would not stop there.)"""
    import struct
    import zipfile

    archive = _zip(tmp_path / "liar.zip", {"zeros.wav": bytes(3 << 20)}, zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size: local header, central directory
        at = data.index(signature) + offset
        data[at : at + 4] = struct.pack("<I", 1)
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"liar.zip: not a zip archive \(Bad CRC-32 for file 'zeros.wav'\)"):
        dataset_from_files([archive], tmp_path / "work", ZipLimits(bytes=1 << 20, ratio=1e9))
    assert sum(p.stat().st_size for p in (tmp_path / "work").rglob("*") if p.is_file()) <= 1


def test_the_evaluate_api_refuses_manifests_reaching_outside_the_upload(app, clips, tmp_path):
    """Through gradio_client: a traversal and an absolute path (a real clip on this server) are
    each refused with the row and the reason, before any model runs, so no row is transcribed."""
    from gradio_client.exceptions import AppError

    for i, audio in enumerate((f"../{clips[1].path.name}", str(clips[1].path))):
        manifest = tmp_path / f"m{i}.csv"
        manifest.write_text(f"audio,reference\n{clips[0].path.name},{clips[0].reference}\n{audio},{clips[1].reference}\n")
        files = [handle_file(str(manifest)), handle_file(str(clips[0].path))]
        message = rf"m{i}.csv row 2: audio path {re.escape(audio)} is outside the uploaded dataset"
        with pytest.raises(AppError, match=message):
            app.client().predict(files, "", "", "", None, ["faster-whisper/tiny.en"], "en", 1, True, False, api_name="/evaluate")


def test_the_evaluate_api_refuses_local_hub_names_and_zip_bombs_and_runs_nothing(app, clips, tmp_path):
    """Through gradio_client on the running app: a saved `datasets` folder on this server named as
    the Hugging Face dataset (bare or hf:) is refused as no Hub id; a repository folder that is
    also a valid Hub id is looked up on the Hub only (offline here: the same message as a name
    that exists nowhere); a zip bomb (a 64 KB archive of 64 MB) is refused by its ratio. No model
    runs for any of them (the admin /health's run counts)."""
    import datasets
    import zipfile

    from gradio_client.exceptions import AppError

    from tests.conftest import ADMIN_TOKEN

    client = app.client()

    def runs() -> int:
        return sum(m["runs"] for m in client.predict(ADMIN_TOKEN, api_name="/health")["detail"]["loaded_models"])

    def evaluate(files, hub_name):
        return client.predict(files, hub_name, "", "", None, ["faster-whisper/tiny.en"], "en", 1, True, False, api_name="/evaluate")

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"audio": [str(clips[0].path)], "text": [clips[0].reference]}).save_to_disk(str(saved))
    before = runs()
    for name in (str(saved), f"hf:{saved}", f"hf:{saved}/../saved"):
        with pytest.raises(AppError, match=r"not a Hugging Face Hub dataset id \(expected NAME or OWNER/NAME\)"):
            evaluate([], name)
    for name in ("tests/data", "no-such/dataset-here"):  # tests/data is a folder in the app's working directory
        with pytest.raises(AppError, match=rf"could not load {name} from the Hugging Face Hub"):
            evaluate([], f"hf:{name}")

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.wav", bytes(64 << 20))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(AppError, match=r"bomb.zip: compressed \d+:1, more than the 100:1 allowed \(MAX_ZIP_RATIO\)"):
        evaluate([handle_file(str(bomb))], "")
    assert runs() == before
    assert "dashwood" in client.predict(handle_file(str(clips[0].path)), "faster-whisper/tiny.en", api_name="/transcribe")["text"].lower()

"""Dataset evaluation: several models on a set of utterances with references.

A dataset is a folder of audio files with same-named ``.txt`` references; a CSV/TSV/JSONL
manifest with an audio path and a reference per row (paths relative to the manifest); a Hugging
Face ``datasets`` dataset saved with ``save_to_disk``; or a Hub dataset (``hf:NAME``, online
only). The robustness probe adds generated non-speech clips (``explorer.probe``) whose reference
is empty. One code path serves the CLI (``python -m explorer eval``) and the Evaluate tab.

Datasets from strangers (the Evaluate tab and its API) are confined: `load_dataset(..., root=)`
reads only files inside `root` (the request's upload folder), and `hf:` takes only Hub ids. The
CLI, run by the user on their own files, passes no root and reads any path.

Everything a dataset says is checked before any model runs, so a bad row stops the evaluation
with a message naming it rather than skewing the numbers. Audio is decoded one utterance at a
time; an utterance that fails to decode is recorded as failed with its reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd

from explorer import metrics, probe
from explorer.audio import Audio, AudioError, load_audio
from explorer.scoring import normalize, score
from explorer.service import ModelError, ModelService
from explorer.types import TranscribeOptions

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".webm", ".m4a"}
MANIFEST_SUFFIXES = {".csv", ".tsv", ".jsonl"}
AUDIO_COLUMNS = ("audio", "path", "file", "audio_path", "audio_filepath")
REFERENCE_COLUMNS = ("reference", "text", "transcript", "transcription", "sentence", "normalized_text")
HUB_PREFIX = "hf:"
# The Hub's repo ids: NAME or OWNER/NAME, letters, digits, "-", "_", "." (huggingface_hub's rule).
HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}", re.ASCII)

Kind = Literal["speech", "non-speech"]
AudioRef = Union[Path, bytes, np.ndarray]  # a file, a file's bytes, or 16 kHz samples


class DatasetError(ValueError):
    """The dataset cannot be read; the message says which file or row and why."""


@dataclass(frozen=True, eq=False)
class Utterance:
    id: str
    audio: AudioRef
    reference: str
    kind: Kind = "speech"
    dataset: str = ""  # which dataset it came from (load_dataset's name; "probe" for the probe)

    def load(self, max_seconds: Optional[float] = None) -> Audio:
        return load_audio(str(self.audio) if isinstance(self.audio, Path) else self.audio, max_seconds=max_seconds)


# -- reading datasets ---------------------------------------------------------------------------
def _pick(row: dict, names: Sequence[str], what: str, where: str) -> str:
    for name in names:
        if name in row and row[name] is not None:
            return str(row[name])
    raise DatasetError(f"{where}: no {what} column (expected one of {', '.join(names)})")


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, ".." and symlinks followed, lies in `root` (whether or not it exists)."""
    return path.resolve().is_relative_to(root.resolve())


def _outside(where: str, audio: Path) -> DatasetError:
    """One message for every path that leaves the upload, so it never tells what exists there."""
    return DatasetError(f"{where}: audio path {audio} is outside the uploaded dataset (give a path relative to the manifest)")


def _resolve(audio: Path, base: Path, where: str, root: Optional[Path] = None) -> Path:
    """A manifest's audio path: absolute, or relative to the manifest; files uploaded through the
    UI lose their folders, so a bare file name beside the manifest is accepted too. Given a
    `root`, the path must be relative and stay inside it, checked before anything is looked up."""
    if root is not None and (audio.is_absolute() or not _inside(base / audio, root)):
        raise _outside(where, audio)
    if audio.is_absolute():
        return audio
    found = base / audio if (base / audio).is_file() else base / audio.name
    if root is not None and not _inside(found, root):  # a symlink beside the manifest
        raise _outside(where, audio)
    return found


def _from_rows(rows: list[dict], base: Path, where: Callable[[int], str], root: Optional[Path]) -> list[Utterance]:
    utterances = []
    for i, row in enumerate(rows):
        audio = _resolve(Path(_pick(row, AUDIO_COLUMNS, "audio", where(i))), base, where(i), root)
        if not audio.is_file():
            raise DatasetError(f"{where(i)}: audio file {audio.name} does not exist")
        reference = _pick(row, REFERENCE_COLUMNS, "reference", where(i)).strip()
        utterances.append(Utterance(str(row.get("id") or audio.stem), audio, reference))
    return utterances


def _read_text(path: Path) -> str:
    """UTF-8 text (a BOM is fine); anything else names the line that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path.name} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def _from_manifest(path: Path, root: Optional[Path]) -> list[Utterance]:
    text = _read_text(path)
    if path.suffix.lower() == ".jsonl":
        rows, lines = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path.name} line {n}: not JSON ({exc})") from None
                if not isinstance(rows[-1], dict):
                    raise DatasetError(f"{path.name} line {n}: expected a JSON object")
                lines.append(n)
        return _from_rows(rows, path.parent, lambda i: f"{path.name} line {lines[i]}", root)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    rows = list(reader)
    # Row numbers count data rows (the header is row 0), as a spreadsheet user would look for them.
    return _from_rows(rows, path.parent, lambda i: f"{path.name} row {i + 1}", root)


def _from_folder(folder: Path, root: Optional[Path]) -> list[Utterance]:
    audio = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    for p in audio:
        if root is not None and not (_inside(p, root) and _inside(p.with_suffix(".txt"), root)):
            raise _outside(folder.name, Path(p.name))
    missing = [p.name for p in audio if not p.with_suffix(".txt").is_file()]
    if missing:
        raise DatasetError(f"{folder.name}: no .txt reference beside {', '.join(missing[:5])}")
    return [Utterance(p.stem, p, _read_text(p.with_suffix(".txt")).strip()) for p in audio]


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _from_hf(dataset, where: str, limit: Optional[int], base: Optional[Path] = None, root: Optional[Path] = None) -> list[Utterance]:
    """Rows of a `datasets` Dataset/IterableDataset; audio stays encoded (decode=False) so our
    own decoder reads it, the same as every other input (datasets' decoder needs torchcodec).
    Given a `root`, a cell naming a file must name one inside it, relative to `base` (the saved
    folder); a Hub dataset (no base) may then only carry its audio as bytes."""
    from datasets import Audio as AudioFeature

    features = dataset.features or {}
    audio_col = next((c for c, f in features.items() if isinstance(f, AudioFeature)), None)
    audio_col = audio_col or next((c for c in AUDIO_COLUMNS if c in features), None)
    ref_col = next((c for c in REFERENCE_COLUMNS if c in features), None)
    if audio_col is None or ref_col is None:
        what = "audio" if audio_col is None else "reference"
        names = AUDIO_COLUMNS if audio_col is None else REFERENCE_COLUMNS
        raise DatasetError(f"{where}: no {what} column (expected one of {', '.join(names)}; has {', '.join(features)})")
    if isinstance(features[audio_col], AudioFeature):
        dataset = dataset.cast_column(audio_col, AudioFeature(decode=False))
    utterances = []
    for i, row in enumerate(dataset):
        if limit is not None and i >= limit:
            break
        cell = row[audio_col]
        named = cell.get("path") if isinstance(cell, dict) else cell if isinstance(cell, str) else None
        audio: AudioRef
        if isinstance(cell, dict) and cell.get("bytes"):
            audio = cell["bytes"]
        elif named and root is not None:
            if base is None:
                raise _outside(f"{where} row {i}", Path(named))
            audio = _resolve(Path(named), base, f"{where} row {i}", root)
            if not audio.is_file():
                raise DatasetError(f"{where} row {i}: audio file {audio.name} does not exist")
        elif named and Path(named).is_file():
            audio = Path(named)
        else:
            raise DatasetError(f"{where} row {i}: no readable audio in column {audio_col!r}")
        ident = row.get("id") or (Path(cell["path"]).stem if isinstance(cell, dict) and cell.get("path") else f"{i:06d}")
        utterances.append(Utterance(str(ident), audio, str(row[ref_col] or "").strip()))
    return utterances


def _from_saved(folder: Path, split: Optional[str], limit: Optional[int], root: Optional[Path]) -> list[Utterance]:
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        split = split or ("test" if "test" in loaded else next(iter(loaded)))
        if split not in loaded:
            raise DatasetError(f"{folder.name}: no split {split!r} (has {', '.join(loaded)})")
        loaded = loaded[split]
    return _from_hf(loaded, folder.name, limit, folder, root)


def check_hub_id(name: str) -> str:
    """`name` if it is a Hub dataset id (NAME or OWNER/NAME), never a path: `datasets` would read
    a local folder of that name, or with a builder's name ("csv", "audiofolder") the working
    folder, so those are refused too."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    if not HUB_ID.fullmatch(name) or ".." in name or "--" in name or name.endswith((".", "-")) or name in _PACKAGED_DATASETS_MODULES:
        raise DatasetError(f"{HUB_PREFIX}{name}: not a Hugging Face Hub dataset id (expected NAME or OWNER/NAME)")
    return name


def _from_hub(name: str, config: Optional[str], split: Optional[str], limit: Optional[int],
              root: Optional[Path] = None) -> list[Utterance]:  # fmt: skip
    """Streamed, so a `limit` reads only what it needs of a large test set. Given a `root`, only a
    Hub id is taken, and looked up on the Hub alone (hf://datasets/: never a local folder)."""
    import datasets

    path = f"hf://datasets/{check_hub_id(name)}" if root is not None else name
    try:
        dataset = datasets.load_dataset(path, config, split=split or "test", streaming=True)
        return _from_hf(dataset, name, limit, root=root)
    except DatasetError:
        raise
    except Exception as exc:  # offline, unknown repo, gated, bad config: all said the same way
        raise DatasetError(f"could not load {name} from the Hugging Face Hub: {type(exc).__name__}: {exc}") from None


def load_dataset(
    source: Union[Path, str],
    *,
    config: Optional[str] = None,
    split: Optional[str] = None,
    limit: Optional[int] = None,
    name: Optional[str] = None,
    root: Optional[Path] = None,
) -> list[Utterance]:
    """Every utterance of a dataset, checked; `limit` keeps the first N. Each is tagged with the
    dataset's `name` (default: the file or folder name, or hf:NAME). Given a `root`, everything
    read must lie inside it (the source, every audio file) and `hf:` takes only Hub ids: what
    the app passes for a request's uploads; the CLI passes none."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        found = _from_hub(source[len(HUB_PREFIX) :], config, split, limit, root)
    else:
        source = Path(source)
        if root is not None and not _inside(source, root):
            raise DatasetError(f"{source.name}: outside the uploaded dataset")
        if source.is_dir():
            found = _from_saved(source, split, limit, root) if _is_saved_dataset(source) else _from_folder(source, root)
        elif source.suffix.lower() in MANIFEST_SUFFIXES:
            if not source.is_file():
                raise DatasetError(f"{source.name}: no such manifest")
            found = _from_manifest(source, root)
        else:
            raise DatasetError(
                f"{source.name}: expected a folder, a .csv, .tsv or .jsonl manifest, a saved `datasets` "
                f"folder, or {HUB_PREFIX}NAME for a Hub dataset"
            )
    if not found:
        raise DatasetError(f"{source}: no utterances found")
    name = name or (source if isinstance(source, str) else source.name)
    return [replace(u, dataset=name) for u in (found[:limit] if limit is not None else found)]


def probe_utterances(seconds: float = probe.CLIP_SECONDS) -> list[Utterance]:
    """The robustness probe's non-speech clips, as utterances with an empty reference."""
    return [Utterance(f"probe/{name}", samples, "", "non-speech", "probe") for name, samples in probe.non_speech_clips(seconds).items()]


# -- running ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UtteranceResult:
    model: str
    id: str
    kind: Kind
    reference: str
    hypothesis: str
    wer: Optional[float]  # None for non-speech (no reference words) and for failures
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    hypothesis_words: int  # after normalisation: for non-speech, the hallucinated words
    audio_seconds: float
    processing_seconds: float
    error: str = ""  # why this utterance failed; empty when it did not
    dataset: str = ""  # the utterance's dataset (results saved before it existed have none)
    environment: str = ""  # RunEnvironment.label() of the run that transcribed it


def utterance_result(key: str, utt: Utterance, text: str, audio_seconds: float, seconds: float, language,
                     environment: str = "") -> UtteranceResult:  # fmt: skip
    """The row of one transcribed utterance, scored against its reference (WER for speech only)."""
    s = score(utt.reference, text, language)
    return UtteranceResult(
        key, utt.id, utt.kind, utt.reference, text,
        s.wer if utt.kind == "speech" else None,
        s.substitutions, s.deletions, s.insertions, s.reference_words,
        len(normalize(text, language).split()), audio_seconds, seconds, dataset=utt.dataset, environment=environment,
    )  # fmt: skip


def failed_result(key: str, utt: Utterance, error: str) -> UtteranceResult:
    """The row of an utterance that could not be transcribed, with the reason."""
    return UtteranceResult(key, utt.id, utt.kind, utt.reference, "", None, 0, 0, 0, 0, 0, 0.0, 0.0, error, utt.dataset)


def iter_evaluate(
    service: ModelService,
    models: Sequence[str],
    utterances: Sequence[Utterance],
    options: TranscribeOptions = TranscribeOptions(),
    language: Optional[str] = "en",
    max_seconds: Optional[float] = None,
) -> Iterator[UtteranceResult]:
    """One result per (model, utterance), model by model, as each finishes. Each model is first
    warmed up on the first speech utterance, so load time and first-call costs stay out of its
    RTFx. A model that cannot load fails its utterances with the reason and the rest go on."""
    warm_up = next((u for u in utterances if u.kind == "speech"), utterances[0] if utterances else None)
    for key in models:
        try:
            if warm_up is not None:
                service.transcribe(key, warm_up.load(max_seconds), options)
        except ModelError as exc:
            yield from (failed_result(key, u, str(exc)) for u in utterances)
            continue
        except AudioError:
            pass  # that utterance will fail below with its reason; the model still runs
        for utt in utterances:
            try:
                audio = utt.load(max_seconds)
                t = service.transcribe(key, audio, options)
            except (AudioError, ModelError, ValueError) as exc:
                yield failed_result(key, utt, str(exc))
                continue
            env = t.environment.label() if t.environment else ""
            yield utterance_result(key, utt, t.text, audio.duration, t.metrics.processing_seconds, language, env)


def evaluate(
    service: ModelService,
    models: Sequence[str],
    utterances: Sequence[Utterance],
    options: TranscribeOptions = TranscribeOptions(),
    language: Optional[str] = "en",
    on_result: Optional[Callable[[UtteranceResult], None]] = None,
) -> pd.DataFrame:
    """The per-utterance rows of every model (see iter_evaluate)."""
    results = []
    for result in iter_evaluate(service, models, utterances, options, language):
        results.append(result)
        if on_result:
            on_result(result)
    return rows_frame(results)


def rows_frame(results: Sequence[UtteranceResult]) -> pd.DataFrame:
    columns = list(UtteranceResult.__dataclass_fields__)
    return pd.DataFrame([asdict(r) for r in results], columns=columns)


# -- summarising ----------------------------------------------------------------------------------
def _summary_row(group: pd.DataFrame, language: Optional[str], normalizer: Optional[str],
                 price_per_hour: Optional[float] = None) -> dict:  # fmt: skip
    ok = group[group["error"].fillna("") == ""]
    speech, non_speech = ok[ok["kind"] == "speech"], ok[ok["kind"] == "non-speech"]
    s = score(list(speech["reference"]), list(speech["hypothesis"]), language, normalizer) if len(speech) else None
    audio, processing = speech["audio_seconds"].sum(), speech["processing_seconds"].sum()
    rtfx = metrics.rtfx(audio, processing)
    quiet = non_speech["audio_seconds"].sum()
    return {
        "wer": s.wer if s else None,
        "cer": s.cer if s else None,
        "substitutions": s.substitutions if s else 0,
        "deletions": s.deletions if s else 0,
        "insertions": s.insertions if s else 0,
        "reference_words": s.reference_words if s else 0,
        "utterances": len(speech),
        "failed": len(group) - len(ok),
        "audio_seconds": audio,
        "processing_seconds": processing,
        "rtfx": rtfx,
        "cost_per_audio_hour": metrics.cost_per_audio_hour(price_per_hour, rtfx),
        "non_speech_seconds": quiet,
        "hallucinated_words": int(non_speech["hypothesis_words"].sum()),
        "hallucinations_per_minute": probe.words_per_minute(int(non_speech["hypothesis_words"].sum()), quiet)
        if len(non_speech)
        else None,
        "normalizer": s.normalizer if s else None,
        # Several only if the rows ran in different environments: then they are not one
        # computation, and the summary says so rather than hide it.
        "environment": " | ".join(sorted(set(ok["environment"].fillna("")) - {""})) if "environment" in ok else "",
    }


def _datasets(rows: pd.DataFrame) -> pd.Series:
    return rows["dataset"].fillna("").astype(str) if "dataset" in rows else pd.Series("", index=rows.index)


def summarize_datasets(rows: pd.DataFrame, language: Optional[str] = "en", normalizer: Optional[str] = None) -> pd.DataFrame:
    """Per (model, dataset): the same figures as `summarize`, each dataset scored on its own."""
    keys = [rows["model"], _datasets(rows)]
    summary = [
        {"model": model, "dataset": dataset, **_summary_row(group, language, normalizer)}
        for (model, dataset), group in rows.groupby(keys, sort=False)
    ]
    return pd.DataFrame(summary)


def summarize(rows: pd.DataFrame, language: Optional[str] = "en", normalizer: Optional[str] = None,
              price_per_hour: Optional[float] = None) -> pd.DataFrame:  # fmt: skip
    """Per model: corpus WER/CER over speech (total errors / total reference words), counts, RTFx
    (total audio / total processing, as the Open ASR Leaderboard defines it), the cost per hour of
    audio at `price_per_hour` (DEVICE_PRICE_PER_HOUR), failures, the robustness probe's
    hallucinated words per minute of non-speech audio, and the run environment(s). When the rows hold
    several datasets with speech, also `mean_wer`: the unweighted mean of the per-dataset WERs
    (the leaderboard's headline figure; it ranks the models) and `datasets`, how many it averages."""
    summary = [
        {"model": key, **_summary_row(group, language, normalizer, price_per_hour)}
        for key, group in rows.groupby("model", sort=False)
    ]
    frame = pd.DataFrame(summary)
    if not len(frame):
        return frame
    by_dataset = summarize_datasets(rows, language, normalizer).dropna(subset=["wer"])
    rank = "wer"
    if by_dataset["dataset"].nunique() > 1:
        means = by_dataset.groupby("model", sort=False)["wer"].agg(["mean", "count"])
        frame["mean_wer"] = frame["model"].map(means["mean"])
        frame["datasets"] = frame["model"].map(means["count"]).fillna(0).astype(int)
        rank = "mean_wer"
    return frame.sort_values(rank, kind="stable", na_position="last").reset_index(drop=True)


# -- comparing two runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RunDifference:
    """Two evaluations of the same (model, utterance) pairs side by side: whether they ran in the
    same environment, which hypotheses differ, and each run's corpus WER per model. Runs in
    different environments (another thread count, CPU or library) are different computations:
    their differences are reported, never hidden."""

    environments: tuple[tuple[str, ...], tuple[str, ...]]  # the distinct environments of each run
    pairs: int  # (model, utterance) pairs transcribed in both
    changed: tuple[tuple[str, str], ...]  # (model, id) whose hypotheses differ
    wer: dict[str, tuple[Optional[float], Optional[float]]]  # per model: (first, second)

    @property
    def same_environment(self) -> bool:
        return self.environments[0] == self.environments[1]

    def report(self) -> str:
        lines = [
            "same run environment" if self.same_environment else "different run environments:",
            *([] if self.same_environment else [f"  first:  {' | '.join(self.environments[0])}",
                                                 f"  second: {' | '.join(self.environments[1])}"]),
            f"{len(self.changed)} of {self.pairs} utterances changed",
            *(f"  {model} {utt}" for model, utt in self.changed),
        ]  # fmt: skip
        for model, (a, b) in self.wer.items():
            show = lambda w: "n/a" if w is None else f"{w:.2%}"  # noqa: E731
            lines.append(f"WER {model}: {show(a)} → {show(b)}")
        return "\n".join(lines)


def compare_runs(first: pd.DataFrame, second: pd.DataFrame, language: Optional[str] = "en") -> RunDifference:
    """What differs between two evaluations' rows (evaluate's, the Ray backend's, or reloaded
    ones), over the (model, id) pairs that succeeded in both."""
    keys = [k for k in ("model", "dataset", "id") if k in first and k in second]
    ok = lambda rows: rows[rows["error"].fillna("") == ""]  # noqa: E731
    both = ok(first).merge(ok(second), on=keys, suffixes=("_a", "_b"))
    changed = both[both["hypothesis_a"] != both["hypothesis_b"]]
    wer: dict[str, tuple[Optional[float], Optional[float]]] = {}
    for model, group in both[both["kind_a"] == "speech"].groupby("model", sort=False):
        refs = list(group["reference_a"])
        wer[model] = (score(refs, list(group["hypothesis_a"]), language).wer, score(refs, list(group["hypothesis_b"]), language).wer)
    environments = tuple(tuple(sorted(set(rows.get("environment", pd.Series(dtype=object)).fillna("")) - {""}))
                         for rows in (ok(first), ok(second)))  # fmt: skip
    return RunDifference(
        environments=environments,  # type: ignore[arg-type]
        pairs=len(both),
        changed=tuple(zip(changed["model"], changed["id"])),
        wer=wer,
    )


# -- saving and reloading --------------------------------------------------------------------------
def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: NaN becomes None (JSON has no NaN)."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def results_payload(rows: pd.DataFrame, summary: pd.DataFrame, meta: dict) -> dict:
    return {"meta": meta, "summary": _records(summary), "utterances": _records(rows)}


def save_results(
    folder: Path, rows: pd.DataFrame, summary: pd.DataFrame, meta: dict, by_dataset: Optional[pd.DataFrame] = None
) -> list[Path]:
    """results.csv (per utterance), summary.csv (per model) and results.json (both, plus meta);
    given the per-dataset summary, also datasets.csv and a "datasets" list in results.json."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "results.csv", folder / "summary.csv", folder / "results.json"]
    rows.to_csv(paths[0], index=False)
    summary.to_csv(paths[1], index=False)
    payload = results_payload(rows, summary, meta)
    if by_dataset is not None:
        payload["datasets"] = _records(by_dataset)
        by_dataset.to_csv(folder / "datasets.csv", index=False)
        paths.append(folder / "datasets.csv")
    paths[2].write_text(json.dumps(payload, indent=1, default=str))
    return paths


def load_results(path: Union[Path, str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Reload saved results (results.json, or a results.csv of per-utterance rows); the summary
    is recomputed from the rows, so it is always consistent with them, with the normaliser the
    results were saved with (meta's "normalizer"; otherwise the default). Rows saved before the
    `dataset` column existed get an empty one."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            payload = json.loads(path.read_text(encoding="utf-8"))
            rows, meta = pd.DataFrame(payload["utterances"]), dict(payload.get("meta") or {})
        elif path.suffix.lower() == ".csv":
            rows, meta = pd.read_csv(path, keep_default_na=False, na_values={"wer": [""]}), {}
        else:
            raise DatasetError(f"{path.name}: expected a results.json or results.csv saved by an evaluation")
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path.name}: not saved evaluation results ({type(exc).__name__}: {exc})") from None
    for column in ("dataset", "environment"):  # saved before results recorded them
        if column not in rows.columns:
            rows[column] = ""
    missing = [c for c in UtteranceResult.__dataclass_fields__ if c not in rows.columns]
    if missing:
        raise DatasetError(f"{path.name}: not saved evaluation results (missing columns {', '.join(missing)})")
    rows["error"] = rows["error"].fillna("").astype(str)
    for column in ("reference", "hypothesis", "dataset"):
        rows[column] = rows[column].fillna("").astype(str)
    return rows, summarize(rows, meta.get("language", "en"), meta.get("normalizer")), meta


@dataclass(frozen=True)
class ZipLimits:
    """How much an uploaded .zip may unpack to (MAX_ZIP_MEMBERS, MAX_ZIP_MB, MAX_ZIP_RATIO)."""

    members: int = 10_000
    bytes: int = 2 << 30
    ratio: float = 100.0  # uncompressed / compressed, over the whole archive


def _member_path(name: str) -> Optional[PurePosixPath]:
    """A member's relative path, or None for one that would leave the folder it is unpacked in
    (absolute, a drive, or a ".." part)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


def _unzip(archive_path: Path, folder: Path, limits: ZipLimits) -> None:
    """Unpack member by member within `limits`: the archive's declared sizes are checked before
    anything is written, and the bytes actually written are counted too (declared sizes can lie)."""
    import zipfile

    where = archive_path.name
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = archive.infolist()
            if len(members) > limits.members:
                raise DatasetError(f"{where}: {len(members)} files in the archive, more than the {limits.members} allowed (MAX_ZIP_MEMBERS)")
            bad = [m.filename for m in members if _member_path(m.filename) is None]
            if bad:
                raise DatasetError(f"{where}: member {bad[0]} has an absolute path or '..': paths must stay inside the archive")
            declared, packed = sum(m.file_size for m in members), sum(m.compress_size for m in members)
            if declared > limits.bytes:
                raise DatasetError(f"{where}: unpacks to {declared / 2**20:.0f} MB, more than the {limits.bytes / 2**20:.0f} MB allowed (MAX_ZIP_MB)")
            if declared > limits.ratio * max(packed, 1):
                raise DatasetError(f"{where}: compressed {declared / max(packed, 1):.0f}:1, more than the {limits.ratio:g}:1 allowed (MAX_ZIP_RATIO)")
            written = 0
            for member in members:
                target = folder / _member_path(member.filename)  # type: ignore[operator]
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limits.bytes:
                            raise DatasetError(f"{where}: unpacks to more than the {limits.bytes / 2**20:.0f} MB allowed (MAX_ZIP_MB)")
                        dst.write(chunk)
    except zipfile.BadZipFile as exc:  # not a zip, or a member whose CRC or size does not match
        raise DatasetError(f"{where}: not a zip archive" + (f" ({exc})" if "File is not a zip file" not in str(exc) else "")) from None
    except (zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError) as exc:  # encrypted, unknown compression
        raise DatasetError(f"{where}: cannot unpack ({type(exc).__name__}: {exc})") from None


def dataset_from_files(paths: Sequence[Union[str, Path]], workdir: Path, zip_limits: ZipLimits = ZipLimits()) -> Path:
    """Gather uploaded files into one folder and say which dataset they make: the manifest among
    them, a manifest or saved `datasets` folder inside a .zip, or else a folder of audio + .txt.
    Uploads arrive each in its own temporary folder, so only their file names are kept; a .zip is
    unpacked within `zip_limits`."""
    import shutil

    workdir.mkdir(parents=True, exist_ok=True)
    for path in map(Path, paths):
        if path.suffix.lower() == ".zip":
            _unzip(path, workdir, zip_limits)
        else:
            shutil.copyfile(path, workdir / path.name)
    manifests = sorted(p for p in workdir.rglob("*") if p.suffix.lower() in MANIFEST_SUFFIXES and p.is_file())
    if len(manifests) > 1:
        raise DatasetError(f"several manifests ({', '.join(p.name for p in manifests)}): give one")
    if manifests:
        return manifests[0]
    saved = sorted(p.parent for p in workdir.rglob("*.json") if _is_saved_dataset(p.parent))
    if saved:
        return saved[0]
    folders = sorted({p.parent for p in workdir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES})
    if len(folders) != 1:
        raise DatasetError("no audio files found" if not folders else "audio files are in several folders: give one")
    return folders[0]

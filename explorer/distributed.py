"""The evaluation on a Ray cluster: ``python -m explorer eval ... --backend ray [--address ADDR]``.

The same evaluation as ``explorer.evaluate.evaluate`` (same hypotheses, same scores), spread over
a cluster with Ray Data:

- the utterances become a Ray Dataset (``ray.data.from_items``: index, id, audio, reference, kind);
- decoding to 16 kHz mono float32 runs as CPU tasks (``map``), through ``Utterance.load``;
- transcription runs in an actor pool per model (``map_batches`` with a callable class,
  ``concurrency=actors``, ``num_cpus=1`` each); every actor builds its own ``ModelService`` from
  ``Settings.from_env()`` and loads and warms the model up once in ``__init__`` (on the first
  speech utterance, as the local backend does), so the load stays out of RTFx;
- scoring happens once at the end, on the driver, through ``explorer.evaluate``'s own code.

Each row also says which Ray node transcribed it (``node_id``). A file that cannot be decoded
is recorded as failed with its reason, as locally. An actor that dies (a crashed worker, a lost
node) is restarted and its batch retried: ``max_restarts`` / ``max_task_retries`` on the pool's
actors, passed through ``map_batches`` as Ray Data documents (Ray Data's own defaults are -1,
unlimited; here they are finite, so a model that crashes every time ends the run with Ray's error
instead of looping). Ray 2.60 warns that such extra remote arguments are deprecated for 2.64.
An actor whose ``__init__`` dies is replaced up to ``DataContext.max_consecutive_actor_init_deaths``.

RTFx is reported twice: the summary's ``rtfx`` is the leaderboard's (total audio / total
per-utterance processing time, as locally), and ``throughput_rtfx``, which only this backend
adds, is total speech audio / wall-clock seconds of that model's whole run on the cluster
(decoding, actor start, model load and warm-up included).

Models are run one after another, each in its own pipeline; decoding is repeated per model rather
than holding a whole dataset's decoded audio in the object store.

Ray is imported only inside this module's functions: the app and the local backend never load it.
CTranslate2's thread count (faster-whisper's ``cpu_threads``) is not set by the engine; it falls
back to ``OMP_NUM_THREADS``, which Ray sets to each actor's ``num_cpus`` (1).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from explorer.evaluate import Utterance, _failure, _result, rows_frame, summarize
from explorer.types import TranscribeOptions

# Settings.from_env reads these; workers get the driver's values (the models' folder above all).
WORKER_ENV = (
    "MODELS_DIR", "HF_HUB_OFFLINE", "HF_HOME", "XDG_CACHE_HOME", "DEVICE", "COMPUTE_TYPE",
    "MAX_LOADED_MODELS", "MAX_AUDIO_SECONDS", "TRUST_REMOTE_CODE_MODELS",
)  # fmt: skip
ACTOR_RETRIES = 2  # restarts of a dead actor, and retries of the batch it was running


@dataclass(frozen=True)
class RayEvaluation:
    rows: pd.DataFrame  # explorer.evaluate's per-utterance columns, plus node_id
    wall_seconds: dict[str, float]  # per model: its whole run, start to last row

    def summary(self, language: Optional[str] = "en") -> pd.DataFrame:
        """``evaluate.summarize`` of the rows, plus ``throughput_rtfx`` (speech audio / wall s)."""
        frame = summarize(self.rows.drop(columns=["node_id"]), language)
        if len(frame):
            wall = frame["model"].map(self.wall_seconds)
            frame["wall_seconds"] = wall
            frame["throughput_rtfx"] = [a / w if w and w > 0 else None for a, w in zip(frame["audio_seconds"], wall)]
        return frame


# -- the dataset's rows ------------------------------------------------------------------------
def _item(index: int, utt: Utterance) -> dict:
    """An utterance as a plain row: its audio as a path, a file's bytes, or raw float32 samples."""
    if isinstance(utt.audio, Path):
        source, path, data = "path", str(utt.audio), b""
    elif isinstance(utt.audio, bytes):
        source, path, data = "bytes", "", utt.audio
    else:
        source, path, data = "samples", "", np.ascontiguousarray(utt.audio, dtype=np.float32).tobytes()
    return {"index": index, "id": utt.id, "source": source, "path": path, "data": data, "reference": utt.reference, "kind": utt.kind}


def _utterance(row: dict) -> Utterance:
    audio = {"path": lambda: Path(row["path"]), "bytes": lambda: bytes(row["data"])}.get(
        row["source"], lambda: np.frombuffer(row["data"], dtype=np.float32)
    )()
    return Utterance(str(row["id"]), audio, str(row["reference"]), row["kind"])


def _decode(row: dict, max_seconds: Optional[float] = None) -> dict:
    """A CPU task: the utterance decoded to 16 kHz float32 (as bytes), or why it could not be."""
    from explorer.audio import AudioError

    out = {k: row[k] for k in ("index", "id", "reference", "kind")}
    try:
        out["samples"], out["error"] = _utterance(row).load(max_seconds).samples.tobytes(), ""
    except (AudioError, ValueError) as exc:
        out["samples"], out["error"] = b"", str(exc)
    return out


class Transcriber:
    """One actor of a model's pool: loads the model once and warms it up, then transcribes."""

    def __init__(self, key: str, options: TranscribeOptions, warm_up: Optional[dict], max_seconds: Optional[float] = None):
        import ray

        from explorer.audio import AudioError
        from explorer.config import Settings
        from explorer.service import ModelError, ModelService

        self.key, self.options = key, options
        self.node_id = ray.get_runtime_context().get_node_id()
        self.service = ModelService(Settings.from_env())
        try:
            if warm_up is not None:
                self.service.transcribe(key, _utterance(warm_up).load(max_seconds), options)
        except (AudioError, ModelError):
            pass  # as locally: a model that cannot load fails each utterance below with the reason

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from explorer.audio import Audio, AudioError
        from explorer.service import ModelError

        hypotheses, audio_seconds, processing, errors = [], [], [], []
        for samples, error in zip(batch["samples"], batch["error"]):
            text, seconds, duration = "", 0.0, 0.0
            if not error:
                audio = Audio(np.frombuffer(samples, dtype=np.float32))
                try:
                    t = self.service.transcribe(self.key, audio, self.options)
                    text, seconds, duration = t.text, t.metrics.processing_seconds, audio.duration
                except (AudioError, ModelError, ValueError) as exc:
                    error = str(exc)
            hypotheses.append(text), processing.append(seconds), audio_seconds.append(duration), errors.append(error)
        return {
            **{k: batch[k] for k in ("index", "id", "reference", "kind")},
            "hypothesis": np.array(hypotheses, dtype=object),
            "audio_seconds": np.array(audio_seconds, dtype=np.float64),
            "processing_seconds": np.array(processing, dtype=np.float64),
            "error": np.array(errors, dtype=object),
            "node_id": np.array([self.node_id] * len(errors), dtype=object),
        }


# -- running -------------------------------------------------------------------------------------
def connect(address: Optional[str] = None, num_cpus: Optional[int] = None, **kwargs) -> None:
    """Start a local Ray (or join the cluster at `address`) unless this process already has one;
    workers get the settings' environment (WORKER_ENV) and find this package through PYTHONPATH,
    so every node must see it at the driver's path (one machine, a shared file system or the
    same image); the models likewise under MODELS_DIR."""
    import ray

    if ray.is_initialized():
        return
    env = {name: os.environ[name] for name in WORKER_ENV if os.environ.get(name)}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        address=address or "local",  # not Ray's default of joining a cluster `ray start` left running here
        num_cpus=None if address else num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        log_to_driver=False,
        **kwargs,
    )


def evaluate_on_ray(
    models: Sequence[str],
    utterances: Sequence[Utterance],
    options: TranscribeOptions = TranscribeOptions(),
    language: Optional[str] = "en",
    *,
    actors: int = 1,
    address: Optional[str] = None,
    max_seconds: Optional[float] = None,
) -> RayEvaluation:
    """``explorer.evaluate.evaluate`` on Ray: the same rows in the same order (model by model, in
    the dataset's order), plus the node that transcribed each; `actors` per model."""
    import ray

    connect(address)
    items = [_item(i, u) for i, u in enumerate(utterances)]
    by_index = {i: u for i, u in enumerate(utterances)}
    warm_up = next((item for item in items if item["kind"] == "speech"), items[0] if items else None)
    results, node_ids, wall = [], [], {}
    for key in models:
        start = time.perf_counter()
        gathered = []
        if items:
            dataset = ray.data.from_items(items).map(_decode, fn_kwargs={"max_seconds": max_seconds}, num_cpus=0.5)
            dataset = dataset.map_batches(
                Transcriber,
                fn_constructor_kwargs={"key": key, "options": options, "warm_up": warm_up, "max_seconds": max_seconds},
                batch_size=1,
                concurrency=actors,
                num_cpus=1,
                max_restarts=ACTOR_RETRIES,
                max_task_retries=ACTOR_RETRIES,
            )
            gathered = sorted(dataset.take_all(), key=lambda r: int(r["index"]))
        wall[key] = time.perf_counter() - start
        for row in gathered:
            utt = by_index[int(row["index"])]
            if row["error"]:
                results.append(_failure(key, utt, str(row["error"])))
            else:
                results.append(_result(key, utt, str(row["hypothesis"]), float(row["audio_seconds"]), float(row["processing_seconds"]), language))
            node_ids.append(str(row["node_id"]))
    rows = rows_frame(results)
    rows["node_id"] = pd.Series(node_ids, dtype=object)
    return RayEvaluation(rows, wall)


def save_parquet(folder: Path, rows: pd.DataFrame) -> Path:
    """results.parquet: the per-utterance rows, for runs too big for CSV/JSON to be handy."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.parquet"
    rows.to_parquet(path, index=False)
    return path

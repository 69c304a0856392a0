"""The evaluation on a Ray cluster: ``python -m explorer eval ... --backend ray [--address ADDR]``.

The same evaluation as ``explorer.evaluate.evaluate`` (same hypotheses, same scores), spread over
a cluster with Ray Data:

- the utterances become a Ray Dataset (``ray.data.from_items``: index, id, audio, reference, kind);
- decoding to 16 kHz mono float32 runs as Ray tasks (``map``, at most one per actor at a time),
  through ``Utterance.load``;
- transcription runs in an actor pool per model (``map_batches`` with a callable class,
  ``ActorPoolStrategy(size=actors)``; one GPU each on a cluster with GPUs, one actor per GPU by default;
  else one CPU slot each; the engine's threads are CPU_THREADS); every actor builds its own ``ModelService`` from
  ``Settings.from_env()`` and loads and warms the model up once in ``__init__`` (on the first
  speech utterance, as the local backend does), so the load stays out of RTFx;
- scoring happens once at the end, on the driver, through ``explorer.evaluate``'s own code.

Each row also says which Ray node transcribed it (``node_id``). A file that cannot be decoded
is recorded as failed with its reason, as locally. An actor that dies (a crashed worker, a lost
node) is restarted as a new process and the utterance it held is tried once more
(``max_task_retries=1`` on the pool's actors, passed through ``map_batches`` as Ray Data documents;
Ray 2.60 warns that such arguments are deprecated for 2.64). An utterance whose retry dies too is
dropped by Ray Data (``max_errored_blocks=-1``, one block per utterance) and recorded by the driver
as failed ("lost: ..."), so the run completes with exactly one row per utterance. Any other error
while decoding or transcribing (a CUDA out-of-memory, say) is that utterance's failed row, with
its type and message. Restarts are bounded (``ACTOR_RESTARTS`` per actor), so a model that keeps
killing its actor is not reloaded forever; an actor whose ``__init__`` dies is replaced up to
``DataContext.max_consecutive_actor_init_deaths``.

RTFx is reported twice: the summary's ``rtfx`` is the leaderboard's (total audio / total
per-utterance processing time, as locally), and ``throughput_rtfx``, which only this backend
adds, is total speech audio / wall-clock seconds of that model's whole run on the cluster
(decoding, actor start, model load and warm-up included).

Models are run one after another, each in its own pipeline; decoding is repeated per model rather
than holding a whole dataset's decoded audio in the object store.

Ray is imported only inside this module's functions: the app and the local backend never load it.
The engines' thread count is ``CPU_THREADS``, the driver's value (its default resolved on the
driver), not ``OMP_NUM_THREADS``, which Ray sets to each actor's ``num_cpus`` (1): an actor runs
the same computation as the local backend, and each row's ``environment`` says so. Ray's
``num_cpus`` per actor stays what schedules the actors.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from explorer.audio import Audio, AudioError, load_audio
from explorer.evaluate import Utterance, UtteranceResult, failed_result, rows_frame, summarize, utterance_result
from explorer.types import TranscribeOptions

# Settings.from_env reads these; workers get the driver's values (the models' folder above all).
WORKER_ENV = (
    "MODELS_DIR", "HF_HUB_OFFLINE", "HF_HOME", "XDG_CACHE_HOME", "DEVICE", "COMPUTE_TYPE",
    "MAX_LOADED_MODELS", "MAX_AUDIO_SECONDS", "TRUST_REMOTE_CODE_MODELS",
)  # fmt: skip
TASK_RETRIES = 1  # a batch whose actor died runs once more, on the restarted actor (a new process)
_CONNECTING = threading.Lock()
ACTOR_RESTARTS = 10  # per actor: past this many deaths the model is broken, and the actor stays dead
LOST = "lost: the Ray worker transcribing it died on its first try and on its retry"


@dataclass(frozen=True)
class RayEvaluation:
    rows: pd.DataFrame  # explorer.evaluate's per-utterance columns, plus node_id
    wall_seconds: dict[str, float]  # per model: its whole run, start to last row

    def summary(self, language: Optional[str] = "en", price_per_hour: Optional[float] = None) -> pd.DataFrame:
        """``evaluate.summarize`` of the rows, plus ``throughput_rtfx`` (speech audio / wall s)."""
        frame = summarize(self.rows.drop(columns=["node_id"]), language, price_per_hour=price_per_hour)
        if len(frame):
            wall = frame["model"].map(self.wall_seconds)
            frame["wall_seconds"] = wall
            frame["throughput_rtfx"] = [a / w if w and w > 0 else None for a, w in zip(frame["audio_seconds"], wall)]
        return frame


# -- the dataset's rows ------------------------------------------------------------------------
def _item(index: int, utt: Utterance, ship_files: bool = False) -> dict:
    """An utterance as a plain row: its audio as a path, a file's bytes, or raw float32 samples.
    With `ship_files`, a file's bytes rather than its path (a cluster's nodes may not see it);
    a file that cannot be read stays a path and fails with its reason in the decode task."""
    if isinstance(utt.audio, Path) and ship_files and utt.audio.is_file():
        source, path, data = "bytes", str(utt.audio), utt.audio.read_bytes()
    elif isinstance(utt.audio, Path):
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


def _load(row: dict, max_seconds: Optional[float]) -> Audio:
    """A row's audio; a shipped file's errors name the file, as they do when it is read locally."""
    if row["source"] == "bytes" and row["path"]:
        return load_audio(bytes(row["data"]), max_seconds=max_seconds, name=Path(row["path"]).name)
    return _utterance(row).load(max_seconds)


def _decode(row: dict, max_seconds: Optional[float] = None) -> dict:
    """A CPU task: the utterance decoded to 16 kHz float32 (as bytes), or why it could not be."""
    out = {k: row[k] for k in ("index", "id", "reference", "kind")}
    try:
        out["samples"], out["error"] = _load(row, max_seconds).samples.tobytes(), ""
    except (AudioError, ValueError) as exc:
        out["samples"], out["error"] = b"", str(exc)
    except Exception as exc:  # any other error is this utterance's, not a dead worker's
        out["samples"], out["error"] = b"", f"{type(exc).__name__}: {exc}"
    return out


class Transcriber:
    """One actor of a model's pool: loads the model once and warms it up, then transcribes."""

    def __init__(self, key: str, options: TranscribeOptions, warm_up: Optional[dict], max_seconds: Optional[float] = None):
        import ray

        from explorer.config import Settings
        from explorer.service import ModelError, ModelService

        self.key, self.options = key, options
        self.node_id = ray.get_runtime_context().get_node_id()
        self.service = ModelService(Settings.from_env())
        try:
            if warm_up is not None:
                self.service.transcribe(key, _load(warm_up, max_seconds), options)
        except (AudioError, ModelError):
            pass  # as locally: a model that cannot load fails each utterance below with the reason

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from explorer.service import ModelError

        hypotheses, audio_seconds, processing, errors, environments = [], [], [], [], []
        for samples, error in zip(batch["samples"], batch["error"]):
            text, seconds, duration, env = "", 0.0, 0.0, ""
            if not error:
                audio = Audio(np.frombuffer(samples, dtype=np.float32))
                try:
                    t = self.service.transcribe(self.key, audio, self.options)
                    text, seconds, duration = t.text, t.metrics.processing_seconds, audio.duration
                    env = t.environment.label() if t.environment else ""
                except (AudioError, ModelError, ValueError) as exc:
                    error = str(exc)
                except Exception as exc:  # e.g. CUDA out of memory: a failed row, not a "lost" one
                    error = f"{type(exc).__name__}: {exc}"
            hypotheses.append(text), processing.append(seconds), audio_seconds.append(duration), errors.append(error)
            environments.append(env)
        return {
            **{k: batch[k] for k in ("index", "id", "reference", "kind")},
            "hypothesis": np.array(hypotheses, dtype=object),
            "audio_seconds": np.array(audio_seconds, dtype=np.float64),
            "processing_seconds": np.array(processing, dtype=np.float64),
            "error": np.array(errors, dtype=object),
            "environment": np.array(environments, dtype=object),
            "node_id": np.array([self.node_id] * len(errors), dtype=object),
        }


# -- running -------------------------------------------------------------------------------------
def connect(address: Optional[str] = None, num_cpus: Optional[int] = None, **kwargs) -> None:
    """Start a local Ray (or join the cluster at `address`) unless this process already has one;
    workers get the settings' environment (WORKER_ENV) and find this package through PYTHONPATH,
    so every node must see it at the driver's path (one machine, a shared file system or the
    same image); the models likewise under MODELS_DIR."""
    import ray

    from explorer.config import all_cores

    env = {name: os.environ[name] for name in WORKER_ENV if os.environ.get(name)}
    # The driver's thread count, resolved here: an actor's own default could differ (another node).
    env["CPU_THREADS"] = os.environ.get("CPU_THREADS") or str(all_cores())
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    with _CONNECTING:  # two evaluations starting at once (the Evaluate tab) must not both init
        if ray.is_initialized():
            return
        ray.init(
            address=address or "local",  # not Ray's default of joining a cluster `ray start` left running here
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            runtime_env={"env_vars": env},
            log_to_driver=False,
            **kwargs,
        )


@dataclass(frozen=True)
class ActorPool:
    """A model's transcription actors: each holds `gpus` GPUs (so Ray sets its CUDA_VISIBLE_DEVICES
    and the engine picks CUDA) or none, and one CPU slot for scheduling (the engine's threads are
    CPU_THREADS, whatever Ray sets OMP_NUM_THREADS to)."""

    actors: int
    gpus: float


def actor_pool(actors: Optional[int] = None, gpus_per_actor: Optional[float] = None) -> ActorPool:
    """Defaults from the cluster: one GPU per actor and one actor per GPU when it has GPUs; else
    one CPU actor."""
    import ray

    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = (1.0 if cluster_gpus else 0.0) if gpus_per_actor is None else gpus_per_actor
    if actors is None:
        actors = max(1, int(cluster_gpus // gpus)) if gpus else 1
    return ActorPool(actors, gpus)


def _pipeline(key: str, items: list[dict], options: TranscribeOptions, warm_up: Optional[dict], pool: ActorPool,
              max_seconds: Optional[float]):
    """One model's Ray Dataset: decode tasks, then its actor pool. One block per utterance, so a
    worker that dies twice on a block loses only that utterance, and that block is dropped instead
    of ending the run (``max_errored_blocks``): the driver records it as failed. Decode tasks
    reserve no CPU (they are a few per cent of the work, and a pool holding every CPU of the
    cluster would otherwise starve its own input) but run at most one per actor at a time, so
    Ray does not start a worker process per block."""
    import ray

    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    decoders = ray.data.TaskPoolStrategy(size=pool.actors)
    dataset = dataset.map(_decode, fn_kwargs={"max_seconds": max_seconds}, num_cpus=0, compute=decoders)
    with warnings.catch_warnings():  # max_restarts/max_task_retries: the documented way until Ray 2.64
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = dataset.map_batches(
            Transcriber,
            fn_constructor_kwargs={"key": key, "options": options, "warm_up": warm_up, "max_seconds": max_seconds},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_cpus=1,
            num_gpus=pool.gpus,
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=TASK_RETRIES,
        )
    dataset.context.max_errored_blocks = -1
    return dataset


@dataclass(frozen=True)
class RayRow:
    """One (model, utterance) result from the cluster, as it arrives."""

    index: int  # the utterance's place in the dataset
    result: UtteranceResult
    node_id: str  # the Ray node whose actor transcribed it ("" when no actor returned it)
    elapsed: float  # seconds since this model's run started


def iter_evaluate_on_ray(
    models: Sequence[str],
    utterances: Sequence[Utterance],
    options: TranscribeOptions = TranscribeOptions(),
    language: Optional[str] = "en",
    *,
    actors: Optional[int] = None,
    gpus_per_actor: Optional[float] = None,
    address: Optional[str] = None,
    max_seconds: Optional[float] = None,
) -> Iterator[RayRow]:
    """Each (model, utterance) result as the cluster returns it, model by model (within a model in
    completion order): exactly one row per pair, either a result or a failure with its reason.

    On a cluster (`address` given) the driver reads each file and ships its bytes through the
    object store, so the nodes need no shared file system; a local cluster reads the paths."""
    connect(address)
    pool = actor_pool(actors, gpus_per_actor)
    items = [_item(i, u, ship_files=address is not None) for i, u in enumerate(utterances)]
    warm_up = next((item for item in items if item["kind"] == "speech"), items[0] if items else None)
    for key in models:
        start, returned = time.perf_counter(), set()
        for row in _pipeline(key, items, options, warm_up, pool, max_seconds).iter_rows() if items else ():
            index = int(row["index"])
            returned.add(index)
            utt = utterances[index]
            if row["error"]:
                result = failed_result(key, utt, str(row["error"]))
            else:
                result = utterance_result(key, utt, str(row["hypothesis"]), float(row["audio_seconds"]),
                                          float(row["processing_seconds"]), language, str(row["environment"]))  # fmt: skip
            yield RayRow(index, result, str(row["node_id"]), time.perf_counter() - start)
        for index in sorted(set(range(len(items))) - returned):
            yield RayRow(index, failed_result(key, utterances[index], LOST), "", time.perf_counter() - start)


def evaluate_on_ray(models: Sequence[str], utterances: Sequence[Utterance], *args, **kwargs) -> RayEvaluation:
    """``explorer.evaluate.evaluate`` on Ray (``iter_evaluate_on_ray``'s arguments): the same rows in
    the same order (model by model, in the dataset's order), plus the node that transcribed each."""
    return gathered(models, list(iter_evaluate_on_ray(models, utterances, *args, **kwargs)))


def gathered(models: Sequence[str], rows: Sequence[RayRow]) -> RayEvaluation:
    """Rows that arrived in any order, put in the local backend's order; each model's wall time
    is its last row's."""
    order = {key: i for i, key in enumerate(models)}
    rows = sorted(rows, key=lambda r: (order[r.result.model], r.index))
    frame = rows_frame([r.result for r in rows])
    frame["node_id"] = pd.Series([r.node_id for r in rows], dtype=object)
    wall: dict[str, float] = {}
    for r in rows:
        wall[r.result.model] = max(wall.get(r.result.model, 0.0), r.elapsed)
    return RayEvaluation(frame, wall)


def save_parquet(folder: Path, rows: pd.DataFrame) -> Path:
    """results.parquet: the per-utterance rows, for runs too big for CSV/JSON to be handy."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.parquet"
    rows.to_parquet(path, index=False)
    return path

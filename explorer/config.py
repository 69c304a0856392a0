"""Settings from environment variables (names kept from the original design)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

DEFAULT_MODEL = "faster-whisper/tiny.en"
# Repos whose remote code we agree to run: trust_remote_code is never granted to an arbitrary id.
DEFAULT_REMOTE_CODE_ALLOWLIST = ("CohereLabs/cohere-transcribe-03-2026",)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# How long a claimed job stays a worker's without a heartbeat (renewed every quarter of it): long
# enough that a busy worker's heartbeat is never late, short enough that a dead worker's jobs soon
# run elsewhere (every runner takes back expired leases every half lease).
DEFAULT_LEASE_SECONDS = 120.0
MB = 1 << 20  # the size settings (MAX_UPLOAD_MB, MAX_ZIP_MB) count binary megabytes


def store_kind(url: str) -> str:
    """Which job store JOB_STORE names: "sqlite" (empty or "sqlite") or "redis" (a Redis/Valkey URL)."""
    url = (url or "").strip()
    if url in ("", "sqlite"):
        return "sqlite"
    if url.startswith(REDIS_SCHEMES):
        return "redis"
    raise ValueError(f"JOB_STORE must be empty, 'sqlite' or a redis://, rediss:// or unix:// URL, got {url!r}")


def all_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "open-asr-explorer" / "models"


def default_data_dir() -> Path:
    return default_models_dir().parent / "data"


def isolation_policy(raw: str) -> str:
    """CROSS_ORIGIN_ISOLATION as the embedder policy it means: 1/on -> credentialless, 0/off -> off."""
    value = raw.strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return "credentialless"
    if value in ("0", "false", "no", "off"):
        return "off"
    return value  # checked by validate()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    default_model: str = DEFAULT_MODEL
    hf_token: Optional[str] = None
    offline: bool = False
    models_dir: Path = field(default_factory=default_models_dir)
    num_workers: int = 1
    queue_max_size: int = 32
    # Gradio keeps a copy of every component's config per session (~0.5 MB with this app's tabs,
    # bench/bench_memory.py), dropping the least recently used session past this many; Gradio's
    # own default, 10,000, lets strangers' sessions hold ~5 GB.
    max_sessions: int = 1000
    max_loaded_models: int = 2
    gpu_memory_utilization: float = 0.9
    max_audio_seconds: float = 30 * 60
    max_upload_mb: float = 200
    # An uploaded .zip (Evaluate tab) may hold this many files, unpack to this much, at this
    # compression ratio at most: a few KB of zip can otherwise unpack to gigabytes.
    max_zip_members: int = 10_000
    max_zip_mb: float = 2048
    max_zip_ratio: float = 100
    # What one stranger may start (a session is free to make, so these bound one client's
    # share, and QUEUE_MAX_SIZE / MAX_WATCHERS the whole server's).
    max_batch_files: int = 200  # files per /submit_batch
    max_queued_jobs: int = 500  # unfinished (queued or processing) jobs per session, resubmits included
    max_watchers_per_session: int = 2  # concurrent /watch_batch (and Batch tab) watchers per session
    max_watchers: int = 64  # concurrent watchers, all sessions together
    job_api_concurrency: int = 4  # concurrent /jobs, /job, /cancel_job, /delete_job, /resubmit, /export_jobs calls
    max_job_rows: int = 1000  # rows per /jobs or /watch_batch answer (a page; /jobs takes an offset)
    # /health shows worker detail (hosts, pids) only to a request carrying this token; unset: never.
    admin_token: Optional[str] = None
    # Signs session tokens; empty: a secret made once in data_dir. App servers sharing a job store
    # must share it (workers never check tokens).
    session_secret: str = ""
    device: str = "auto"  # auto | cpu | cuda
    compute_type: Optional[str] = None  # faster-whisper override, e.g. float32
    # Threads of every engine's CPU kernels (CTranslate2, onnxruntime, torch). Outputs can depend
    # on it (a different split of a matrix product rounds differently), so it is fixed here and
    # recorded in each result's RunEnvironment rather than left to OMP_NUM_THREADS or a library.
    cpu_threads: int = field(default_factory=all_cores)
    # The hardware's price per hour (e.g. the Space's), for cost per hour of audio = price / RTFx.
    device_price_per_hour: Optional[float] = None
    remote_code_allowlist: tuple[str, ...] = DEFAULT_REMOTE_CODE_ALLOWLIST
    hub_timeout_seconds: float = 3.0
    data_dir: Path = field(default_factory=default_data_dir)  # the job store and its audio spool
    batch_workers: int = 1  # threads taking batch jobs (each also needs a device slot)
    batch_size: int = 8  # files per batched model call (faster-whisper, files up to 30 s)
    # A batched call runs in steps (each file encoded alone, then decoded this many at a time),
    # and an interactive request that waits gets the device slot between two steps; 0: one step.
    batch_step_files: int = 4
    job_ttl_hours: float = 24.0
    # Files the app hands out (downloads, exports, a job's audio for the player) and uploads live
    # in Gradio's cache this long; Gradio's delete_cache removes them.
    output_ttl_minutes: float = 60.0
    sweep_interval_seconds: float = 600.0
    ray_address: str = ""  # the Evaluate tab runs on this Ray cluster ("local": a Ray on this machine)
    ray_actors: int = 0  # transcription actors per model on Ray; 0: one per GPU of the cluster, or 1
    job_store: str = ""  # "" (SQLite in data_dir) or a Redis/Valkey URL shared by every worker
    job_lease_seconds: float = DEFAULT_LEASE_SECONDS  # a claimed job is queued again this long after its last heartbeat
    # The most one ZeroGPU call may ask for (explorer/gpu.py): the scheduler refuses longer ones.
    zero_gpu_max_seconds: float = 300.0
    # Where the Browser tab's npm assets are (None: node_modules beside the component package);
    # the first start fetches them there when missing (explorer/first_start.py).
    browser_assets_dir: Optional[Path] = None
    # Whether `python app.py` prepares a missing zoo model or browser asset before it serves
    # (explorer/first_start.py); off, it serves with what there is (tests and benchmarks prepare
    # just the models they use).
    prepare_on_start: bool = True
    worker_beat_seconds: float = 5.0  # how often a worker reports itself (status shown in the Batch tab and /health)
    # COEP of every response (explorer/isolation.py): "credentialless", "require-corp", or "off" (no
    # COOP/COEP: the browser's WASM runs on one thread).
    cross_origin_isolation: str = "credentialless"
    # The blind arena (Arena tab): which models battle (empty: every ready model), how long an
    # issued battle may be voted on, and how many votes one session may cast per hour.
    arena_models: tuple[str, ...] = ()
    arena_battle_ttl_minutes: float = 30.0
    arena_votes_per_hour: int = 60
    # Live server streaming (explorer/live.py): open streams in all and per session (a Gradio
    # session, an API client's address), the audio one stream may send, and how long a stream
    # may go without audio before it is closed (a client that left).
    max_live_streams: int = 4
    max_live_streams_per_session: int = 1
    live_stream_max_seconds: float = 300.0
    live_stream_idle_seconds: float = 30.0
    # With a key, the OpenAI-compatible routes (/v1/...) need `Authorization: Bearer <key>`; None: open.
    api_key: Optional[str] = field(default=None, repr=False)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_zip_bytes(self) -> int:
        return int(self.max_zip_mb * MB)

    @property
    def delete_cache(self) -> tuple[int, int]:
        """Gradio's delete_cache (every `frequency` s, files older than `age` s): a file goes at most
        about 1.25 × OUTPUT_TTL_MINUTES after it was written (the sweep runs every quarter TTL, at
        most every 5 minutes)."""
        age = max(1, round(self.output_ttl_minutes * 60))
        return max(1, min(age // 4, 300)), age

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if env is None else env
        allow = env.get("TRUST_REMOTE_CODE_MODELS")
        settings = cls(
            host=env.get("HOST") or env.get("GRADIO_SERVER_NAME") or cls.host,
            port=_int(env, "PORT", _int(env, "GRADIO_SERVER_PORT", cls.port)),
            default_model=env.get("WHISPER_MODEL") or DEFAULT_MODEL,
            hf_token=env.get("HF_TOKEN") or None,
            offline=env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"),
            models_dir=Path(env["MODELS_DIR"]) if env.get("MODELS_DIR") else default_models_dir(),
            num_workers=_int(env, "NUM_WORKERS", cls.num_workers),
            queue_max_size=_int(env, "QUEUE_MAX_SIZE", cls.queue_max_size),
            max_sessions=_int(env, "MAX_SESSIONS", cls.max_sessions),
            max_loaded_models=_int(env, "MAX_LOADED_MODELS", cls.max_loaded_models),
            gpu_memory_utilization=_float(env, "GPU_MEMORY_UTILIZATION", cls.gpu_memory_utilization),
            max_audio_seconds=_float(env, "MAX_AUDIO_SECONDS", cls.max_audio_seconds),
            max_upload_mb=_float(env, "MAX_UPLOAD_MB", cls.max_upload_mb),
            max_zip_members=_int(env, "MAX_ZIP_MEMBERS", cls.max_zip_members),
            max_zip_mb=_float(env, "MAX_ZIP_MB", cls.max_zip_mb),
            max_zip_ratio=_float(env, "MAX_ZIP_RATIO", cls.max_zip_ratio),
            max_batch_files=_int(env, "MAX_BATCH_FILES", cls.max_batch_files),
            max_queued_jobs=_int(env, "MAX_QUEUED_JOBS", cls.max_queued_jobs),
            max_watchers_per_session=_int(env, "MAX_WATCHERS_PER_SESSION", cls.max_watchers_per_session),
            max_watchers=_int(env, "MAX_WATCHERS", cls.max_watchers),
            job_api_concurrency=_int(env, "JOB_API_CONCURRENCY", cls.job_api_concurrency),
            max_job_rows=_int(env, "MAX_JOB_ROWS", cls.max_job_rows),
            admin_token=env.get("ADMIN_TOKEN", "").strip() or None,
            session_secret=env.get("SESSION_SECRET", "").strip(),
            device=env.get("DEVICE", cls.device).lower(),
            compute_type=env.get("COMPUTE_TYPE") or None,
            cpu_threads=_int(env, "CPU_THREADS", all_cores()),
            device_price_per_hour=_float(env, "DEVICE_PRICE_PER_HOUR", 0.0) or None,
            remote_code_allowlist=(
                tuple(x.strip() for x in allow.split(",") if x.strip())
                if allow is not None
                else DEFAULT_REMOTE_CODE_ALLOWLIST
            ),
            hub_timeout_seconds=_float(env, "HUB_TIMEOUT_SECONDS", cls.hub_timeout_seconds),
            data_dir=Path(env["DATA_DIR"]) if env.get("DATA_DIR") else default_data_dir(),
            batch_workers=_int(env, "BATCH_WORKERS", cls.batch_workers),
            batch_size=_int(env, "BATCH_SIZE", cls.batch_size),
            batch_step_files=_int(env, "BATCH_STEP_FILES", cls.batch_step_files),
            job_ttl_hours=_float(env, "JOB_TTL_HOURS", cls.job_ttl_hours),
            output_ttl_minutes=_float(env, "OUTPUT_TTL_MINUTES", cls.output_ttl_minutes),
            sweep_interval_seconds=_float(env, "SWEEP_INTERVAL_SECONDS", cls.sweep_interval_seconds),
            ray_address=env.get("RAY_ADDRESS", "").strip(),
            ray_actors=_int(env, "RAY_ACTORS", cls.ray_actors),
            job_store=env.get("JOB_STORE", "").strip(),
            job_lease_seconds=_float(env, "JOB_LEASE_SECONDS", cls.job_lease_seconds),
            worker_beat_seconds=_float(env, "WORKER_BEAT_SECONDS", cls.worker_beat_seconds),
            api_key=env.get("API_KEY", "").strip() or None,
            arena_models=tuple(x.strip() for x in env.get("ARENA_MODELS", "").split(",") if x.strip()),
            arena_battle_ttl_minutes=_float(env, "ARENA_BATTLE_TTL_MINUTES", cls.arena_battle_ttl_minutes),
            arena_votes_per_hour=_int(env, "ARENA_VOTES_PER_HOUR", cls.arena_votes_per_hour),
            max_live_streams=_int(env, "MAX_LIVE_STREAMS", cls.max_live_streams),
            max_live_streams_per_session=_int(env, "MAX_LIVE_STREAMS_PER_SESSION", cls.max_live_streams_per_session),
            live_stream_max_seconds=_float(env, "LIVE_STREAM_MAX_SECONDS", cls.live_stream_max_seconds),
            live_stream_idle_seconds=_float(env, "LIVE_STREAM_IDLE_SECONDS", cls.live_stream_idle_seconds),
            zero_gpu_max_seconds=_float(env, "ZERO_GPU_MAX_SECONDS", cls.zero_gpu_max_seconds),
            browser_assets_dir=Path(env["BROWSER_ASSETS_DIR"]) if env.get("BROWSER_ASSETS_DIR") else None,
            prepare_on_start=env.get("PREPARE_ON_START", "1").strip().lower() not in ("0", "false", "no", "off"),
            cross_origin_isolation=isolation_policy(env.get("CROSS_ORIGIN_ISOLATION", "1")),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.num_workers < 1:
            raise ValueError("NUM_WORKERS must be at least 1")
        if self.max_sessions < 1:
            raise ValueError("MAX_SESSIONS must be at least 1")
        if self.batch_workers < 0 or self.batch_size < 1:
            raise ValueError("BATCH_WORKERS must be at least 0 and BATCH_SIZE at least 1")
        if self.batch_step_files < 0:
            raise ValueError("BATCH_STEP_FILES must be 0 (one step per batched call) or more")
        if self.ray_actors < 0:
            raise ValueError("RAY_ACTORS must be 0 (automatic) or more")
        if self.job_ttl_hours <= 0 or self.sweep_interval_seconds <= 0:
            raise ValueError("JOB_TTL_HOURS and SWEEP_INTERVAL_SECONDS must be positive")
        if self.output_ttl_minutes <= 0:
            raise ValueError("OUTPUT_TTL_MINUTES must be positive")
        store_kind(self.job_store)  # raises on a URL of no store we have
        if self.job_lease_seconds <= 0 or self.worker_beat_seconds <= 0:
            raise ValueError("JOB_LEASE_SECONDS and WORKER_BEAT_SECONDS must be positive")
        if self.cpu_threads < 1:
            raise ValueError("CPU_THREADS must be at least 1")
        if self.device_price_per_hour is not None and self.device_price_per_hour < 0:
            raise ValueError("DEVICE_PRICE_PER_HOUR must not be negative")
        if self.max_loaded_models < 1:
            raise ValueError("MAX_LOADED_MODELS must be at least 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("GPU_MEMORY_UTILIZATION must be in (0, 1]")
        if self.max_zip_members < 1 or self.max_zip_mb <= 0 or self.max_zip_ratio < 1:
            raise ValueError("MAX_ZIP_MEMBERS must be at least 1, MAX_ZIP_MB positive and MAX_ZIP_RATIO at least 1")
        if self.zero_gpu_max_seconds < 10:
            raise ValueError("ZERO_GPU_MAX_SECONDS must be at least 10")
        if min(self.max_batch_files, self.max_queued_jobs, self.max_watchers_per_session, self.max_watchers,
               self.job_api_concurrency, self.max_job_rows) < 1:  # fmt: skip
            raise ValueError(
                "MAX_BATCH_FILES, MAX_QUEUED_JOBS, MAX_WATCHERS_PER_SESSION, MAX_WATCHERS, JOB_API_CONCURRENCY "
                "and MAX_JOB_ROWS must each be at least 1"
            )
        if self.max_watchers < self.max_watchers_per_session:
            raise ValueError("MAX_WATCHERS must be at least MAX_WATCHERS_PER_SESSION")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("ADMIN_TOKEN must be at least 16 characters (it guards worker detail in /health)")
        if self.session_secret and len(self.session_secret) < 32:
            raise ValueError("SESSION_SECRET must be at least 32 characters (e.g. secrets.token_urlsafe(32))")
        if self.cross_origin_isolation not in ("credentialless", "require-corp", "off"):
            raise ValueError("CROSS_ORIGIN_ISOLATION must be 1 (credentialless), credentialless, require-corp or 0 (off)")
        if self.arena_battle_ttl_minutes <= 0 or self.arena_votes_per_hour < 1:
            raise ValueError("ARENA_BATTLE_TTL_MINUTES must be positive and ARENA_VOTES_PER_HOUR at least 1")
        if len(set(self.arena_models)) == 1:
            raise ValueError("ARENA_MODELS must name at least two models (or none: every ready model)")
        if self.max_live_streams < 1 or not 1 <= self.max_live_streams_per_session <= self.max_live_streams:
            raise ValueError("MAX_LIVE_STREAMS must be at least 1, MAX_LIVE_STREAMS_PER_SESSION between 1 and it")
        if self.live_stream_max_seconds <= 0 or self.live_stream_idle_seconds <= 0:
            raise ValueError("LIVE_STREAM_MAX_SECONDS and LIVE_STREAM_IDLE_SECONDS must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError("DEVICE must be auto, cpu or cuda")

"""What the tabs share: choices, option parsing, metric cards, error messages, the browser
component and its results, the batch workers' status. Tabs import this module, never each other.
"""

from __future__ import annotations

import html
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import gradio as gr
from gradio.utils import get_upload_folder
from gradio_browser_asr import BrowserASR, BrowserModel, assets_missing

from explorer import catalog, display, metrics
from explorer.batch import BatchRunner
from explorer.config import Settings
from explorer.jobs import Running, WorkerInfo
from explorer.service import ModelService
from explorer.types import Metrics, TranscribeOptions, Transcription

log = logging.getLogger(__name__)
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def sample_examples(audio: gr.Audio, label: str, elem_id: str) -> gr.Examples:
    """The sample clips as examples for `audio`, each a button named after its file (Gradio's
    default shows an unnamed player icon, which screen readers announce as a bare button)."""
    paths = sorted(SAMPLES.glob("*.wav"))
    return gr.Examples([[str(p)] for p in paths], inputs=[audio], label=label, elem_id=elem_id,
                       example_labels=[f"▶ {p.stem}" for p in paths])  # fmt: skip
AUTO = "auto"


def user_error(exc: Exception) -> gr.Error:
    """A user-facing error from a service exception (KeyError's repr quotes stripped)."""
    return gr.Error(error_message(exc))


def error_message(exc: Exception) -> str:
    return str(exc).strip("'\"")


# -- files: every one has an owner and a lifetime ---------------------------------------------
def gradio_cache() -> Path:
    """Gradio's cache (GRADIO_TEMP_DIR, else <tmp>/gradio): uploads land here, and a file returned
    from inside it is served in place, tracked by its component and removed by delete_cache."""
    return Path(get_upload_folder())


def outputs_root() -> Path:
    return gradio_cache() / "outputs"


def output_folder(prefix: str) -> Path:
    """A new folder for files a handler returns (downloads, exports): inside Gradio's cache, so
    they are served in place, without a second copy. sweep_outputs removes it after
    OUTPUT_TTL_MINUTES: Gradio's delete_cache alone misses a file returned through a component that
    an earlier update of the session replaced (gr.skip() included), as it tracks the original."""
    outputs_root().mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=outputs_root()))


def write_table_exports(prefix: str, stem: str, csv_text: str, json_text: str) -> list[str]:
    """A table's CSV and JSON in a new output folder: the two paths, for a gr.File."""
    folder = output_folder(prefix)
    csv, js = folder / f"{stem}.csv", folder / f"{stem}.json"
    csv.write_text(csv_text, encoding="utf-8")
    js.write_text(json_text, encoding="utf-8")
    return [str(csv), str(js)]


def sweep_outputs(age_seconds: float, now: Optional[float] = None) -> int:
    """Remove the output folders last written to over `age_seconds` ago, and the empty `tmp*` files
    gr.File leaves in the cache's top folder for each file it passes on as a path (Gradio 6.17's
    File._process_single_file opens a NamedTemporaryFile there and never removes it; uploads
    themselves live in sub-folders). Returns how many it removed."""
    now = time.time() if now is None else now
    cache, root = gradio_cache(), outputs_root()
    old = [d for d in root.iterdir() if d.is_dir() and d.stat().st_mtime < now - age_seconds] if root.is_dir() else []
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)
    stubs = [f for f in cache.glob("tmp*") if f.is_file() and f.stat().st_size == 0 and f.stat().st_mtime < now - age_seconds]
    for stub in stubs:
        stub.unlink(missing_ok=True)
    return len(old) + len(stubs)


def start_output_sweeper(settings: Settings, demo: Optional[gr.Blocks] = None) -> threading.Thread:
    """A daemon thread running sweep_outputs on delete_cache's schedule (OUTPUT_TTL_MINUTES), and
    Gradio's own sweep of the files `demo` tracks (uploads included) on the same schedule.

    Why Gradio's twice: its scheduled sweep (route_utils.delete_files_on_schedule) iterates the
    live set of uploads in a worker thread while requests add to it; under steady uploads it
    raises "Set changed size during iteration" and its task ends for good: the 10-minute soak of
    bench/bench_load.py saw uploads pile up from the fourth minute on. Here a failed pass is
    simply tried again at the next period."""
    from gradio.route_utils import delete_files_created_by_app

    frequency, age = settings.delete_cache

    def loop() -> None:
        while True:
            time.sleep(frequency)
            try:
                sweep_outputs(age)
                if demo is not None:
                    delete_files_created_by_app(demo, age)
            except (OSError, RuntimeError) as exc:  # removed under it, or the set changed: next period
                log.warning("output sweep: %s", exc)

    thread = threading.Thread(target=loop, name="output-sweeper", daemon=True)
    thread.start()
    return thread


@contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A folder for the length of a request (an unpacked dataset), removed when it ends, however."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- models and options -----------------------------------------------------------------------
def model_choices(service: ModelService) -> list[tuple[str, str]]:
    return [(f"{m['name']}  ({service.availability[m['key']].label})", m["key"]) for m in service.models()]


def language_choices(key: str) -> list[str]:
    spec = catalog.get(key)
    return [AUTO, *spec.languages] if spec.multilingual else list(spec.languages)


def warnings_markdown(warnings) -> str:
    return "\n".join(f"⚠️ {w}" for w in warnings)


def make_options(language: Optional[str], task: str, beam_size: float, word_timestamps: bool, vad_filter: bool) -> TranscribeOptions:
    try:
        return TranscribeOptions(
            language=None if not language or language == AUTO else language,
            task=task or "transcribe",
            beam_size=int(beam_size or 1),
            word_timestamps=bool(word_timestamps),
            vad_filter=True if vad_filter is None else bool(vad_filter),
        )
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc


NOT_STREAMED = "not streamed (beam search)"


def environment_line(t: Optional[Transcription]) -> str:
    """The run environment as a details line: results compare only where it is the same."""
    env = t.environment if t else None
    return "" if env is None else f"<div class='metric-help run-environment'>Run on: {html.escape(env.label())}</div>"


def metric_cards(t: Optional[Transcription], price_per_hour: Optional[float] = None) -> str:
    if t is None:
        return ""
    m = t.metrics
    timing = display.seconds if m.streamed else (lambda v: NOT_STREAMED)
    cards = [
        ("TTFT", timing(m.ttft_seconds), "request start → first " + m.itl_unit),
        ("ITL", timing(m.itl_seconds), f"mean gap between {m.itl_unit}s ({display.count(m.emissions)})"),
        ("RTFx", display.rtfx(m.rtfx), "audio seconds / processing seconds"),
        ("Processing", display.seconds(m.processing_seconds), f"for {display.duration(m.audio_seconds)} of audio"),
        ("Load", display.seconds(m.load_seconds), "model load in this request (0 = cached)"),
        ("Language", html.escape(t.language or display.MISSING), ""),
    ]
    cost = metrics.cost_per_audio_hour(price_per_hour, m.rtfx)
    if cost is not None:
        cards.append(("Cost / audio hour", display.money(cost), f"at {display.money(price_per_hour)}/h (DEVICE_PRICE_PER_HOUR) / RTFx"))
    return f"<div class='metric-cards'>{cards_html(cards)}</div>{environment_line(t)}"


def cards_html(cards: Sequence[tuple[str, str, str]]) -> str:
    """Name, value and help of each card, as the metric cards of every tab show them."""
    return "".join(
        f"<div class='metric'><div class='metric-name'>{name}</div><div class='metric-value'>{value}</div>"
        f"<div class='metric-help'>{help_}</div></div>"
        for name, value, help_ in cards
    )


# -- the in-browser component and its results ----------------------------------------------------
HUB_MODELS = (
    BrowserModel("browser/onnx-community/whisper-base", "onnx-community/whisper-base", "Whisper base (Hub)", "fp32"),
    BrowserModel("browser/onnx-community/whisper-tiny.en", "onnx-community/whisper-tiny.en", "Whisper tiny.en (Hub)", "fp32"),
    BrowserModel(
        "browser/onnx-community/cohere-transcribe-03-2026-ONNX", "onnx-community/cohere-transcribe-03-2026-ONNX",
        "Cohere Transcribe (Hub, q4)", "q4",
    ),
)  # fmt: skip
MAX_RESULTS = 1000
MAX_EVENTS = 20_000  # committed words one streaming result may list (hours of speech)
MAX_WORD_CHARS = 64


# Streaming WER of the local browser models, measured by bench/bench_browser_stream.py --record.
BROWSER_WER = Path(__file__).resolve().parent.parent / "browser_wer.json"


def measured_browser_wer(path: Path = BROWSER_WER) -> dict[str, float]:
    """{model key: streaming WER} as last recorded (empty when never measured or unreadable)."""
    try:
        data = json.loads(path.read_text())
        return {k: float(v) for k, v in data["wer"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def browser_models(settings: Settings, wer: Optional[dict[str, float]] = None) -> list[BrowserModel]:
    """The zoo's ONNX exports when prepared (fp32, q8, and the q8 encoder with the fp32 decoder),
    each labelled with its measured streaming WER, then Hub models for an online browser."""
    wer = measured_browser_wer() if wer is None else wer
    local = []
    for name in ("whisper-tiny.en", "whisper-base"):
        folder = settings.models_dir / f"{name}-onnx"
        if (folder / "onnx" / "encoder_model.onnx").is_file():
            for suffix, dtype, precision in LOCAL_BROWSER_GRAPHS:
                key = f"browser/{name}{suffix}"
                measured = f" · streaming WER {100 * wer[key]:.1f} %" if key in wer else ""
                local.append(BrowserModel(key, folder.name, f"Whisper {name[8:]} (this server, {precision}){measured}", dtype, True))
    return local + list(HUB_MODELS)


# (key suffix, transformers.js dtype, label) of the local exports' graph choices. The mixed one is
# for streaming: on WASM the 30 s encoder is most of a pass and runs faster in 8 bits, while the
# 8-bit decoder is slower than fp32 there (small matrices) and less accurate.
LOCAL_BROWSER_GRAPHS = (
    ("", "fp32", "fp32"),
    ("-q8", "q8", "q8"),
    ("-q8-encoder", {"encoder_model": "q8", "decoder_model_merged": "fp32"}, "q8 encoder, fp32 decoder"),
)


class BrowserResults:
    """The last MAX_RESULTS browser results by run id (a random id made by the browser), and
    at most `max_events` commit events in all (some 40 MB): older results go first."""

    def __init__(self, limit: int = MAX_RESULTS, max_events: int = 10 * MAX_EVENTS):
        self._items: "OrderedDict[str, dict]" = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit
        self.max_events = max_events
        self._events = 0

    def add(self, result: dict) -> dict:
        clean = checked(result)
        with self._lock:
            old = self._items.pop(clean["run_id"], None)
            self._events -= len(old["events"]) if old else 0
            self._items[clean["run_id"]] = clean
            self._events += len(clean["events"])
            while len(self._items) > self.limit or (self._events > self.max_events and len(self._items) > 1):
                _, dropped = self._items.popitem(last=False)
                self._events -= len(dropped["events"])
        return clean

    def get(self, run_id: str) -> Optional[dict]:
        with self._lock:
            return self._items.get(run_id)


def _number(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None




def _device(value) -> str:
    return "webgpu" if value == "webgpu" else "wasm"


def checked_events(events) -> list[list]:
    """A stream's commit events, [emission s since stream start, word end s in the stream, word]
    each, or ValueError saying what is wrong: at most MAX_EVENTS, finite numbers, short words."""
    if events is None:
        return []
    if not isinstance(events, list):
        raise ValueError("events must be a list of [emission_seconds, word_end_seconds, word]")
    if len(events) > MAX_EVENTS:
        raise ValueError(f"too many events: {len(events)} (at most {MAX_EVENTS})")
    clean = []
    for n, event in enumerate(events):
        if not (isinstance(event, (list, tuple)) and len(event) == 3):
            raise ValueError(f"event {n} is not [emission_seconds, word_end_seconds, word]")
        emitted, end, word = _number(event[0]), _number(event[1]), event[2]
        if emitted is None or end is None or isinstance(event[0], bool) or isinstance(event[1], bool):
            raise ValueError(f"event {n}: times must be finite numbers")
        if not isinstance(word, str) or len(word) > MAX_WORD_CHARS:
            raise ValueError(f"event {n}: the word must be a string of at most {MAX_WORD_CHARS} characters")
        clean.append([emitted, end, word])
    return clean


def checked(result: dict) -> dict:
    """Only what a browser result may hold: a run id, short strings, finite numbers and, for a
    stream, its bounded commit events."""
    if not isinstance(result, dict) or not isinstance(result.get("run_id"), str) or not result["run_id"].isalnum():
        raise ValueError("not a browser result")
    m = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    device = _device(result.get("device"))
    clean_metrics = {k: _number(v) for k, v in m.items() if isinstance(k, str) and len(k) < 40 and k != "device"}
    return {
        "run_id": result["run_id"][:64],
        "mode": "stream" if result.get("mode") == "stream" else "file",
        "model": str(result.get("model", ""))[:200],
        "device": device,
        "text": str(result.get("text", ""))[:100_000],
        "metrics": {**clean_metrics, "device": device},
        "events": checked_events(result.get("events")),
    }


def as_transcription(result: dict) -> Transcription:
    """A browser result in the shape of a server one, for side-by-side comparison."""
    m = result["metrics"]
    audio, processing = m.get("audio_seconds") or 0.0, m.get("processing_seconds") or 0.0
    return Transcription(
        model=f"{result['model']} ({result['device']})",
        text=result["text"],
        segments=(),
        language=None,
        options=TranscribeOptions(),
        metrics=Metrics(
            audio_seconds=audio,
            load_seconds=m.get("load_seconds") or 0.0,
            processing_seconds=processing,
            ttft_seconds=m.get("ttft_seconds"),
            itl_seconds=m.get("itl_seconds"),
            itl_unit="token",
            emissions=int(m.get("tokens") or 0),
            rtfx=metrics.rtfx(audio, processing),
        ),
    )


def browser_component(settings: Settings, **kwargs) -> Optional[BrowserASR]:
    """The component, or None (with the reason shown) when the browser assets are not installed."""
    assets = {"assets_dir": settings.browser_assets_dir} if settings.browser_assets_dir else {}
    missing = assets_missing(**assets)
    if missing:
        gr.Markdown(f"In-browser models are unavailable: {missing}")
        return None
    return BrowserASR(browser_models(settings), models_dir=settings.models_dir, **assets, **kwargs)


# -- batch workers ------------------------------------------------------------------------------
def running_summary(current: Sequence[Running]) -> str:
    """What a worker runs, without the job ids (they belong to other users' sessions):
    "model (2 jobs); other (1 job)"."""
    return "; ".join(f"{model} ({len(ids)} job{'s' if len(ids) > 1 else ''})" for model, ids in current)


def worker_records(workers: list[WorkerInfo], now: float, detail: bool = True) -> list[dict]:
    """Each worker taking jobs from this store (this app's own and standalone ones, any host).
    Without `detail` (what anyone may see), a worker is a number: no id, host or pid."""
    return [
        {
            **({"worker": w.id, "host": w.host, "pid": w.pid} if detail else {"worker": f"#{n}"}),
            "models_loaded": ", ".join(w.models), "jobs_done": w.jobs_done, "running": running_summary(w.current),
            "up_seconds": round(now - w.started_at), "seen_seconds_ago": round(now - w.last_seen, 1),
        }
        for n, w in enumerate(workers, 1)
    ]  # fmt: skip


def reachable_workers(runner: BatchRunner) -> tuple[list[WorkerInfo], str]:
    """The store's workers, and why they could not be read ("" when they could): the page keeps
    working while the store is down or refuses this server's credentials."""
    try:
        return runner.workers(), ""
    except runner.store.refused:
        return [], "the job store refuses this server's credentials (check JOB_STORE)"
    except runner.store.transient:
        return [], "the job store cannot be reached right now; workers keep retrying"

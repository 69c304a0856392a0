"""Browser tab: Whisper in the user's browser (gradio_browser_asr), next to server streaming.

The browser sends only its final transcript and metrics; the server keeps them (bounded, in
memory) under the run id the browser made, so they show here, join Compare, and can be read
back through the API with /browser_result.
"""

from __future__ import annotations

import html
import math
import queue
import threading
from collections import OrderedDict
from typing import Optional

import gradio as gr
from gradio_browser_asr import BrowserASR, BrowserModel, assets_missing

from explorer import catalog
from explorer import metrics as metric_defs
from explorer.audio import AudioError, load_audio
from explorer.config import Settings
from explorer.service import ModelError, ModelService
from explorer.simulate import StreamReport, simulate_stream
from explorer.types import Metrics, TranscribeOptions, Transcription

HUB_MODELS = (
    BrowserModel("browser/onnx-community/whisper-base", "onnx-community/whisper-base", "Whisper base (Hub)", "fp32"),
    BrowserModel("browser/onnx-community/whisper-tiny.en", "onnx-community/whisper-tiny.en", "Whisper tiny.en (Hub)", "fp32"),
    BrowserModel(
        "browser/onnx-community/cohere-transcribe-03-2026-ONNX", "onnx-community/cohere-transcribe-03-2026-ONNX",
        "Cohere Transcribe (Hub, q4)", "q4",
    ),
)  # fmt: skip
MAX_RESULTS = 1000


def browser_models(settings: Settings) -> list[BrowserModel]:
    """The zoo's ONNX exports (fp32 and q8) when prepared, then Hub models for an online browser."""
    local = []
    for name in ("whisper-tiny.en", "whisper-base"):
        folder = settings.models_dir / f"{name}-onnx"
        if (folder / "onnx" / "encoder_model.onnx").is_file():
            local.append(BrowserModel(f"browser/{name}", folder.name, f"Whisper {name[8:]} (this server, fp32)", "fp32", True))
            local.append(BrowserModel(f"browser/{name}-q8", folder.name, f"Whisper {name[8:]} (this server, q8)", "q8", True))
    return local + list(HUB_MODELS)


class BrowserResults:
    """The last MAX_RESULTS browser results by run id (a random id made by the browser)."""

    def __init__(self, limit: int = MAX_RESULTS):
        self._items: "OrderedDict[str, dict]" = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit

    def add(self, result: dict) -> dict:
        clean = checked(result)
        with self._lock:
            self._items[clean["run_id"]] = clean
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return clean

    def get(self, run_id: str) -> Optional[dict]:
        with self._lock:
            return self._items.get(run_id)


def _number(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def checked(result: dict) -> dict:
    """Only what a browser result may hold: a run id, short strings and finite numbers."""
    if not isinstance(result, dict) or not isinstance(result.get("run_id"), str) or not result["run_id"].isalnum():
        raise ValueError("not a browser result")
    m = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    return {
        "run_id": result["run_id"][:64],
        "mode": "stream" if result.get("mode") == "stream" else "file",
        "model": str(result.get("model", ""))[:200],
        "device": "webgpu" if result.get("device") == "webgpu" else "wasm",
        "text": str(result.get("text", ""))[:100_000],
        "metrics": {k: _number(v) for k, v in m.items() if isinstance(k, str) and len(k) < 40},
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
            rtfx=metric_defs.rtfx(audio, processing),
        ),
    )


def browser_component(settings: Settings, **kwargs) -> Optional[BrowserASR]:
    """The component, or None (with the reason shown) when the browser assets are not installed."""
    missing = assets_missing()
    if missing:
        gr.Markdown(f"In-browser models are unavailable: {missing}")
        return None
    return BrowserASR(browser_models(settings), models_dir=settings.models_dir, **kwargs)


def stream_html(committed: str, unconfirmed: str) -> str:
    """Committed text as is, the unconfirmed tail muted: the same look as the browser's."""
    tail = f" <span style='opacity:0.45;font-style:italic'>{html.escape(unconfirmed)}</span>" if unconfirmed else ""
    return f"<div>{html.escape(committed)}{tail}</div>"


def report_summary(report: StreamReport) -> dict:
    return {
        "model": report.model,
        "text": report.text,
        "first_commit_latency": report.first_commit_latency,
        "mean_commit_lag": report.mean_commit_lag,
        "passes": report.iterations,
        "trims": report.trims,
        "audio_seconds": report.audio_seconds,
        "processing_seconds": report.processing_seconds,
        "wall_seconds": report.wall_seconds,
    }


def build_server_stream(service: ModelService, settings: Settings) -> None:
    """The same LocalAgreement-2 on the server (faster-whisper), fed a file in simulated real time."""
    keys = [m.key for m in catalog.MODELS if m.engine == "faster-whisper" and service.availability[m.key].status != "unavailable"]
    max_bytes = int(settings.max_upload_mb * (1 << 20))

    def run(audio, model, language, min_chunk, progress=gr.Progress()):
        """Stream a file through LocalAgreement-2 with a faster-whisper model in real time; yields
        (committed + muted tail as HTML, summary) per pass, the last with the first-commit latency
        and mean commit lag."""
        if audio is None:
            raise gr.Error("No audio: upload a file.")
        try:
            decoded = load_audio(audio, max_seconds=settings.max_audio_seconds, max_bytes=max_bytes)
            options = TranscribeOptions(language=language or None)
            service.preload(model)  # the stream's clock starts after the model is loaded
        except (AudioError, ModelError, KeyError, ValueError) as exc:
            raise gr.Error(str(exc).strip("'\"")) from exc
        steps: "queue.Queue" = queue.Queue()
        outcome: dict = {}

        def work():
            try:
                outcome["report"] = simulate_stream(
                    service, model, decoded, options, float(min_chunk), on_step=steps.put
                )
            except Exception as exc:  # shown to the user below; the worker thread must not die silently
                outcome["error"] = exc
            steps.put(None)

        threading.Thread(target=work, daemon=True).start()
        while (step := steps.get()) is not None:
            progress((min(step.audio_seconds, decoded.duration), decoded.duration), desc="streaming", unit="s")
            yield stream_html(step.committed, step.unconfirmed), gr.skip()
        if "error" in outcome:
            raise gr.Error(str(outcome["error"]))
        report = outcome["report"]
        yield stream_html(report.text, ""), report_summary(report)

    gr.Markdown(
        "### Server streaming (simulation)\nThe same policy in Python (`explorer/local_agreement.py`) with "
        "faster-whisper: the file is fed at real-time pace, one pass per second of new audio, and the same "
        "first-commit latency and mean commit lag are reported, so browser and server streaming compare on one clip."
    )
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(sources=["upload"], type="filepath", label="Audio")
            model = gr.Dropdown(keys, value=keys[0] if keys else None, label="Server model")
            with gr.Row():
                language = gr.Textbox("en", label="Language")
                min_chunk = gr.Slider(0.5, 3.0, value=1.0, step=0.5, label="Min chunk (s)")
            button = gr.Button("Stream on the server")
        with gr.Column():
            text = gr.HTML(label="Committed (normal) and unconfirmed (muted)")
            summary = gr.JSON(label="Latency")
    button.click(
        run, [audio, model, language, min_chunk], [text, summary], api_name="simulate_stream",
        concurrency_id="models", concurrency_limit=settings.num_workers,
    )  # fmt: skip


def build_browser(service: ModelService, settings: Settings, results: BrowserResults) -> None:
    gr.Markdown(
        "Whisper runs **in this browser** with transformers.js: on WebGPU when the browser has a real "
        "(non-fallback) adapter, else on WASM. Audio never leaves the page; the server receives only the "
        "final transcript and metrics. Models from this server load from it (and then from the browser's "
        "cache); Hub models need the browser to be online. The microphone streams with LocalAgreement-2: "
        "a word is committed (normal text) once two successive passes agree on it; grey text may still change."
    )
    component = browser_component(settings)
    if component is None:
        build_server_stream(service, settings)
        return
    received = gr.JSON(label="Received by the server (final transcript and metrics only)")

    def receive(result):
        if result is None:
            return gr.skip()
        try:
            return results.add(result)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def browser_result(run_id: str) -> dict:
        """A browser run's final transcript and metrics, by the run id shown in the Browser tab."""
        found = results.get((run_id or "").strip())
        if found is None:
            raise gr.Error(f"no browser result {run_id!r}")
        return found

    component.change(receive, component, received, api_visibility="private")
    gr.api(browser_result, api_name="browser_result", queue=False)
    build_server_stream(service, settings)

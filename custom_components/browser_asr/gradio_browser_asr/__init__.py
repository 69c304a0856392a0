"""BrowserASR: a Gradio component that runs Whisper in the user's browser (transformers.js).

The model runs on WebGPU when the browser has a real (non-fallback) adapter, else on WASM; the
user can override. Audio never leaves the page: a file is decoded in the browser, and the
microphone is transcribed live with LocalAgreement-2 (committed text, then a muted unconfirmed
tail). When a run ends, the component's value becomes ``{run_id, mode, model, device, text,
metrics}`` and its ``change`` event fires, so Python receives only the transcript and the timings.

transformers.js and onnxruntime-web's wasm files are served by the app itself from the npm
install beside this package (``npm ci`` in ``custom_components/browser_asr``), never from a CDN;
local models are served from their folder, Hub models load from the Hub when the browser is
online, and the browser's Cache API keeps model files for the next load.

    from gradio_browser_asr import BrowserASR, BrowserModel

    asr = BrowserASR([BrowserModel("tiny", "whisper-tiny.en-onnx", "Whisper tiny.en", local=True)],
                     models_dir="/path/to/models")
    asr.change(lambda result: result["text"], asr, gr.Textbox())
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import gradio as gr

__all__ = ["BrowserASR", "BrowserModel", "ASSETS_DIR", "assets_missing"]

PACKAGE = Path(__file__).resolve().parent
JS_DIR = PACKAGE / "js"
ASSETS_DIR = PACKAGE.parent / "node_modules"  # `npm ci` beside this package
TRANSFORMERS_JS = "@huggingface/transformers/dist/transformers.min.js"  # the build with onnxruntime-web bundled
ORT_DIST = "onnxruntime-web/dist"


@dataclass(frozen=True)
class BrowserModel:
    key: str  # what results call it
    id: str  # a folder under models_dir (local) or a Hub repo id
    label: str
    # transformers.js dtype: fp32, fp16, q8, q4 ..., or one per graph, e.g.
    # {"encoder_model": "q8", "decoder_model_merged": "fp32"}
    dtype: Union[str, dict] = "fp32"
    local: bool = False  # served by this app (else fetched from the Hub by the browser)


def assets_missing(assets_dir: Path = ASSETS_DIR) -> Optional[str]:
    """Why the browser assets cannot be served, or None when they can."""
    for part in (TRANSFORMERS_JS, ORT_DIST):
        if not (assets_dir / part).exists():
            return f"{assets_dir / part} is missing: run `ONNXRUNTIME_NODE_INSTALL=skip npm ci` in {assets_dir.parent}"
    return None


def _file_url(path: Path) -> str:
    # Gradio's file route; made absolute against the page's URL in the browser.
    return f"gradio_api/file={path.resolve()}"


TEMPLATE = """
<div class="basr" role="group" aria-label="In-browser speech recognition">
  <div class="basr-row">
    <label>Model <select class="basr-model">{{#each models}}<option value="{{this.key}}">{{this.label}}</option>{{/each}}</select></label>
    <label>Device <select class="basr-device">
      <option value="auto">auto (WebGPU with a real adapter, else WASM)</option>
      <option value="webgpu">WebGPU</option>
      <option value="wasm">WASM</option>
    </select></label>
    <button class="basr-load" type="button">Load model</button>
  </div>
  <div class="basr-row">
    <label class="basr-pick">Transcribe a file in this browser <input class="basr-file" type="file" accept="audio/*"></label>
    <button class="basr-mic" type="button">Start microphone</button>
    <button class="basr-stop" type="button">Stop</button>
  </div>
  <div class="basr-status" aria-live="polite"></div>
  <div class="basr-transcript" role="region" aria-label="Transcript (grey text may still change)"><span class="basr-committed"></span><span class="basr-unconfirmed"></span></div>
  <div class="basr-metrics" role="list" aria-label="Metrics"></div>
  <div class="basr-run"></div>
</div>
"""

# Gradio's theme variables only: the component follows the app's theme, its dark mode and sizes,
# and reads like the server tabs (inputs, buttons, a transcript box, metric cards).
CSS = """
.basr { display: flex; flex-direction: column; gap: var(--spacing-lg); color: var(--body-text-color); font-size: var(--text-md); }
.basr-row { display: flex; flex-wrap: wrap; gap: var(--spacing-lg); align-items: end; }
.basr label { display: flex; flex-direction: column; gap: var(--spacing-sm); min-width: 0; max-width: 100%;
  color: var(--block-label-text-color); font-size: var(--block-label-text-size); font-weight: var(--block-label-text-weight); }
.basr select, .basr input[type=file] { max-width: 100%; padding: var(--input-padding); color: var(--body-text-color);
  background: var(--input-background-fill); border: var(--input-border-width) solid var(--input-border-color);
  border-radius: var(--input-radius); font-size: var(--input-text-size); }
.basr input[type=file]::file-selector-button { margin-right: var(--spacing-md); padding: var(--button-small-padding);
  color: var(--button-secondary-text-color); background: var(--button-secondary-background-fill);
  border: var(--button-border-width) solid var(--button-secondary-border-color); border-radius: var(--button-small-radius); }
.basr button { padding: var(--button-large-padding); color: var(--button-secondary-text-color);
  background: var(--button-secondary-background-fill); border: var(--button-border-width) solid var(--button-secondary-border-color);
  border-radius: var(--button-large-radius); font-size: var(--button-large-text-size); font-weight: var(--button-large-text-weight); cursor: pointer; }
.basr button:hover:not(:disabled) { background: var(--button-secondary-background-fill-hover); }
.basr button:disabled { opacity: 0.5; cursor: not-allowed; }
.basr select:focus-visible, .basr button:focus-visible, .basr input:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
.basr-status { color: var(--body-text-color); font-size: var(--text-sm); }
.basr-transcript { min-height: 4em; padding: var(--input-padding); background: var(--input-background-fill);
  border: var(--input-border-width) solid var(--input-border-color); border-radius: var(--input-radius); font-size: var(--input-text-size); }
.basr-unconfirmed { opacity: 0.7; font-style: italic; }
.basr-metrics { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: var(--spacing-md); }
.basr-metrics:empty { display: none; }
.basr-card { padding: var(--spacing-md); border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  background: var(--block-background-fill); }
.basr-card-name { font-size: var(--text-sm); opacity: 0.8; }
.basr-card-value { font-size: var(--text-xl); font-weight: 600; }
.basr-run { font-size: var(--text-sm); font-family: var(--font-mono); }
"""

# Runs in the page once the component mounts: import our module (served by the app) and start it.
ON_LOAD = """
const resolve = (u) => new URL(u, document.baseURI).href;
const c = props.config;
// transformers.js takes an http(s) localModelPath for a remote URL: give it the path alone.
const config = { ...c, transformers_url: resolve(c.transformers_url), wasm_url: resolve(c.wasm_url),
                 models_url: new URL(c.models_url, document.baseURI).pathname };
import(resolve(c.module_url)).then((m) => m.mount({ element, props, trigger, config }))
  .catch((e) => { element.querySelector('.basr-status').textContent = 'could not start: ' + e; });
"""


class BrowserASR(gr.HTML):
    """In-browser speech recognition (file or microphone); its value is the last run's result."""

    def __init__(
        self,
        models: Sequence[BrowserModel],
        *,
        models_dir: Optional[Union[str, Path]] = None,
        assets_dir: Path = ASSETS_DIR,
        min_chunk_seconds: float = 1.0,
        trim_seconds: float = 4.0,
        max_buffer_seconds: float = 20.0,
        anchor_seconds: Optional[float] = 1.5,
        max_unconfirmed_seconds: Optional[float] = 3.0,
        wasm_proxy: bool = False,
        value: Optional[dict] = None,
        **kwargs,
    ):
        if not models:
            raise ValueError("BrowserASR needs at least one model")
        if not 0 < min_chunk_seconds <= trim_seconds <= max_buffer_seconds:
            raise ValueError("need 0 < min_chunk_seconds <= trim_seconds <= max_buffer_seconds")
        for name, seconds in (("anchor_seconds", anchor_seconds), ("max_unconfirmed_seconds", max_unconfirmed_seconds)):
            if seconds is not None and not (0 < seconds < math.inf):
                raise ValueError(f"{name} must be None or a positive number of seconds")
        missing = assets_missing(assets_dir)
        if missing:
            raise FileNotFoundError(missing)
        local = [m for m in models if m.local]
        if local and models_dir is None:
            raise ValueError("local models need models_dir, the folder that holds their folders")
        models_root = Path(models_dir) if models_dir is not None else PACKAGE
        # Only these folders become reachable over HTTP: our JS, the two npm dists, local models.
        gr.set_static_paths(
            [JS_DIR, (assets_dir / TRANSFORMERS_JS).parent, assets_dir / ORT_DIST, *(models_root / m.id for m in local)]
        )
        config = {
            "module_url": _file_url(JS_DIR / "browser_asr.js"),
            "transformers_url": _file_url(assets_dir / TRANSFORMERS_JS),
            "wasm_url": _file_url(assets_dir / ORT_DIST) + "/",
            "models_url": _file_url(models_root) + "/",
            "models": [asdict(m) for m in models],
            "min_chunk_seconds": float(min_chunk_seconds),
            "trim_seconds": float(trim_seconds),
            # A pass decodes at most this much audio (cut at a committed word when no segment end
            # allowed it): the pass's time, and so the lag, stay bounded on a slow device.
            "max_buffer_seconds": float(max_buffer_seconds),
            # Committed words transcribed again mark where a hypothesis' new words begin when they
            # end within this many seconds of the last commit (local_agreement.js, anchor()):
            # transformers.js interpolates word times inside a segment, and the time filter alone
            # stalled agreement for seconds. None: whisper_streaming's time filter only.
            "anchor_seconds": None if anchor_seconds is None else float(anchor_seconds),
            # A word unconfirmed while the audio heard runs this far past its end is committed in
            # the latest hypothesis' form (counted in the metrics' forced_words): lag stays bounded
            # when two passes keep disagreeing. None: agreement only (whisper_streaming).
            "max_unconfirmed_seconds": None if max_unconfirmed_seconds is None else float(max_unconfirmed_seconds),
            # onnxruntime's proxy worker: a responsive page during each model call, slower passes.
            "wasm_proxy": bool(wasm_proxy),
        }
        super().__init__(
            value=value,
            html_template=TEMPLATE,
            css_template=CSS,
            js_on_load=ON_LOAD,
            config=config,
            models=[{"key": m.key, "label": m.label} for m in models],
            **kwargs,
        )

    def preprocess(self, payload):
        """The run's result as a dict (or None before any run)."""
        if isinstance(payload, str):
            try:
                return json.loads(payload)
            except ValueError:
                return None
        return payload if isinstance(payload, dict) else None

    def api_info(self) -> dict:
        return {"type": "object", "description": "{run_id, mode, model, device, text, metrics}"}

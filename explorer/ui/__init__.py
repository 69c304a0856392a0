"""Gradio UI: one module per tab, each exposing build_<tab>(); build_app composes them."""

from __future__ import annotations

from typing import Optional

import gradio as gr

from explorer.battles import Arena
from explorer.batch import BatchRunner
from explorer.config import Settings
from explorer.live import LiveStreams
from explorer.service import ModelService
from explorer.ui import arena as arena_tab
from explorer.ui.batch import build_batch
from explorer.ui.browser import BrowserResults, build_browser
from explorer.ui.compare import build_compare
from explorer.ui.evaluate import build_evaluate
from explorer.ui.models import build_models
from explorer.ui.transcribe import build_transcribe

CSS = """
.metric-cards {display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px;}
.metric {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px;}
.metric-name {font-size: 0.8em; opacity: 0.8;}
.metric-value {font-size: 1.4em; font-weight: 600;}
.metric-help {font-size: 0.75em; opacity: 0.8;}
.batch-summary {margin: 0; padding-left: 1.2em;}
.align-legend {display: flex; gap: 12px; margin-bottom: 8px; font-size: 0.9em;}
.align-model {margin-bottom: 10px;}
.align-name {font-weight: 600;}
.align-words {line-height: 1.9;}
.al-sub, .al-ins, .al-del {border-radius: 4px; padding: 1px 4px;}
.al-sub {background: rgba(245, 158, 11, 0.30);}
.al-ins {background: rgba(59, 130, 246, 0.30); text-decoration: underline;}
.al-del {background: rgba(239, 68, 68, 0.30);}
""" + arena_tab.CSS


def build_app(service: ModelService, settings: Settings, runner: BatchRunner, live: Optional[LiveStreams] = None) -> gr.Blocks:
    browser_results = BrowserResults()
    live = live or LiveStreams(service, settings)
    # Uploads (and the files Gradio tracks) are removed OUTPUT_TTL_MINUTES after they were written;
    # the files handlers return are also swept by widgets.sweep_outputs (app.py starts it).
    with gr.Blocks(title="Open-ASR Model Explorer", delete_cache=settings.delete_cache) as demo:
        gr.Markdown("# Open-ASR Model Explorer\nOpen speech recognition models, side by side, with honest metrics.")
        with gr.Tabs():
            with gr.Tab("Transcribe"):
                build_transcribe(service, settings)
            with gr.Tab("Compare"):
                build_compare(service, settings, browser_results)
            with gr.Tab("Evaluate"):
                build_evaluate(service, settings)
            with gr.Tab("Batch"):
                build_batch(service, settings, runner)
            with gr.Tab("Browser"):
                build_browser(service, settings, browser_results, live)
            with gr.Tab("Arena") as tab:
                # The arena's sessions are the Batch tab's: one token, one secret.
                arena_tab.build_arena(service, settings, Arena(service, settings, tokens=runner.tokens), tab)
            with gr.Tab("Models"):
                build_models(service, runner, live)
    # Model calls share one concurrency group ("models", limit NUM_WORKERS); max_size bounds the wait.
    demo.queue(max_size=settings.queue_max_size, default_concurrency_limit=settings.num_workers)
    return demo

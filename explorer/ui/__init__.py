"""Gradio UI: one module per tab, each exposing build_<tab>(); build_app composes them."""

from __future__ import annotations

import gradio as gr

from explorer.config import Settings
from explorer.service import ModelService
from explorer.ui.models import build_models
from explorer.ui.transcribe import build_transcribe

CSS = """
.metric-cards {display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px;}
.metric {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px;}
.metric-name {font-size: 0.8em; opacity: 0.7;}
.metric-value {font-size: 1.4em; font-weight: 600;}
.metric-help {font-size: 0.7em; opacity: 0.6;}
"""


def build_app(service: ModelService, settings: Settings) -> gr.Blocks:
    with gr.Blocks(title="Open-ASR Model Explorer") as demo:
        gr.Markdown("# Open-ASR Model Explorer\nOpen speech recognition models, side by side, with honest metrics.")
        with gr.Tabs():
            with gr.Tab("Transcribe"):
                build_transcribe(service, settings)
            with gr.Tab("Models"):
                build_models(service)
    # Model calls share one concurrency group ("models", limit NUM_WORKERS); max_size bounds the wait.
    demo.queue(max_size=settings.queue_max_size, default_concurrency_limit=settings.num_workers)
    return demo

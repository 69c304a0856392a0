"""Models tab: the catalog with each model's availability; /models and /health for API clients."""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from explorer.batch import BatchRunner
from explorer.config import store_kind
from explorer.service import ModelService
from explorer.ui.widgets import reachable_workers, worker_records

COLUMNS = ["key", "name", "engine", "status", "reason", "source", "gated", "trust_remote_code"]


def catalog_frame(service: ModelService) -> pd.DataFrame:
    return pd.DataFrame(service.models())[COLUMNS]


def build_models(service: ModelService, runner: BatchRunner) -> None:
    def models() -> list[dict]:
        """Every model the explorer knows, with its availability (ready, downloadable, unavailable) and why."""
        return service.models()

    def health() -> dict:
        """Server status, loaded models, models that failed to load (with the reason), and the batch
        workers taking jobs from this server's job store (host, models loaded, jobs done)."""
        workers, problem = reachable_workers(runner)
        return {
            **service.health(),
            "job_store": store_kind(runner.settings.job_store),
            "job_store_problem": problem,
            "workers": worker_records(workers, time.time()),
        }

    gr.Markdown(
        "Availability is computed at start: **ready** (weights on this machine), **downloadable** "
        "(Hub reachable; gated repos need `HF_TOKEN`), or **unavailable** with the reason."
    )
    table = gr.Dataframe(catalog_frame(service), interactive=False, wrap=True)
    refresh = gr.Button("Refresh")
    refresh.click(lambda: catalog_frame(service), None, table, api_visibility="private", queue=False)
    gr.api(models, api_name="models", queue=False)
    gr.api(health, api_name="health", queue=False)

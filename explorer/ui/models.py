"""Models tab: the catalog with each model's availability; /models and /health for API clients.

/health answers anyone with status and counts; worker hosts and pids, loaded models' detail and
failure reasons only to a request carrying ADMIN_TOKEN (``health(admin_token)``).
"""

from __future__ import annotations

import hmac
import time
from typing import Optional

import gradio as gr
import pandas as pd

from explorer.batch import BatchRunner
from explorer.config import store_kind
from explorer.live import LiveStreams
from explorer.service import ModelService
from explorer.ui.widgets import reachable_workers, worker_records

COLUMNS = ["key", "name", "engine", "status", "reason", "source", "gated", "trust_remote_code"]


def catalog_frame(service: ModelService) -> pd.DataFrame:
    return pd.DataFrame(service.models())[COLUMNS]


def is_admin(admin_token: Optional[str], given: str) -> bool:
    """Whether a request carries ADMIN_TOKEN (never when it is unset; a constant-time comparison)."""
    return bool(admin_token) and hmac.compare_digest((given or "").strip().encode(), admin_token.encode())


def build_models(service: ModelService, runner: BatchRunner, live: LiveStreams) -> None:
    settings = runner.settings

    def models() -> list[dict]:
        """Every model the explorer knows, with its availability (ready, downloadable, unavailable) and why."""
        return service.models()

    app = gr.context.Context.root_block  # the Blocks being built: its sessions, once launched

    def health(admin_token: str = "") -> dict:
        """Server status and counts: models by availability, loaded and failed models, model calls
        running and requests waiting for a device slot, batch workers and the jobs they run, live
        streams open. With admin_token equal to the server's ADMIN_TOKEN, "detail" adds
        each loaded model, each failure's reason, each worker (host, pid, models, jobs done) and the
        Gradio sessions held in memory."""
        workers, problem = reachable_workers(runner)
        status = service.health()
        public = {
            "status": status["status"],
            "hub_online": status["hub_online"],
            "availability": status["availability"],
            "loaded_models": len(status["loaded_models"]),
            "failed_models": len(status["failed_models"]),
            "num_workers": status["num_workers"],
            "models_running": status["models_running"],
            "requests_waiting": status["requests_waiting"],
            "job_store_problem": problem,
            "workers": len(workers),
            "jobs_running": sum(len(r.job_ids) for w in workers for r in w.current),
            "live_streams": live.open_count(),
        }
        if not is_admin(settings.admin_token, admin_token):
            return public
        sessions = len(getattr(getattr(app, "state_holder", None), "session_data", ()))  # Gradio's, at most MAX_SESSIONS
        detail = {**status, "job_store": store_kind(settings.job_store), "workers": worker_records(workers, time.time()),
                  "sessions_in_memory": sessions}  # fmt: skip
        return {**public, "detail": detail}

    gr.Markdown(
        "Availability is computed at start: **ready** (weights on this machine), **downloadable** "
        "(Hub reachable; gated repos need `HF_TOKEN`), or **unavailable** with the reason."
    )
    table = gr.Dataframe(catalog_frame(service), interactive=False, wrap=True)
    refresh = gr.Button("Refresh")
    refresh.click(lambda: catalog_frame(service), None, table, api_visibility="private", queue=False)
    gr.api(models, api_name="models", queue=False)
    gr.api(health, api_name="health", queue=False)

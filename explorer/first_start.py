"""First start on a fresh machine (a Gradio SDK Space runs only `python app.py`): prepare what
`make` prepares locally, while a small "preparing" app answers on the port.

What is prepared: the offline model zoo (``explorer.zoo.prepare`` into MODELS_DIR) and the Browser
tab's npm assets (``explorer.browser_assets``, no npm). Each step logs its progress. The
placeholder page has the app's tabs, each saying that models are still being prepared, a live log,
and a ``/health`` API answering ``{"status": "preparing", ...}``; the real app replaces it on the
same port once everything is ready. A failed step is shown on the page and in ``/health`` and the
app then starts with what there is (models not prepared show as unavailable), rather than not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from explorer import catalog, zoo
from explorer.config import Settings

log = logging.getLogger(__name__)

TABS = ("Transcribe", "Compare", "Evaluate", "Batch", "Browser", "Models")


def _assets_dir(settings: Settings) -> Path:
    from gradio_browser_asr import ASSETS_DIR

    return settings.browser_assets_dir or ASSETS_DIR


def needed(settings: Settings) -> list[str]:
    """The steps this machine still needs ("model zoo", "browser assets"); empty when ready."""
    from gradio_browser_asr import assets_missing

    steps = []
    if any(zoo.local_weights(n, settings.models_dir) is None and zoo.packages_installed(n) for n in zoo.MODELS):
        steps.append("model zoo")
    if assets_missing(_assets_dir(settings)):
        steps.append("browser assets")
    return steps


@dataclass
class Progress:
    """What the placeholder shows: the steps, the log so far, and how it ended."""

    steps: list[str]
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    done: bool = False
    errors: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        log.info("first start: %s", line)
        self.lines.append(catalog.without_paths(line))  # the page is public: no server paths

    def health(self) -> dict:
        return {
            "status": "preparing" if not self.done else "ready",
            "preparing": self.steps,
            "seconds": round(time.time() - self.started, 1),
            "errors": list(self.errors),
            "log": self.lines[-20:],
        }


def prepare(settings: Settings, steps: list[str], progress: Progress) -> None:
    """Run the steps, each on its own: one failing does not stop the other."""
    from explorer import browser_assets

    actions: dict[str, Callable[[], object]] = {
        "model zoo": lambda: zoo.prepare(models_dir=settings.models_dir, log=progress.log),
        "browser assets": lambda: browser_assets.fetch(_assets_dir(settings), log=progress.log),
    }
    for step in steps:
        progress.log(f"{step}: preparing")
        start = time.perf_counter()
        try:
            actions[step]()
        except Exception as exc:  # shown on the page and in /health; the app starts without it
            progress.errors.append(catalog.without_paths(f"{step}: {type(exc).__name__}: {exc}"))
            log.exception("first start: %s failed", step)
            continue
        progress.log(f"{step}: ready in {time.perf_counter() - start:.0f} s")
    progress.done = True


def placeholder(progress: Progress):
    import gradio as gr

    def status() -> tuple[str, str]:
        if progress.done:
            head = "**Ready.** Reload the page to open the explorer."
        else:
            head = f"**Preparing** {', '.join(progress.steps)} ({time.time() - progress.started:.0f} s so far)."
        if progress.errors:
            head += "\n\nFailed (the app starts without it): " + "; ".join(progress.errors)
        return head, "\n".join(progress.lines[-40:])

    def health() -> dict:
        """{"status": "preparing"} while the first start prepares models and assets."""
        return progress.health()

    with gr.Blocks(title="Open-ASR Model Explorer (preparing)") as demo:
        gr.Markdown("# Open-ASR Model Explorer\nFirst start: preparing models and browser assets.")
        head = gr.Markdown(status()[0])
        with gr.Tabs():
            for name in TABS:
                with gr.Tab(name):
                    gr.Markdown(
                        f"Models are still being prepared: the {name} tab opens when they are ready "
                        "(reload the page then)."
                    )
        lines = gr.Textbox(status()[1], label="Log", lines=12, max_lines=12, autoscroll=True)
        gr.Timer(2.0).tick(status, None, [head, lines], api_visibility="private")
        gr.api(health, api_name="health", queue=False)
    return demo


def run(settings: Settings, launch_kwargs: Optional[dict] = None) -> Optional[Progress]:
    """Prepare what is missing while the placeholder serves; None when nothing was needed (or
    PREPARE_ON_START is off)."""
    steps = needed(settings) if settings.prepare_on_start else []
    if not steps:
        return None
    progress = Progress(steps)
    log.info("first start: models in %s", settings.models_dir)  # the server's log only, not the page
    progress.log(f"preparing {', '.join(steps)}")
    demo = placeholder(progress)
    demo.launch(server_name=settings.host, server_port=settings.port, prevent_thread_lock=True, **(launch_kwargs or {}))
    try:
        worker = threading.Thread(target=prepare, args=(settings, steps, progress), name="first-start")
        worker.start()
        worker.join()
    finally:
        demo.close()
    return progress

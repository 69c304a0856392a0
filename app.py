"""Open-ASR Model Explorer: `python app.py` serves the Gradio app (HOST/PORT from the environment)."""

import logging
import os
import signal

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from explorer.batch import BatchRunner  # noqa: E402
from explorer.config import Settings  # noqa: E402
from explorer import first_start, gpu  # noqa: E402,F401 - gpu: spaces.GPU calls registered before the first launch
from explorer.isolation import isolation_middleware  # noqa: E402
from explorer.live import LiveStreams  # noqa: E402
from explorer.live_api import build_live_router  # noqa: E402
from explorer.openai_api import build_openai_router, build_unknown_url_router  # noqa: E402
from explorer.service import ModelService  # noqa: E402
from explorer.ui import CSS, build_app  # noqa: E402
from explorer.ui.widgets import gradio_cache, start_output_sweeper  # noqa: E402


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    settings = Settings.from_env()
    # A fresh machine (a Gradio SDK Space) prepares the zoo and browser assets first, behind a
    # "preparing" page on the same port.
    first_start.run(settings)
    service = ModelService(settings)
    # A job's audio for the player goes inside Gradio's cache: served in place, deleted with the job.
    runner = BatchRunner(service, settings, audio_copies=gradio_cache() / "job-audio")
    runner.start()  # jobs left by a crash are queued again here
    # SIGTERM as Ctrl-C: launch() then closes the server and returns, and the runner stops below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        live = LiveStreams(service, settings)
        live.start_reaper()  # streams whose client left (no audio for LIVE_STREAM_IDLE_SECONDS) are closed
        demo = build_app(service, settings, runner, live)
        start_output_sweeper(settings, demo)  # uploads, downloads, exports: OUTPUT_TTL_MINUTES after written
        # The OpenAI-compatible routes join Gradio's own FastAPI app (same port, same service),
        # sharing its queue's bound; /docs lists them. COOP/COEP on every response make the page
        # cross-origin isolated: the Browser tab's WASM then runs multi-threaded.
        openai_routes = [
            *build_openai_router(service, settings, demo._queue).routes,
            *build_live_router(live, settings).routes,
            *build_unknown_url_router(settings).routes,  # last: it matches any other /v1 path
        ]
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            max_file_size=settings.max_upload_bytes,
            state_session_capacity=settings.max_sessions,
            css=CSS,
            app_kwargs={
                "routes": openai_routes,
                "docs_url": "/docs",
                "middleware": isolation_middleware(settings.cross_origin_isolation),
            },
        )
    finally:
        # A moment for the jobs in hand; those still running go back to the queue in their place.
        runner.stop(grace=2)
        if runner.working():  # a model call is still running in a thread: do not tear its model down under it
            logging.shutdown()
            os._exit(0)


if __name__ == "__main__":
    main()

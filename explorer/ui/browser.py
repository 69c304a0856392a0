"""Browser tab: Whisper in the user's browser (gradio_browser_asr), next to server streaming.

The browser sends only its final transcript and metrics; the server keeps them (bounded, in
memory) under the run id the browser made, so they show here, join Compare, and can be read
back through the API with /browser_result.
"""

from __future__ import annotations

import html
import logging

import gradio as gr

from explorer import catalog, stream_map
from explorer.audio import AudioError
from explorer.evaluate import DatasetError
from explorer.config import Settings
from explorer.live import LiveStreamError, LiveStreams, as_16k
from explorer.service import ModelError, ModelService
from explorer.simulate import StreamReport, stream_passes
from explorer.types import TranscribeOptions
from explorer.ui.widgets import BrowserResults, browser_component, user_error

log = logging.getLogger(__name__)
# Longest real-time wait between two yields of /simulate_stream: how soon a stream whose client
# left is noticed (Gradio checks between yields) and closed.
STREAM_TICK_SECONDS = 0.1


def stream_html(committed: str, unconfirmed: str) -> str:
    """Committed text as is, the unconfirmed tail muted: the same look as the browser's."""
    tail = f" <span class='unconfirmed' style='opacity:0.7;font-style:italic'>{html.escape(unconfirmed)}</span>" if unconfirmed else ""
    return f"<div><span class='committed'>{html.escape(committed)}</span>{tail}</div>"


def report_summary(report: StreamReport) -> dict:
    latency = report.latency
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
        "word_latency": latency.to_dict() if latency else None,
        "word_times": report.word_times,
    }


def streamable_models(service: ModelService) -> list[str]:
    """Models LocalAgreement can stream with: timed words (faster-whisper) or timed Whisper
    segments (transformers, ONNX), ready here."""
    return [
        m.key for m in catalog.MODELS
        if m.engine in ("faster-whisper", "transformers", "onnx") and service.availability[m.key].status == "ready"
    ]  # fmt: skip


def build_live_stream(service: ModelService, settings: Settings, live: LiveStreams) -> None:
    """The microphone streamed to the server: LocalAgreement-2 passes as the audio arrives."""
    keys = streamable_models(service)

    def start(stream_id, model, language, min_chunk, request: gr.Request):
        """Record pressed: the take's stream opens here (limits and model checked before any audio).
        Opening on Record, not on the first chunk: Gradio may send one more chunk after Stop, which
        would otherwise open a stream that the next take inherits, clock and all."""
        session_ended(stream_id)  # a take whose Stop never arrived
        try:
            return live.open(f"ui:{request.session_hash}", model, TranscribeOptions(language=language or None), float(min_chunk)).id
        except (LiveStreamError, ModelError, ValueError) as exc:
            raise user_error(exc) from exc

    def push(chunk, stream_id):
        """One microphone chunk into the take's stream; passes run on the stream's thread (see
        explorer.live: a handler that waited would lose chunks). The committed text + muted tail."""
        if chunk is None or stream_id is None:
            return gr.skip()  # no take open: a chunk that came after Stop
        try:
            rate, samples = chunk
            update = live.get(stream_id).push(as_16k(rate, samples), wait=False)
        except (AudioError, LiveStreamError, ModelError, ValueError) as exc:
            raise user_error(exc) from exc
        return stream_html(update.committed, update.unconfirmed)

    def stop(stream_id):
        """Recording stopped: the tail made final, the latency figures."""
        if stream_id is None:
            return gr.skip(), gr.skip(), None
        try:
            final = live.close(stream_id)
        except LiveStreamError as exc:
            raise user_error(exc) from exc
        return stream_html(final.committed, ""), final.to_dict(), None

    def session_ended(stream_id) -> None:
        if stream_id is not None:
            try:
                live.close(stream_id, reason="session ended")
            except LiveStreamError:
                pass  # already closed (stopped, idle or over its time limit)

    gr.Markdown(
        "### Live server streaming\nYour microphone, streamed to the server: LocalAgreement-2 in Python "
        "with the chosen model; each pass holds a model slot only while it runs. Stop recording for the "
        f"latency figures. At most {settings.live_stream_max_seconds:g} s per stream (LIVE_STREAM_MAX_SECONDS)."
    )
    stream_id = gr.State(None, delete_callback=session_ended)
    with gr.Row():
        with gr.Column():
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone (server streaming)", elem_id="live-mic")
            model = gr.Dropdown(keys, value=keys[0] if keys else None, label="Server model")
            with gr.Row():
                language = gr.Textbox("en", label="Language")
                min_chunk = gr.Slider(0.5, 3.0, value=1.0, step=0.5, label="Min chunk (s)")
        with gr.Column():
            text = gr.HTML(label="Committed (normal) and unconfirmed (muted)", elem_id="live-text")
            summary = gr.JSON(label="Latency (live)", elem_id="live-summary")
    mic.start_recording(start, [stream_id, model, language, min_chunk], stream_id, queue=False, api_visibility="private")
    mic.stream(
        push, [mic, stream_id], text, stream_every=0.5,
        time_limit=int(settings.live_stream_max_seconds) + 5, concurrency_id="live", concurrency_limit=settings.max_live_streams,
        show_progress="hidden",
        api_visibility="private",
    )  # fmt: skip
    mic.stop_recording(stop, stream_id, [text, summary, stream_id], api_visibility="private")


def build_server_stream(service: ModelService, settings: Settings) -> None:
    """The same LocalAgreement-2 on the server (faster-whisper), fed a file in simulated real time."""
    keys = [m.key for m in catalog.MODELS if m.engine == "faster-whisper" and service.availability[m.key].status != "unavailable"]

    def run(audio, model, language, min_chunk, progress=gr.Progress()):
        """Stream a file through LocalAgreement-2 with a faster-whisper model in real time; yields
        (committed + muted tail as HTML, summary) per pass, the last with the first-commit latency
        and mean commit lag."""
        if audio is None:
            raise gr.Error("No audio: upload a file.")
        try:
            _, options, _ = service.check(model, TranscribeOptions(language=language or None))
            decoded = service.decode(audio)
            service.preload(model)  # the stream's clock starts after the model is loaded
        except (AudioError, ModelError, ValueError) as exc:
            raise user_error(exc) from exc
        # The passes run in this generator, so inside its "models" slot: when the client leaves or
        # cancels, Gradio closes the generator at its next yield (a tick or one model call away)
        # and nothing runs on (a thread would).
        passes, outcome = 0, "closed by the client"
        try:
            for item in stream_passes(service, model, decoded, options, float(min_chunk), tick_seconds=STREAM_TICK_SECONDS):
                if item is None:  # waiting for audio: a yield lets Gradio notice a client that left
                    yield gr.skip(), gr.skip()
                elif isinstance(item, StreamReport):
                    outcome = "finished"
                    yield stream_html(item.text, ""), report_summary(item)
                else:
                    passes += 1
                    progress((min(item.audio_seconds, decoded.duration), decoded.duration), desc="streaming", unit="s")
                    yield stream_html(item.committed, item.unconfirmed), gr.skip()
        except (AudioError, ModelError, ValueError) as exc:
            outcome = "failed"
            raise user_error(exc) from exc
        finally:
            log.info("server stream on %s %s after %d passes", model, outcome, passes)

    gr.Markdown(
        "## Server streaming (simulation)\nThe same policy in Python (`explorer/local_agreement.py`) with "
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


MAX_MAP_POINTS = 6  # models × chunks one request may ask for (each streams the whole dataset)


def build_stream_map(service: ModelService, settings: Settings) -> None:
    """The latency–accuracy map on the LibriVox clips, for a chosen set of models and chunks."""
    keys = streamable_models(service)

    def run(models, chunks, progress=gr.Progress()):
        """Each model × minimum chunk streamed over the LibriVox clips on the computation-aware
        timeline: (table with the Pareto front, WER-vs-latency plot)."""
        chunks = sorted(float(c) for c in chunks or [])
        if not models or not chunks:
            raise gr.Error("Pick at least one model and one minimum chunk.")
        if len(models) * len(chunks) > MAX_MAP_POINTS:
            raise gr.Error(f"At most {MAX_MAP_POINTS} model × chunk points per run.")
        try:
            utterances = stream_map.librivox_utterances()
            points = stream_map.run_map(
                service, models, chunks, utterances, "en", alignment_cache=settings.data_dir / "alignments",
                on_progress=lambda done, total, what: progress((done, total), desc=what),
            )  # fmt: skip
        except (AudioError, DatasetError, ModelError, ValueError) as exc:
            raise user_error(exc) from exc
        frame = stream_map.map_frame(points)
        figure = stream_map.plot(frame)
        return stream_map.table(frame), figure

    with gr.Accordion("Latency–accuracy map (LibriVox clips)", open=False):
        gr.Markdown(
            "Each model × minimum chunk streams the five LibriVox clips on the computation-aware timeline "
            "(a pass starts once its audio has arrived and the previous pass ended). Word latency is the "
            "emission time minus the word's end in a reference alignment (the largest local faster-whisper "
            "model, offline); points on the Pareto front are marked. `python -m explorer stream-bench` does the same."
        )
        with gr.Row():
            models = gr.CheckboxGroup(keys, value=keys[:1], label="Models")
            chunks = gr.CheckboxGroup(["0.5", "1", "2"], value=["1"], label="Minimum chunk (s)")
        button = gr.Button("Map")
        table = gr.Dataframe(label="Latency and WER (pareto = on the front)", interactive=False)
        figure = gr.Plot(label="WER against mean word latency")
    button.click(
        run, [models, chunks], [table, figure], api_name="stream_map", concurrency_id="models",
        concurrency_limit=settings.num_workers,
    )  # fmt: skip


def build_browser(service: ModelService, settings: Settings, results: BrowserResults, live: LiveStreams) -> None:
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
        build_live_stream(service, settings, live)
        build_stream_map(service, settings)
        return
    received = gr.JSON(label="Received by the server (final transcript and metrics only)")

    def receive(result):
        if result is None:
            return gr.skip()
        try:
            kept = results.add(result)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        # A stream's events (one per word) are for the API (/browser_result), not for reading here.
        return {**kept, "events": f"{len(kept['events'])} commit events (see /browser_result)"} if kept["events"] else kept

    def browser_result(run_id: str) -> dict:
        """A browser run's final transcript and metrics, by the run id shown in the Browser tab."""
        found = results.get((run_id or "").strip())
        if found is None:
            raise gr.Error(f"no browser result {run_id!r}")
        return found

    component.change(receive, component, received, api_visibility="private")
    gr.api(browser_result, api_name="browser_result", queue=False)
    build_server_stream(service, settings)
    build_live_stream(service, settings, live)
    build_stream_map(service, settings)

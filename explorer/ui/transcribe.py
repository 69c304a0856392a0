"""Transcribe tab: one model, one audio, the transcript streaming in, metrics and downloads."""

from __future__ import annotations

from typing import Optional

import gradio as gr
import pandas as pd

from explorer import catalog, display, formats
from explorer.audio import AudioError
from explorer.service import ModelError, ModelService
from explorer.types import Transcription
from explorer.ui.widgets import (
    language_choices,
    make_options,
    metric_cards,
    model_choices,
    output_folder,
    sample_examples,
    user_error,
    warnings_markdown,
)

SEGMENT_COLUMNS = ["start", "end", "text"]


def describe_model(service: ModelService, key: str) -> str:
    spec = catalog.get(key)
    avail = service.availability[key]
    failed = service.failed.get(key)
    # The page is public: a reason names no server path (the log has it).
    lines = [f"**{avail.label}**: {catalog.without_paths(failed or avail.reason)}", f"Weights: {spec.source}"]
    if spec.gated:
        lines.append("Gated on the Hub (needs `HF_TOKEN`).")
    if spec.trust_remote_code:
        lines.append("Runs the repo's own code (`trust_remote_code`, allow-listed ids only).")
    return "  \n".join(lines)


def segments_frame(t: Optional[Transcription]) -> pd.DataFrame:
    rows = [(s.start, s.end, s.text.strip()) for s in (t.segments if t else ())]
    return display.frame(pd.DataFrame(rows, columns=SEGMENT_COLUMNS))


def write_downloads(t: Transcription) -> list[str]:
    folder = output_folder("transcript-")
    stem = t.model.replace("/", "_")
    paths = []
    for ext, writer in formats.WRITERS.items():
        path = folder / f"{stem}.{ext}"
        path.write_text(writer(t), encoding="utf-8")
        paths.append(str(path))
    return paths


def build_transcribe(service: ModelService, settings) -> None:
    def updates(audio, model, language, task, beam_size, word_timestamps, vad_filter, progress=None):
        """Validate the request and stream the service's updates; errors become gr.Error."""
        if audio is None:
            raise gr.Error("No audio: upload a file or record from the microphone.")
        if not model:
            raise gr.Error("Pick a model.")
        options = make_options(language, task, beam_size, word_timestamps, vad_filter)
        try:
            service.check(model, options)  # before decoding: a request that cannot run fails at once
            decoded = service.decode(audio)
            for w in decoded.warnings:
                gr.Warning(w)
            yield from service.stream(model, decoded, options, progress=progress)
        except (AudioError, ModelError, ValueError) as exc:
            raise user_error(exc) from exc

    def run(audio, model, language, task, beam_size, word_timestamps, vad_filter, progress=gr.Progress()):
        """Stream a transcription: the text grows as the model emits; the last update has everything."""
        report = lambda frac, desc: progress(frac, desc=desc)  # noqa: E731
        for update in updates(audio, model, language, task, beam_size, word_timestamps, vad_filter, report):
            if update.result is None:
                yield update.text, "", gr.skip(), gr.skip(), gr.skip(), gr.skip()
            else:
                t = update.result
                cards = metric_cards(t, settings.device_price_per_hour)
                yield t.text, warnings_markdown(t.warnings), cards, segments_frame(t), write_downloads(t), t.to_dict()

    def run_once(audio, model, language, task, beam_size, word_timestamps, vad_filter):
        """Transcribe and return the whole result (text, segments, metrics, model, language, warnings)."""
        for update in updates(audio, model, language, task, beam_size, word_timestamps, vad_filter):
            if update.result is not None:
                return update.result.to_dict()

    default = settings.default_model if settings.default_model in catalog.BY_KEY else catalog.MODELS[0].key
    with gr.Row():
        with gr.Column(scale=2):
            model = gr.Dropdown(model_choices(service), value=default, label="Model", allow_custom_value=True)
            model_info = gr.Markdown(describe_model(service, default))
            with gr.Row():
                # Custom values let API clients name any language; the service checks it against the model.
                language = gr.Dropdown(
                    language_choices(default), value=language_choices(default)[0], label="Language", allow_custom_value=True
                )
                task = gr.Radio(["transcribe", "translate"], value="transcribe", label="Task")
            beam_size = gr.Slider(1, 10, value=1, step=1, label="Beam size")
            with gr.Row():
                word_timestamps = gr.Checkbox(False, label="Word timestamps")
                vad_filter = gr.Checkbox(True, label="Skip non-speech (VAD)")
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio")
            button = gr.Button("Transcribe", variant="primary")
            sample_examples(audio, "Sample clips (LibriVox, public domain; see explorer/samples/SOURCES.md)", "transcribe-samples")
        with gr.Column(scale=3):
            transcript = gr.Textbox(label="Transcript", lines=6, interactive=False)
            warnings = gr.Markdown()
            cards = gr.HTML()
            segments = gr.Dataframe(headers=SEGMENT_COLUMNS, label="Segments", interactive=False, wrap=True)
            downloads = gr.File(label="Download (TXT, SRT, VTT, JSON)", file_count="multiple", interactive=False)
            with gr.Accordion("Result as JSON", open=False):
                result = gr.JSON()

    def on_model_change(key):
        choices = language_choices(key)
        return gr.update(choices=choices, value=choices[0]), describe_model(service, key)

    model.change(on_model_change, model, [language, model_info], api_visibility="private", queue=False)
    inputs = [audio, model, language, task, beam_size, word_timestamps, vad_filter]
    outputs = [transcript, warnings, cards, segments, downloads, result]
    button.click(
        run, inputs, outputs, api_name="transcribe_stream", concurrency_id="models", concurrency_limit=settings.num_workers
    )
    # The same request as one JSON answer, for API clients (no streaming).
    gr.Button(visible=False).click(
        run_once, inputs, result, api_name="transcribe", concurrency_id="models", concurrency_limit=settings.num_workers
    )

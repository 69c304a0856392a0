"""Compare tab: several models on one audio. Each model is its own queued event (one per slot), so
models run as the workers allow and each result shows as soon as it is done; a cheap summary
(table, word alignment, WER-vs-RTFx plot, exports) is recomputed from all finished slots."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Optional, Sequence

import gradio as gr
import pandas as pd

from explorer import display
from explorer.audio import Audio, AudioError
from explorer.compare import REFERENCE, Comparison, compare
from explorer.scoring import AlignedWord
from explorer.service import ModelError, ModelService
from explorer.types import TranscribeOptions, Transcription
from explorer.ui.widgets import (
    AUTO,
    BrowserResults,
    as_transcription,
    browser_component,
    error_message,
    make_options,
    metric_cards,
    model_choices,
    write_table_exports,
    sample_examples,
    warnings_markdown,
)

MAX_MODELS = 6
DEFAULT_MODELS = ("faster-whisper/tiny.en", "faster-whisper/base")
LANGUAGES = [AUTO, "en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "uk", "zh", "ja", "ko", "ar", "hi", "tr"]
TABLE_COLUMNS = [
    "model", "against", "wer", "cer", "substitutions", "deletions", "insertions", "rtfx",
    "ttft_seconds", "itl_seconds", "processing_seconds", "load_seconds", "audio_seconds", "cost_per_audio_hour",
    "normalizer", "text", "environment",
]  # fmt: skip
# Short display names keep the table narrow; the exports keep the full column names.
TABLE_HEADERS = {
    "wer": "WER", "cer": "CER", "substitutions": "sub", "deletions": "del", "insertions": "ins", "rtfx": "RTFx",
    "ttft_seconds": "TTFT", "itl_seconds": "ITL", "processing_seconds": "processing", "load_seconds": "load",
    "audio_seconds": "audio", "cost_per_audio_hour": "$ / audio h", "environment": "run on",
}  # fmt: skip
EMPTY_TABLE = pd.DataFrame(columns=[TABLE_HEADERS.get(c, c) for c in TABLE_COLUMNS])
USER_ERRORS = (AudioError, ModelError, ValueError)


@dataclass(frozen=True)
class Request:
    """What one press of Compare asked for, the audio decoded once for every slot."""

    models: tuple[str, ...]
    options: TranscribeOptions
    audio: Audio


@dataclass(frozen=True, eq=False)
class Slot:
    """The components that show one model's run."""

    box: gr.Column
    transcript: gr.Textbox
    status: gr.Markdown
    cards: gr.HTML
    result: gr.State  # the Transcription once done, else None

    @property
    def components(self) -> list:
        return [self.box, self.transcript, self.status, self.cards, self.result]

    def reset(self, key: Optional[str]) -> dict:
        return {
            self.box: gr.update(visible=key is not None),
            self.transcript: gr.update(value="", label=key or "model"),
            self.status: "",
            self.cards: "",
            self.result: None,
        }


def selected_models(models) -> list[str]:
    keys = list(dict.fromkeys(m for m in (models or []) if m))  # unique, in the order picked
    if not keys:
        raise gr.Error("Pick at least one model.")
    if len(keys) > MAX_MODELS:
        raise gr.Error(f"Pick at most {MAX_MODELS} models (got {len(keys)}).")
    return keys


def check_models(service: ModelService, keys: Sequence[str], options: TranscribeOptions) -> None:
    """Fail before running anything: every key known, available and able to take the options."""
    for key in keys:
        try:
            service.check(key, options)
        except USER_ERRORS as exc:
            raise gr.Error(f"{key}: {error_message(exc)}") from exc


def rtfx_note(num_workers: int) -> str:
    if num_workers <= 1:
        return "Models run one at a time on the shared device (`NUM_WORKERS=1`), so their RTFx are comparable."
    return (
        f"Up to {num_workers} models run at once (`NUM_WORKERS={num_workers}`) and share the device: "
        "RTFx is only comparable with `NUM_WORKERS=1`."
    )


# -- views of a Comparison ------------------------------------------------------------------------
def table_frame(c: Comparison) -> pd.DataFrame:
    """The comparison as people read it (percentages, "12.3×", seconds); the exports keep raw numbers."""
    return display.frame(c.frame[TABLE_COLUMNS]).rename(columns=TABLE_HEADERS)


def plot_frame(c: Comparison) -> pd.DataFrame:
    return display.plot_points(c.frame)


def plot_note(c: Comparison) -> str:
    if not c.results:
        return ""
    if not c.scored:
        return "No reference text and no model to score against: no WER to plot (RTFx is in the table)."
    return f"WER against **{html.escape(c.against)}** vs RTFx (higher is faster)."


LEGEND = (
    "<div class='align-legend'>"
    "<span class='al-sub'>substitution <s>reference</s> → hypothesis</span>"
    "<span class='al-ins'>insertion</span><span class='al-del'><s>deletion</s></span>"
    "</div>"
)


def _word(w: AlignedWord) -> str:
    ref, hyp = html.escape(w.reference), html.escape(w.hypothesis)
    if w.op == "equal":
        return f"<span class='al-eq'>{hyp}</span>"
    if w.op == "substitute":
        return f"<span class='al-sub' title='{ref} → {hyp}'><s>{ref}</s> {hyp}</span>"
    if w.op == "insert":
        return f"<span class='al-ins' title='inserted'>{hyp}</span>"
    return f"<span class='al-del' title='deleted'><s>{ref}</s></span>"


def alignment_html(c: Comparison) -> str:
    if not c.alignments:
        return ""
    against = "the reference" if c.against == REFERENCE else c.against
    blocks = "".join(
        f"<div class='align-model'><div class='align-name'>{html.escape(model)}</div>"
        f"<div class='align-words'>{' '.join(_word(w) for w in steps) or '(empty)'}</div></div>"
        for model, steps in c.alignments.items()
    )
    return f"<div class='alignment'><p>Words after normalisation, against {html.escape(against)}.</p>{LEGEND}{blocks}</div>"


def write_exports(c: Comparison) -> list[str]:
    return write_table_exports("compare-", "comparison", c.to_csv(), c.to_json())


def comparison_so_far(request: Optional[Request], reference: str, against: Optional[str], results: Sequence[Optional[Transcription]],
            price_per_hour: Optional[float] = None):  # fmt: skip
    """The comparison of the finished slots, and a note while the chosen pivot model has no result."""
    done = [r for r in results if r is not None]
    options = request.options if request else None
    waiting = ""
    if against not in (None, "", REFERENCE) and against not in {r.model for r in done}:
        waiting = f"⏳ No result from {html.escape(against)} (yet): scores against it show once it has one."
        against = None
    return compare(done, reference, options.language if options else None, against, options, price_per_hour), waiting


# -- the tab --------------------------------------------------------------------------------------
def build_compare(service: ModelService, settings, browser_results: BrowserResults) -> None:
    choices = model_choices(service)
    known = {key for _, key in choices}
    ready = [k for k in DEFAULT_MODELS if k in known and service.availability[k].status == "ready"]

    with gr.Row():
        with gr.Column(scale=2):
            models = gr.Dropdown(
                choices, value=ready, multiselect=True, max_choices=MAX_MODELS, allow_custom_value=True,
                label=f"Models (up to {MAX_MODELS})",
            )  # fmt: skip
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio")
            reference = gr.Textbox(label="Reference text (optional)", lines=2, placeholder="what was actually said")
            with gr.Row():
                language = gr.Dropdown(LANGUAGES, value=AUTO, label="Language", allow_custom_value=True)
                against = gr.Dropdown(
                    [("reference text", REFERENCE), *[(k, k) for k in ready]], value=REFERENCE,
                    label="Score and align against", allow_custom_value=True,
                )  # fmt: skip
            beam_size = gr.Slider(1, 10, value=1, step=1, label="Beam size")
            vad_filter = gr.Checkbox(True, label="Skip non-speech (VAD)")
            button = gr.Button("Compare", variant="primary")
            gr.Markdown(rtfx_note(settings.num_workers))
            sample_examples(audio, "Sample clips", "compare-samples")
        with gr.Column(scale=3):
            slots = []
            for i in range(MAX_MODELS):
                with gr.Column(visible=False) as box:
                    slots.append(
                        Slot(
                            box,
                            gr.Textbox(label=f"model {i + 1}", lines=2, interactive=False),
                            gr.Markdown(),
                            gr.HTML(),
                            gr.State(),
                        )
                    )
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(EMPTY_TABLE, label="Comparison", interactive=False, wrap=True)
            pending = gr.Markdown()
            aligned = gr.HTML()
        with gr.Column(scale=2):
            note = gr.Markdown()
            plot = gr.ScatterPlot(
                x="rtfx", y="wer_percent", color="model", x_title=display.RTFX_AXIS, y_title=display.WER_AXIS,
                label="WER vs RTFx", tooltip="all", x_axis_format=display.AXIS_FORMAT, y_axis_format=display.AXIS_FORMAT,
            )  # fmt: skip
            exports = gr.File(label="Download (CSV, JSON)", file_count="multiple", interactive=False)
            with gr.Accordion("Comparison as JSON", open=False):
                answer = gr.JSON()
    with gr.Accordion("Add a browser model (runs in this page: pick the same file in it)", open=False):
        in_browser = browser_component(settings)
    browser_result = gr.State()
    request = gr.State()

    def prepare(audio, models, language, beam_size, vad_filter):
        if audio is None:
            raise gr.Error("No audio: upload a file or record from the microphone.")
        keys = selected_models(models)
        options = make_options(language, "transcribe", beam_size, False, vad_filter)
        try:
            decoded = service.decode(audio)  # once, for every model of the request
        except AudioError as exc:
            raise gr.Error(error_message(exc)) from exc
        out = {request: Request(tuple(keys), options, decoded)}
        for i, slot in enumerate(slots):
            out.update(slot.reset(keys[i] if i < len(keys) else None))
        return out

    def slot_runner(i: int):
        slot = slots[i]

        def run(request, progress=gr.Progress()):
            """Run the request's i-th model, streaming its transcript into slot i; errors stay in the slot."""
            if request is None or i >= len(request.models):
                yield gr.skip()
                return
            key = request.models[i]
            try:
                report = lambda frac, desc: progress(frac, desc=desc)  # noqa: E731
                for update in service.stream(key, request.audio, request.options, progress=report):
                    t = update.result
                    if t is None:
                        yield {slot.transcript: update.text}
                    else:
                        yield {
                            slot.transcript: t.text,
                            slot.status: warnings_markdown(t.warnings),
                            slot.cards: metric_cards(t, settings.device_price_per_hour),
                            slot.result: t,
                        }
            except USER_ERRORS as exc:
                yield {slot.status: f"❌ **{html.escape(key)}**: {html.escape(error_message(exc))}", slot.result: None}

        return run

    def show_comparison(request, reference, against, *results):
        """The summary of the finished slots: first emptied, then filled (Gradio 6.17 keeps a
        Dataframe's rendered rows and a plot's colour domain from their first non-empty value,
        gradio-app/gradio#13611, fixed by #13744). One event, so that a later trigger's summary
        never lands before an earlier one's (two chained events could, and left a model out)."""
        c, waiting = comparison_so_far(request, reference, against, results, settings.device_price_per_hour)
        yield {table: EMPTY_TABLE, plot: None}
        yield {
            table: table_frame(c),
            pending: waiting,
            aligned: alignment_html(c),
            note: plot_note(c),
            plot: plot_frame(c),
            exports: write_exports(c) if c.results else None,
            answer: c.to_dict() if c.results else None,
        }

    def on_models_change(models, current):
        keys = list(dict.fromkeys(m for m in (models or []) if m))
        value = current if current in keys else REFERENCE
        return gr.update(choices=[("reference text", REFERENCE), *[(k, k) for k in keys]], value=value)

    def compare_once(audio, models, reference, language, beam_size, vad_filter, against=REFERENCE):
        """Run several models (a list of keys) on one audio, one after another. Scores and word
        alignments are against the reference text, or against one model's transcript when `against`
        names one. Returns {reference, against, language, options, rows, results, alignments}."""
        if audio is None:
            raise gr.Error("No audio: upload a file or record from the microphone.")
        keys = selected_models(models)
        options = make_options(language, "transcribe", beam_size, False, vad_filter)
        check_models(service, keys, options)
        if against not in (None, "", REFERENCE) and against not in keys:
            raise gr.Error(f"against {against!r}: name 'reference' or one of the compared models")
        try:
            decoded = service.decode(audio)
        except AudioError as exc:
            raise gr.Error(error_message(exc)) from exc
        results = []
        for key in keys:
            try:
                results.append(service.transcribe(key, decoded, options))
            except USER_ERRORS as exc:
                raise gr.Error(f"{key}: {error_message(exc)}") from exc
        return compare(results, reference, options.language, against, options, settings.device_price_per_hour).to_dict()

    models.change(on_models_change, [models, against], against, api_visibility="private", queue=False)
    started = button.click(
        prepare, [audio, models, language, beam_size, vad_filter], [request, *[c for s in slots for c in s.components]],
        api_visibility="private", queue=False,
    )  # fmt: skip
    for i, slot in enumerate(slots):
        started.success(
            slot_runner(i), [request], [slot.transcript, slot.status, slot.cards, slot.result],
            api_visibility="private", concurrency_id="models", concurrency_limit=settings.num_workers,
        )  # fmt: skip
    gr.on(
        [reference.blur, against.change, browser_result.change, *[s.result.change for s in slots]],
        show_comparison, [request, reference, against, *[s.result for s in slots], browser_result],
        [table, pending, aligned, note, plot, exports, answer], api_visibility="private", trigger_mode="always_last",
        concurrency_limit=None,
    )  # fmt: skip
    if in_browser is not None:

        def from_browser(result):
            """The browser's final result joins the comparison like one more model."""
            if result is None:
                return gr.skip()
            try:
                return as_transcription(browser_results.add(result))
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc

        in_browser.change(from_browser, in_browser, browser_result, api_visibility="private")
    gr.Button(visible=False).click(
        compare_once, [audio, models, reference, language, beam_size, vad_filter, against], answer,
        api_name="compare", concurrency_id="models", concurrency_limit=settings.num_workers,
    )  # fmt: skip

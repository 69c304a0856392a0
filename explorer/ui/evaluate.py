"""Evaluate tab: N models on a dataset, a live leaderboard, saved results that reload.

The same code path as ``python -m explorer eval`` (explorer.evaluate); this tab only gathers the
inputs, shows progress, and lays out the rows and the summary.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Optional, Sequence

import gradio as gr
import pandas as pd

from explorer import catalog, display
from explorer.evaluate import (
    HUB_PREFIX,
    DatasetError,
    UtteranceResult,
    Utterance,
    ZipLimits,
    dataset_from_files,
    iter_evaluate,
    load_dataset,
    load_results,
    probe_utterances,
    results_payload,
    rows_frame,
    save_results,
    summarize,
    summarize_datasets,
)
from explorer.service import ModelService
from explorer.types import TranscribeOptions
from explorer.ui.widgets import model_choices, output_folder, scratch_folder, user_error

LEADERBOARD_COLUMNS = [
    "model", "wer", "cer", "rtfx", "utterances", "failed", "reference_words", "substitutions", "deletions",
    "insertions", "audio_seconds", "processing_seconds", "cost_per_audio_hour", "hallucinations_per_minute",
    "normalizer", "environment",
]  # fmt: skip
ROW_COLUMNS = ["model", "id", "kind", "reference", "hypothesis", "wer", "audio_seconds", "processing_seconds", "error"]
EMPTY_BOARD, EMPTY_ROWS = pd.DataFrame(columns=LEADERBOARD_COLUMNS), pd.DataFrame(columns=ROW_COLUMNS)
LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt", "pl", "ja", "zh"]


def leaderboard(summary: pd.DataFrame, by_dataset: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """The summary's columns; with several datasets (results of `eval --data A --data B` reopened
    here), also the mean over datasets and each dataset's WER ("wer: NAME")."""
    if summary.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    board = summary[LEADERBOARD_COLUMNS]
    if "mean_wer" in summary and by_dataset is not None:
        wers = by_dataset.dropna(subset=["wer"]).pivot(index="model", columns="dataset", values="wer")
        per = pd.DataFrame({f"wer: {name}": board["model"].map(wers[name]) for name in wers.columns})
        board = pd.concat([board.iloc[:, :1], summary[["mean_wer", "datasets"]], per, board.iloc[:, 1:]], axis=1)
    return display.frame(board)


def scatter_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """WER (%) against RTFx, one point per model that has both."""
    return display.plot_points(summary)


def zip_limits(settings) -> ZipLimits:
    return ZipLimits(settings.max_zip_members, settings.max_zip_bytes, settings.max_zip_ratio)


def gather(
    files: Optional[Sequence[str]], hub_dataset: str, config: str, split: str, limit: Optional[float], probe: bool,
    root: Path, limits: ZipLimits = ZipLimits(),
) -> list[Utterance]:  # fmt: skip
    """The utterances the user asked for: uploaded files or a Hub dataset, plus the probe. Read
    confined: only what this request uploaded (its own folder, `root`, which the caller removes
    once the evaluation ends), or a Hub id."""
    limit = int(limit) if limit else None
    if files and hub_dataset.strip():
        raise DatasetError("give either files or a Hugging Face dataset, not both")
    utterances: list[Utterance] = []
    if files:
        source = dataset_from_files(files, root, limits)
        utterances = load_dataset(source, split=split.strip() or None, limit=limit, root=root)
    elif hub_dataset.strip():
        name = hub_dataset.strip().removeprefix(HUB_PREFIX)
        # The root holds nothing here: a Hub dataset may carry its audio only as bytes.
        utterances = load_dataset(HUB_PREFIX + name, config=config.strip() or None, split=split.strip() or None,
                                  limit=limit, root=root)  # fmt: skip
    if probe:
        utterances += probe_utterances()
    if not utterances:
        raise DatasetError("no dataset: upload files, name a Hugging Face dataset, or tick the robustness probe")
    return utterances


def build_evaluate(service: ModelService, settings) -> None:
    def prepare(files, hub_dataset, config, split, limit, models, language, beam_size, vad_filter, probe, root: Path):
        if not models:
            raise gr.Error("Pick at least one model.")
        try:
            for key in models:
                catalog.get(key)
            utterances = gather(files, hub_dataset or "", config or "", split or "", limit, probe, root, zip_limits(settings))
            options = TranscribeOptions(language=language or None, beam_size=int(beam_size or 1), vad_filter=bool(vad_filter))
        except (DatasetError, KeyError, ValueError) as exc:
            raise user_error(exc) from exc
        meta = {
            "data": hub_dataset or [Path(f).name for f in files or []],
            "models": list(models),
            "language": language,
            "options": asdict(options),
            "probe": bool(probe),
            **({"backend": "ray", "address": settings.ray_address, "actors": settings.ray_actors} if settings.ray_address else {}),
        }
        return utterances, options, meta

    def results(
        models, utterances, options, meta, progress
    ) -> Iterator[tuple[list[UtteranceResult], bool]]:
        done: list[UtteranceResult] = []
        total = len(models) * len(utterances)
        progress((0, total), desc="warming up" if not settings.ray_address else "starting Ray", unit="utterances")
        places: list[tuple[int, int]] = []  # (model, utterance) of each result: Ray returns them as they finish
        for place, result in evaluated(models, utterances, options, meta["language"]):
            done.append(result)
            places.append(place)
            progress((len(done), total), desc=f"{result.model}: {result.id}", unit="utterances")
            yield done, False
        yield [r for _, r in sorted(zip(places, done), key=lambda pair: pair[0])], True  # in dataset order

    def evaluated(models, utterances, options, language) -> Iterator[tuple[tuple[int, int], UtteranceResult]]:
        """Each result with its place, in this process or on the Ray cluster at RAY_ADDRESS (Ray
        is imported only then)."""
        if not settings.ray_address:
            results = iter_evaluate(service, models, utterances, options, language, settings.max_audio_seconds)
            yield from ((divmod(i, len(utterances)), r) for i, r in enumerate(results))
            return
        from explorer.distributed import iter_evaluate_on_ray

        address = None if settings.ray_address == "local" else settings.ray_address
        rows = iter_evaluate_on_ray(models, utterances, options, language, actors=settings.ray_actors or None, address=address,
                                    max_seconds=settings.max_audio_seconds)  # fmt: skip
        model_place = {key: i for i, key in enumerate(models)}
        yield from (((model_place[row.result.model], row.index), row.result) for row in rows)

    def outputs(rows: pd.DataFrame, summary: pd.DataFrame, files=None, status="", language="en", normalizer=None):
        by_dataset = summarize_datasets(rows, language, normalizer) if "mean_wer" in summary else None
        return {
            status_box: status,
            board: leaderboard(summary, by_dataset),
            plot: scatter_frame(summary),
            table: display.frame(rows[(["dataset"] if by_dataset is not None else []) + ROW_COLUMNS])
            if not rows.empty
            else pd.DataFrame(columns=ROW_COLUMNS),
            downloads: files if files is not None else gr.skip(),
        }

    def resized(update: dict, sizes: dict) -> dict:
        """Gradio 6.17 keeps a Dataframe's row count and a plot's colours from their first
        non-empty value (gradio-app/gradio#13611): whatever changed size is emptied first."""
        empty = {c: update[c].iloc[:0] for c in (board, table) if len(update[c]) != sizes.get(c)}
        if len(update[plot]) != sizes.get(plot):
            empty[plot] = None  # an empty frame keeps the old colours; None resets them
        sizes.update({c: len(update[c]) for c in (board, plot, table)})
        return empty

    def run(files, hub_dataset, config, split, limit, models, language, beam_size, vad_filter, probe, progress=gr.Progress()):
        """Evaluate with a live leaderboard; the last update carries the saved result files."""
        with scratch_folder("dataset-") as root:  # the unpacked upload, gone when the run ends or is left
            utterances, options, meta = prepare(
                files, hub_dataset, config, split, limit, models, language, beam_size, vad_filter, probe, root
            )
            sizes: dict = {}
            for done, finished in results(models, utterances, options, meta, progress):
                rows = rows_frame(done)
                summary = summarize(rows, language, price_per_hour=settings.device_price_per_hour)
                if finished:
                    saved = save_results(output_folder("evaluation-"), rows, summary, meta)
                    failed = int((rows["error"] != "").sum())
                    note = f"Done: {len(rows)} results" + (f", {failed} failed (see the error column)" if failed else "")
                    update = outputs(rows, summary, [str(p) for p in saved], note)
                else:
                    update = outputs(rows, summary, status=f"{len(done)} / {len(models) * len(utterances)} done")
                if empty := resized(update, sizes):
                    yield empty
                yield update

    def run_once(files, hub_dataset, config, split, limit, models, language, beam_size, vad_filter, probe, progress=gr.Progress()):
        """Evaluate models on a dataset; returns {"meta", "summary": per-model rows, "utterances": per-utterance rows}."""
        with scratch_folder("dataset-") as root:
            utterances, options, meta = prepare(
                files, hub_dataset, config, split, limit, models, language, beam_size, vad_filter, probe, root
            )
            for done, finished in results(models, utterances, options, meta, progress):
                if finished:
                    rows = rows_frame(done)
                    return results_payload(rows, summarize(rows, language, price_per_hour=settings.device_price_per_hour), meta)

    def reopen(path):
        if not path:
            return gr.skip()
        try:
            rows, summary, meta = load_results(path)
        except DatasetError as exc:
            raise gr.Error(str(exc)) from exc
        note = f"Reloaded {Path(path).name}: {len(rows)} results, models {', '.join(summary['model'])}"
        return outputs(rows, summary, status=note, language=meta.get("language", "en"), normalizer=meta.get("normalizer"))

    ready = [key for key in ("faster-whisper/tiny.en", "faster-whisper/base") if service.availability[key].status == "ready"]
    gr.Markdown(
        "Evaluate models on a dataset with references: corpus WER/CER scored as the Open ASR Leaderboard scores "
        "them (its English normaliser and compound-merging alignment; `WER_NORMALIZER` picks another), and RTFx = "
        "total audio / total processing seconds with each model's warm-up excluded (as the Open ASR Leaderboard "
        "defines them). The CLI `python -m explorer eval` runs the same code."
        + (f" Runs on the Ray cluster at `{settings.ray_address}`, actors per model: "
           f"{settings.ray_actors or 'one per GPU (1 without GPUs)'}." if settings.ray_address else "")
    )  # fmt: skip
    with gr.Row():
        with gr.Column():
            files = gr.File(
                label="Dataset files: audio + same-named .txt, or a .csv/.tsv/.jsonl manifest with its audio, or a .zip",
                file_count="multiple",
                type="filepath",
            )
            with gr.Accordion("…or a Hugging Face dataset (needs the Hub)", open=False):
                hub_dataset = gr.Textbox(label="Dataset", placeholder="openslr/librispeech_asr")
                with gr.Row():
                    config = gr.Textbox(label="Config", placeholder="clean")
                    split = gr.Textbox(label="Split", placeholder="test")
            limit = gr.Number(0, label="Only the first N utterances (0 = all)", precision=0, minimum=0)
            probe = gr.Checkbox(False, label="Robustness probe: add generated silence, noise and tones")
        with gr.Column():
            models = gr.Dropdown(model_choices(service), value=ready, multiselect=True, label="Models")
            with gr.Row():
                language = gr.Dropdown(LANGUAGES, value="en", label="Language", allow_custom_value=True)
                beam_size = gr.Slider(1, 10, value=1, step=1, label="Beam size")
            vad_filter = gr.Checkbox(
                True, label="Skip non-speech (VAD); untick to see raw hallucination in the probe"
            )
            button = gr.Button("Evaluate", variant="primary")
            saved = gr.File(label="Open saved results (results.json or results.csv)", file_types=[".json", ".csv"])
    status_box = gr.Markdown()
    board = gr.Dataframe(label="Leaderboard (lower WER is better; higher RTFx is faster)", interactive=False)
    plot = gr.ScatterPlot(
        x="rtfx", y="wer_percent", color="model", x_title=display.RTFX_AXIS, y_title=display.WER_AXIS,
        label="Accuracy against speed", tooltip="all", x_axis_format=display.AXIS_FORMAT, y_axis_format=display.AXIS_FORMAT,
    )  # fmt: skip
    table = gr.Dataframe(label="Per utterance", interactive=False, wrap=True)
    downloads = gr.File(label="Results (CSV, JSON)", file_count="multiple", interactive=False)

    inputs = [files, hub_dataset, config, split, limit, models, language, beam_size, vad_filter, probe]
    shown = [status_box, board, plot, table, downloads]
    button.click(
        run, inputs, shown, api_visibility="private", concurrency_id="models", concurrency_limit=settings.num_workers
    )
    gr.Button(visible=False).click(
        run_once, inputs, gr.JSON(visible=False), api_name="evaluate", concurrency_id="models",
        concurrency_limit=settings.num_workers,
    )  # fmt: skip
    saved.upload(lambda: {board: EMPTY_BOARD, plot: None, table: EMPTY_ROWS}, None, shown, api_visibility="private").then(
        reopen, saved, shown, api_visibility="private"
    )

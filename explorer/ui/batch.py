"""Batch tab: many files, durable jobs with live progress, per-job detail, exports.

The browser keeps its session token in localStorage (gr.BrowserState), so a reload or a closed
tab finds the same jobs; API clients get the token from /submit_batch and pass it back. Only
tokens this server issued are accepted; a browser holding any other (one from before tokens were
signed) starts a fresh session. Watchers are async (no thread held while they wait) and bounded
per session and in all; the job endpoints share one concurrency group (JOB_API_CONCURRENCY).
"""

from __future__ import annotations

import asyncio
import html
import secrets
import textwrap
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from explorer import display, metrics
from explorer.batch import BatchRunner, JobError, finished, job_row
from explorer.jobs import Job
from explorer.service import ModelService
from explorer.sessions import LimitReached, SessionSlots
from explorer.ui.widgets import language_choices, make_options, model_choices, reachable_workers, user_error, warnings_markdown, worker_records
from explorer.ui.widgets import output_folder

TABLE_COLUMNS = ["file", "status", "preview", "audio_seconds", "rtfx", "seconds", "model", "error", "batch_size", "id", "environment"]
# The jobs table's headers; its figures read as in every tab (explorer.display), /jobs keeps numbers.
TABLE_HEADERS = {"audio_seconds": "audio", "rtfx": "RTFx", "seconds": "took", "batch_size": "batched"}
PREVIEW_WORDS = 8
FILE_CHARS = 32  # longer file names keep their start and end around "…"
REASON_CHARS = 90
SUMMARY_BATCHES = 3
WORKER_COLUMNS = ["worker", "models_loaded", "jobs_done", "running", "up_seconds", "seen_seconds_ago"]
WATCH_SECONDS = 0.5
# A watcher repeats its last update this often while nothing changes: Gradio notices a client that
# left only when a generator yields, and only then closes it (and its watcher slot is given back).
WATCH_KEEPALIVE_SECONDS = 2.0
EMPTY_TABLE = pd.DataFrame(columns=[TABLE_HEADERS.get(c, c) for c in TABLE_COLUMNS])


def browser_secret(data_dir: Path) -> str:
    """BrowserState encrypts what it stores with this; it must outlive a restart (a crash
    included), or every browser would lose its session token."""
    path = data_dir / "browser_state.secret"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def preview(job: Job, words: int = PREVIEW_WORDS) -> str:
    """The first words of a job's transcript, so a result reads in place."""
    found = (job.result.text if job.result else "").split()
    return " ".join(found[:words]) + (" …" if len(found) > words else "")


def short_name(name: str, limit: int = FILE_CHARS) -> str:
    """A long file name with its middle left out: the start and the end tell files apart."""
    if len(name) <= limit:
        return name
    tail = limit // 2
    return name[: limit - tail - 1] + "…" + name[-tail:]


def jobs_frame(jobs: list[Job]) -> pd.DataFrame:
    rows = [{**job_row(j), "preview": preview(j)} for j in jobs]
    table = display.frame(pd.DataFrame(rows, columns=TABLE_COLUMNS))
    table["file"] = [short_name(str(name)) for name in table["file"]]
    return table.rename(columns=TABLE_HEADERS)


def batch_summary(jobs: list[Job]) -> str:
    """One line per batch (the latest SUMMARY_BATCHES, newest first): its files, audio length,
    RTFx over its completed jobs (total audio / total processing) and its failures with their reasons."""
    batches: dict[str, list[Job]] = {}
    for job in jobs:
        batches.setdefault(job.batch, []).append(job)
    lines = []
    for n, group in reversed(list(enumerate(batches.values(), 1))[-SUMMARY_BATCHES:]):
        done = [j for j in group if j.status == "completed" and j.result]
        audio = sum(j.audio_seconds for j in group)
        speed = metrics.rtfx(sum(j.result.metrics.audio_seconds for j in done), sum(j.result.metrics.processing_seconds for j in done))
        failed = [j for j in group if j.status == "failed"]
        reasons = "; ".join(f"{short_name(j.filename)}: {textwrap.shorten(j.error, REASON_CHARS, placeholder=' …')}" for j in failed[:3])
        more = f"; {len(failed) - 3} more" if len(failed) > 3 else ""
        parts = [
            f"{display.count(len(group))} file{'s' if len(group) != 1 else ''}",
            f"{display.duration(audio)} of audio",
            f"RTFx {display.rtfx(speed) if done else display.MISSING}",
            f"{len(failed)} failed" + (f" ({html.escape(reasons)}{more})" if failed else ""),
        ]
        lines.append(f"<li><strong>Batch {n}</strong>: {' · '.join(parts)}</li>")
    return f"<ul class='batch-summary'>{''.join(lines)}</ul>" if lines else ""


def job_view(data: dict) -> dict[str, object]:
    """What the Job panel shows of a job as /job returns it: "transcript" (the text, else the error
    or the status), "warnings" (markdown: its file's repairs, then its run's, each once) and
    "segments" (a table)."""
    result = data.get("result") or {}
    warnings = dict.fromkeys([*data.get("warnings", ()), *result.get("warnings", ())])
    rows = [(s["start"], s["end"], s["text"].strip()) for s in result.get("segments", [])]
    return {
        "transcript": result.get("text") or data.get("error") or f"({data['status']})",
        "warnings": warnings_markdown(warnings),
        "segments": display.frame(pd.DataFrame(rows, columns=["start", "end", "text"])),
    }


def progress_markdown(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "No jobs in this session yet."
    done = counts["completed"] + counts["failed"] + counts["cancelled"]
    parts = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return f"**{done} / {total} finished** ({parts})"


def build_batch(service: ModelService, settings, runner: BatchRunner) -> None:
    errors = (JobError, PermissionError, KeyError, ValueError, LimitReached)
    watchers = SessionSlots(settings.max_watchers_per_session, settings.max_watchers)
    page = settings.max_job_rows
    job_api = {"concurrency_id": "job-api", "concurrency_limit": settings.job_api_concurrency}

    def own_token(token: str) -> str:
        """The browser's token if this server issued it, else "" (a fresh session, not an error)."""
        return token if runner.tokens.valid(token) else ""

    # -- API and UI handlers (token as a plain string) ---------------------------------------
    def submit_batch(files, model, language, task, beam_size, word_timestamps, vad_filter, token, progress=gr.Progress()):
        """Queue one job per file; returns {"token", "batch", "jobs"}. Pass an empty token to start a new session."""
        options = make_options(language, task, beam_size, word_timestamps, vad_filter)
        report = lambda n, total, desc: progress((n, total), desc=desc, unit="files")  # noqa: E731
        try:
            sub = runner.submit(token or None, [getattr(f, "name", f) for f in files or []], model, options, report)
        except errors as exc:
            raise user_error(exc) from exc
        return {"token": sub.token, "batch": sub.batch, "jobs": [job_row(j) for j in sub.jobs]}

    def read_batch(token, batch):
        return runner.counts(token, batch), runner.jobs(token, batch)

    async def watch_batch(token, batch, progress=gr.Progress()):
        """Progress of a batch until every job has finished: yields {"counts", "jobs"} as it changes,
        and again every 2 s while it does not (the first MAX_JOB_ROWS jobs). A session may watch
        MAX_WATCHERS_PER_SESSION batches at once."""
        try:
            session = runner.session_key(token)  # a forged token is refused before anything is held
            watchers.acquire(session)
        except errors as exc:
            raise user_error(exc) from exc
        try:  # released however the watch ends: finished, failed, or cancelled when the client left
            last, sent = None, 0.0
            while True:
                try:
                    counts, jobs = await asyncio.to_thread(read_batch, token, batch)
                except errors as exc:
                    raise user_error(exc) from exc
                done = counts["completed"] + counts["failed"] + counts["cancelled"]
                progress((done, sum(counts.values())), desc="batch", unit="files")
                if counts != last or time.monotonic() - sent >= WATCH_KEEPALIVE_SECONDS:
                    last, sent = counts, time.monotonic()
                    yield {"counts": counts, "jobs": [job_row(j) for j in jobs[:page]]}
                if finished(counts) or not sum(counts.values()):
                    return
                await asyncio.sleep(WATCH_SECONDS)
        finally:
            watchers.release(session)

    def list_jobs(token: str, batch: str = "", offset: int = 0) -> dict:
        """This session's jobs (optionally one batch's), oldest first, with counts by status: at most
        MAX_JOB_ROWS of them from `offset` ("total" says how many there are)."""
        try:
            counts, jobs = read_batch(token, batch)
        except errors as exc:
            raise user_error(exc) from exc
        offset = max(0, int(offset or 0))
        rows = [job_row(j) for j in jobs[offset : offset + page]]
        return {"counts": counts, "jobs": rows, "total": len(jobs), "offset": offset}

    def get_job(token, job_id):
        """One job in full (transcript, segments, metrics) and its audio."""
        try:
            job = runner.job(token, job_id)
            audio = runner.audio_copy(token, job.id)  # Gradio serves it from its cache
            return job.to_dict(), str(audio) if audio else None
        except errors as exc:
            raise user_error(exc) from exc

    def cancel_job(token: str, job_id: str) -> dict:
        """Cancel a queued job."""
        try:
            return job_row(runner.cancel(token, job_id))
        except errors as exc:
            raise user_error(exc) from exc

    def delete_job(token: str, job_id: str) -> dict:
        """Delete a job and its audio; job_id "*" deletes every job of the session."""
        try:
            if job_id.strip() == "*":
                return {"deleted": runner.delete_all(token)}
            runner.delete(token, job_id)
            return {"deleted": 1}
        except errors as exc:
            raise user_error(exc) from exc

    def resubmit(token: str, job_id: str, model: str = "") -> dict:
        """Run a job's audio again as a new job, with its model or the one given."""
        try:
            return job_row(runner.resubmit(token, job_id, model or None))
        except errors as exc:
            raise user_error(exc) from exc

    def export_jobs(token, batch):
        """This session's jobs as jobs.csv, jobs.json and srt.zip."""
        try:
            return [str(p) for p in runner.export(token, output_folder("jobs-"), batch or None)]
        except errors as exc:
            raise user_error(exc) from exc

    # -- layout ------------------------------------------------------------------------------
    token = gr.BrowserState("", storage_key="open-asr-explorer-session", secret=browser_secret(settings.data_dir))
    batch = gr.State("")
    rows = gr.State(-1)  # rows the jobs table shows
    default = settings.default_model
    with gr.Row():
        with gr.Column():
            files = gr.File(label="Audio files", file_count="multiple", type="filepath")
            folder = gr.File(label="…or a folder", file_count="directory", type="filepath")
            model = gr.Dropdown(model_choices(service), value=default, label="Model")
            with gr.Row():
                language = gr.Dropdown(language_choices(default), value=language_choices(default)[0], label="Language", allow_custom_value=True)
                task = gr.Radio(["transcribe", "translate"], value="transcribe", label="Task")
            beam_size = gr.Slider(1, 10, value=1, step=1, label="Beam size")
            with gr.Row():
                word_timestamps = gr.Checkbox(False, label="Word timestamps")
                vad_filter = gr.Checkbox(True, label="Skip non-speech (VAD)")
            submit = gr.Button("Submit batch", variant="primary")
            gr.Markdown(
                f"Jobs survive reloads and restarts and are kept {settings.job_ttl_hours:g} h. Files of up to 30 s "
                "on faster-whisper are decoded several at a time (one batched call), when the language is known."
            )
        with gr.Column(scale=2):
            status = gr.Markdown()
            summary = gr.HTML(elem_classes="batch-summaries")
            table = gr.Dataframe(
                EMPTY_TABLE, label="Jobs (this session): click a row to open it", interactive=False, wrap=True,
                max_chars=120,
            )  # fmt: skip
            with gr.Row():
                export = gr.Button("Export all (CSV, JSON, SRT zip)")
                delete_all = gr.Button("Delete all", variant="stop")
            exports = gr.File(label="Exports", file_count="multiple", interactive=False)
    with gr.Accordion("Workers", open=False) as workers_box:
        workers_note = gr.Markdown()
        workers_table = gr.Dataframe(headers=WORKER_COLUMNS, interactive=False, wrap=True)
        worker_rows = gr.State(-1)
    with gr.Accordion("Job", open=True):
        with gr.Row():
            job_id = gr.Textbox(label="Job id (click a row of the jobs table)")
            other_model = gr.Dropdown(model_choices(service), value=None, label="Resubmit with (empty = same model)")
        with gr.Row():
            open_job = gr.Button("Open")
            resubmit_button = gr.Button("Resubmit")
            cancel_button = gr.Button("Cancel (queued only)")
            delete_button = gr.Button("Delete", variant="stop")
        with gr.Row():
            player = gr.Audio(label="Audio", type="filepath", interactive=False)
            transcript = gr.Textbox(label="Transcript", lines=5, interactive=False)
        warnings_note = gr.Markdown()
        segments = gr.Dataframe(label="Segments", interactive=False, wrap=True)
        with gr.Accordion("Job as JSON", open=False):
            detail = gr.JSON()
    timer = gr.Timer(2.0)
    workers_timer = gr.Timer(5.0, active=False)  # reads the store only while the table is open

    # -- UI wiring ---------------------------------------------------------------------------
    def resize_workers(shown: int):
        """As resize below: the workers table is emptied first when its row count changes."""
        n = len(reachable_workers(runner)[0])
        return (pd.DataFrame(columns=WORKER_COLUMNS), n) if n != shown else (gr.skip(), shown)

    def show_workers():
        workers, problem = reachable_workers(runner)
        if problem:
            return problem[0].upper() + problem[1:] + ".", pd.DataFrame(columns=WORKER_COLUMNS)
        store = "a shared store" if runner.store.shared else "this server's SQLite store"
        note = f"{len(workers)} worker(s) on {store}" + ("" if workers else ": submitted jobs wait until one starts")
        return note, pd.DataFrame(worker_records(workers, time.time(), detail=False), columns=WORKER_COLUMNS)

    def refresh(token):
        token = own_token(token)
        if not token:
            return "No jobs in this session yet.", "", jobs_frame([])
        try:
            jobs = runner.jobs(token)
            return progress_markdown(runner.counts(token)), batch_summary(jobs), jobs_frame(jobs[:page])
        except errors as exc:
            raise user_error(exc) from exc

    def ui_submit(files, folder, model, language, task, beam_size, word_timestamps, vad_filter, token, progress=gr.Progress()):
        chosen = list(files or []) + [f for f in folder or [] if Path(f).is_file()]
        out = submit_batch(chosen, model, language, task, beam_size, word_timestamps, vad_filter, own_token(token), progress)
        return out["token"], out["batch"], None, None

    async def ui_watch(token, batch, rows, progress=gr.Progress()):
        """This batch's progress and the session's table while it runs (row-count workaround as in resize)."""
        async for update in watch_batch(token, batch, progress):
            jobs = await asyncio.to_thread(runner.jobs, token)
            frame = jobs_frame(jobs[:page])
            if len(frame) != rows:
                yield gr.skip(), gr.skip(), frame.iloc[:0], len(frame)
            rows = len(frame)
            yield progress_markdown(update["counts"]), batch_summary(jobs), frame, rows  # counts of this batch

    def resize(token, rows):
        """Gradio 6.17 keeps a Dataframe's rendered row count from its first non-empty value
        (gradio-app/gradio#13611): when the number of jobs changes, empty the table first."""
        token = own_token(token)
        n = min(len(runner.jobs(token)), page) if token else 0
        return (EMPTY_TABLE, n) if n != rows else (gr.skip(), rows)

    def ui_open(token, job_id):
        if not (job_id or "").strip():
            raise gr.Error("Pick a job: click a row of the jobs table.")
        data, audio = get_job(token, job_id)
        view = job_view(data)
        return {detail: data, player: audio, transcript: view["transcript"], warnings_note: view["warnings"],
                segments: view["segments"]}  # fmt: skip

    def on_select(table: pd.DataFrame, evt: gr.SelectData):
        return table.iloc[evt.index[0]]["id"] if evt.index else gr.skip()

    def on_model_change(key):
        choices = language_choices(key)
        return gr.update(choices=choices, value=choices[0])

    private = {"api_visibility": "private"}
    model.change(on_model_change, model, language, queue=False, **private)
    submit.click(
        ui_submit, [files, folder, model, language, task, beam_size, word_timestamps, vad_filter, token],
        [token, batch, files, folder], concurrency_id="batch-submit", concurrency_limit=2, **private,
    ).success(ui_watch, [token, batch, rows], [status, summary, table, rows], concurrency_limit=None, **private)  # fmt: skip
    # Timer ticks refresh silently: a loading overlay every 2 s flickers, and in the short status
    # block it overflows for a moment (a scrollable region without keyboard access, per axe).
    quiet = {"queue": False, "show_progress": "hidden", **private}
    timer.tick(resize, [token, rows], [table, rows], **quiet).then(refresh, token, [status, summary, table], **quiet)
    workers_box.expand(lambda: gr.Timer(active=True), None, workers_timer, queue=False, **private)
    workers_box.collapse(lambda: gr.Timer(active=False), None, workers_timer, queue=False, **private)
    workers_timer.tick(resize_workers, worker_rows, [workers_table, worker_rows], **quiet).then(
        show_workers, None, [workers_note, workers_table], **quiet
    )
    job_view_outputs = [detail, player, transcript, warnings_note, segments]
    # A click on a row opens its job at once (Open does the same for an id typed or pasted).
    table.select(on_select, table, job_id, queue=False, **private).success(ui_open, [token, job_id], job_view_outputs, **job_api, **private)
    open_job.click(ui_open, [token, job_id], job_view_outputs, **job_api, **private)
    cancel_button.click(lambda t, j: cancel_job(t, j) and None, [token, job_id], None, **job_api, **private).then(refresh, token, [status, summary, table], **private)
    delete_button.click(lambda t, j: delete_job(t, j) and None, [token, job_id], None, **job_api, **private).then(refresh, token, [status, summary, table], **private)
    resubmit_button.click(
        lambda t, j, m: resubmit(t, j, m or "")["id"], [token, job_id, other_model], job_id, **job_api, **private
    ).then(refresh, token, [status, summary, table], **private)
    delete_all.click(lambda t: delete_job(t, "*") and None, token, None, **job_api, **private).then(refresh, token, [status, summary, table], **private)
    export.click(lambda t: export_jobs(t, ""), token, exports, **job_api, **private)

    # -- API endpoints (token and ids as plain parameters) -------------------------------------
    api_token, api_batch, api_job = gr.Textbox(visible=False), gr.Textbox(visible=False), gr.Textbox(visible=False)
    api_files = gr.File(file_count="multiple", visible=False)
    gr.Button(visible=False).click(
        submit_batch, [api_files, model, language, task, beam_size, word_timestamps, vad_filter, api_token],
        gr.JSON(visible=False), api_name="submit_batch", concurrency_id="batch-submit", concurrency_limit=2,
    )  # fmt: skip
    # Watchers are async and hold no thread while they wait: SessionSlots bounds them, not the queue.
    gr.Button(visible=False).click(
        watch_batch, [api_token, api_batch], gr.JSON(visible=False), api_name="watch_batch", concurrency_limit=None
    )
    gr.Button(visible=False).click(
        get_job, [api_token, api_job], [gr.JSON(visible=False), gr.Audio(visible=False, type="filepath")],
        api_name="job", **job_api,
    )  # fmt: skip
    gr.Button(visible=False).click(
        export_jobs, [api_token, api_batch], gr.File(file_count="multiple", visible=False), api_name="export_jobs", **job_api
    )
    gr.api(list_jobs, api_name="jobs", **job_api)
    gr.api(cancel_job, api_name="cancel_job", **job_api)
    gr.api(delete_job, api_name="delete_job", **job_api)
    gr.api(resubmit, api_name="resubmit", **job_api)

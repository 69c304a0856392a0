"""Arena tab: two anonymous models transcribe one audio, the user votes, the names are revealed,
and a Bradley–Terry leaderboard with bootstrap intervals ranks the models from everyone's votes.

Before the vote nothing names a model: the transcripts appear together once both models are done,
the battle lives server-side (gr.State), and progress is not reported (its messages name models).
"""

from __future__ import annotations

import html
import random
from typing import Optional

import gradio as gr
import pandas as pd

from explorer import display
from explorer.arena import LEADERBOARD_COLUMNS, OUTCOMES, Leaderboard, VoteRefused
from explorer.audio import AudioError
from explorer.battles import Arena
from explorer.service import ModelError, ModelService
from explorer.ui.widgets import AUTO, SAMPLES, error_message, make_options, warnings_markdown, write_table_exports

LANGUAGES = [AUTO, "en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "uk", "zh", "ja", "ko", "ar", "hi", "tr"]
VOTES = (("A is better", "a"), ("B is better", "b"), ("Tie", "tie"), ("Both are bad", "both_bad"))
VOTE_TEXT = dict(zip(OUTCOMES, (label for label, _ in VOTES)))  # FastChat's outcome names, as the buttons say them
BATTLE_ERRORS = (AudioError, ModelError, ValueError, PermissionError)
VOTE_ERRORS = (VoteRefused, PermissionError, ValueError)
TABLE_HEADERS = {"lower": "95% CI low", "upper": "95% CI high", "win_rate": "win rate"}
EMPTY_TABLE = pd.DataFrame(columns=[TABLE_HEADERS.get(c, c) for c in LEADERBOARD_COLUMNS])
CSS = """
.arena-diff {line-height: 1.9;}
.arena-diff .ad-a {background: rgba(239, 68, 68, 0.25); border-radius: 4px; padding: 1px 3px;}
.arena-diff .ad-b {background: rgba(59, 130, 246, 0.25); border-radius: 4px; padding: 1px 3px;}
.arena-heat td, .arena-heat th {padding: 4px 8px; text-align: center; border: 1px solid var(--border-color-primary);}
"""


def diff_html(diff: list) -> str:
    """The two transcripts' words after normalisation: where they differ, A's words in red, B's in blue."""
    if not diff:
        return ""
    parts = []
    for op, a, b in diff:
        a, b = html.escape(a), html.escape(b)
        if op == "equal":
            parts.append(a)
        else:
            parts.append(" ".join(p for p in (a and f"<span class='ad-a'>{a}</span>", b and f"<span class='ad-b'>{b}</span>") if p))
    legend = "<span class='ad-a'>only A</span> <span class='ad-b'>only B</span>"
    return f"<div class='arena-diff'><p>Word differences (normalised): {legend}</p>{' '.join(parts)}</div>"


def reveal_html(revealed: dict) -> str:
    rows = []
    for side, s in revealed["models"].items():
        m = s["metrics"]
        reused = " (an earlier run on this audio)" if s["reused"] else ""
        rows.append(
            f"<tr><td><b>{side}</b></td><td class='arena-name'>{html.escape(s['name'])} "
            f"<code>{html.escape(s['model'])}</code></td><td>{display.percent(s['wer'])}</td>"
            f"<td>{display.seconds(m['ttft_seconds'])}</td><td>{display.rtfx(m['rtfx'])}</td>"
            f"<td>{display.seconds(m['load_seconds'])}{reused}</td></tr>"
        )
    wer_note = "" if revealed["reference"] else "<p>Type what was said before voting to get each model's WER.</p>"
    return (
        f"<div id='arena-revealed'><p>Your vote: <b>{html.escape(VOTE_TEXT.get(revealed['outcome'], revealed['outcome']))}</b></p><table>"
        "<tr><th></th><th>model</th><th>WER</th><th>TTFT</th><th>RTFx</th><th>load</th></tr>"
        f"{''.join(rows)}</table>{wer_note}</div>"
    )


def heat_style(fraction: float) -> str:
    """An opaque pale-to-strong green with dark text: readable (axe's contrast) in light and dark themes."""
    pale, strong = (240, 253, 244), (34, 197, 94)
    rgb = ", ".join(str(round(p + (s - p) * fraction)) for p, s in zip(pale, strong))
    return f"background: rgb({rgb}); color: #111827"


def heat_map_html(board: Leaderboard) -> str:
    """Pairwise win fractions (row beats column, ties left out) as a coloured table."""
    models = [r.model for r in board.ratings]
    if not models:
        return "<p>No votes yet.</p>"
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = []
    for x in models:
        cells = []
        for y in models:
            f = board.win_fraction[x][y]
            style = "" if f is None else f" style='{heat_style(f)}'"
            cells.append(f"<td{style}>{display.percent(f, 0)}</td>")
        body.append(f"<tr><th>{html.escape(x)}</th>{''.join(cells)}</tr>")
    return (
        "<p>Share of decisive votes the row's model won against the column's (ties left out).</p>"
        f"<table class='arena-heat'><tr><th>row beats column</th>{head}</tr>{''.join(body)}</table>"
    )


def summary_markdown(board: Leaderboard) -> str:
    excluded = (
        f"; {board.excluded_votes} votes from {board.flagged_sessions} flagged session(s) left out"
        if board.exclude_flagged
        else f"; {board.flagged_sessions} flagged session(s) included"
    )
    return f"**{board.votes} votes** counted{excluded}. 95 % intervals from {board.rounds} bootstrap rounds."


def table_frame(board: Leaderboard) -> pd.DataFrame:
    return display.frame(board.frame).rename(columns=TABLE_HEADERS) if board.ratings else EMPTY_TABLE


def write_exports(board: Leaderboard) -> list[str]:
    return write_table_exports("arena-", "arena_leaderboard", board.to_csv(), board.to_json())


def build_arena(service: ModelService, settings, arena: Arena, tab: Optional[gr.Tab] = None) -> None:
    arena_api = {"concurrency_id": "arena", "concurrency_limit": 4}
    samples = sorted(str(p) for p in SAMPLES.glob("*.wav"))
    gr.Markdown(
        "Two models, drawn at random, transcribe your audio; their names stay hidden until you vote. "
        "Votes from everyone make the leaderboard below (Bradley–Terry ratings with 95 % intervals)."
    )
    with gr.Row():
        with gr.Column(scale=2):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="arena-audio")
            with gr.Row():
                draw_sample = gr.Button("A sample clip", size="sm")
                language = gr.Dropdown(LANGUAGES, value=AUTO, label="Language", allow_custom_value=True)
            share = gr.Checkbox(False, label=f"Share this audio for review (kept {settings.job_ttl_hours:g} h)")
            start = gr.Button("Battle", variant="primary")
        with gr.Column(scale=3, elem_id="arena-battle"):
            status = gr.Markdown()
            with gr.Row():
                text_a = gr.Textbox(label="Model A", lines=4, interactive=False, elem_id="arena-a")
                text_b = gr.Textbox(label="Model B", lines=4, interactive=False, elem_id="arena-b")
            diff = gr.HTML()
            reference = gr.Textbox(label="What was said (optional: WER for each after your vote)", lines=2)
            with gr.Row():
                buttons = [gr.Button(label, interactive=False, elem_id=f"arena-vote-{name}") for label, name in VOTES]
            revealed = gr.HTML(elem_id="arena-reveal")
            again = gr.Button("New battle, same audio", interactive=False)
    with gr.Accordion("Leaderboard", open=True):
        exclude = gr.Checkbox(True, label="Leave out votes from flagged sessions (always one side, or faster than reading)")
        refresh = gr.Button("Refresh", size="sm")
        summary = gr.Markdown()
        table = gr.Dataframe(EMPTY_TABLE, label="Ratings", interactive=False, elem_id="arena-leaderboard")
        heat = gr.HTML()
        exports = gr.File(label="Download (CSV, JSON)", file_count="multiple", interactive=False)
    token = gr.State("")
    battle_id = gr.State(None)

    def own_token(value: str) -> str:
        return value if arena.tokens.valid(value) else ""

    def run_battle(audio_path, language_code, share_audio, session_token):
        if audio_path is None:
            raise gr.Error("No audio: upload a file, record, or draw a sample clip.")
        options = make_options(language_code, "transcribe", 1, False, True)
        try:
            issued = arena.battle(own_token(session_token), service.decode(audio_path), options, bool(share_audio))
        except BATTLE_ERRORS as exc:
            raise gr.Error(error_message(exc)) from exc
        public = issued.public()
        note = warnings_markdown(public["warnings"]) or "Read both transcripts, then vote."
        return (
            public["token"], public["battle"], note, public["transcripts"]["A"], public["transcripts"]["B"],
            diff_html(public["diff"]), "", *[gr.update(interactive=True) for _ in VOTES], gr.update(interactive=False),
        )  # fmt: skip

    def voter(choice: str):
        def cast(session_token, battle, reference_text):
            try:
                result = arena.vote(session_token, battle or "", choice, reference_text or "")
            except VOTE_ERRORS as exc:
                raise gr.Error(error_message(exc)) from exc
            return (reveal_html(result), "Thanks! Start another battle.", *[gr.update(interactive=False) for _ in VOTES],
                    gr.update(interactive=True))  # fmt: skip

        return cast

    def show_leaderboard(exclude_flagged):
        board = arena.leaderboard(bool(exclude_flagged))
        return summary_markdown(board), table_frame(board), heat_map_html(board), write_exports(board)

    battle_outputs = [token, battle_id, status, text_a, text_b, diff, revealed, *buttons, again]
    models_group = {"concurrency_id": "models", "concurrency_limit": settings.num_workers}
    board_outputs = [summary, table, heat, exports]
    for trigger in (start.click, again.click):
        trigger(run_battle, [audio, language, share, token], battle_outputs, api_visibility="private", **models_group)
    for (label, name), button in zip(VOTES, buttons):
        button.click(
            voter(name), [token, battle_id, reference], [revealed, status, *buttons, again], api_visibility="private", **arena_api
        ).success(show_leaderboard, exclude, board_outputs, api_visibility="private", **arena_api)
    draw_sample.click(lambda: random.choice(samples) if samples else None, None, audio, api_visibility="private", queue=False)
    refresh.click(show_leaderboard, exclude, board_outputs, api_visibility="private", **arena_api)
    exclude.change(show_leaderboard, exclude, board_outputs, api_visibility="private", **arena_api)
    if tab is not None:
        tab.select(show_leaderboard, exclude, board_outputs, api_visibility="private", **arena_api)

    # -- the API -------------------------------------------------------------------------------
    def arena_battle(audio_file, session_token, language_code, share_audio):
        """Two models drawn by the server transcribe the audio. Returns {token, battle, transcripts:
        {A, B}, diff, audio_seconds, expires_at, warnings}, no model names; pass an empty token
        to start a session, then the token returned."""
        if audio_file is None:
            raise gr.Error("No audio: send an audio file.")
        options = make_options(language_code, "transcribe", 1, False, True)
        try:
            return arena.battle(session_token, service.decode(audio_file), options, bool(share_audio)).public()
        except BATTLE_ERRORS as exc:
            raise gr.Error(error_message(exc)) from exc

    def arena_vote(token: str, battle: str, vote: str, reference: str = "") -> dict:
        """Vote once on a battle issued to this session: a, b, tie or both_bad. Returns the reveal:
        {battle, outcome, models: {A, B: {model, name, text, metrics, wer, ...}}, reference}."""
        try:
            return arena.vote(token, battle, vote, reference)
        except VOTE_ERRORS as exc:
            raise gr.Error(error_message(exc)) from exc

    def arena_leaderboard(exclude_flagged: bool = True) -> dict:
        """Bradley–Terry ratings (Elo-like scale) with 95 % bootstrap intervals, counts, win rates
        and pairwise win fractions; flagged sessions' votes left out unless exclude_flagged is false."""
        return arena.leaderboard(bool(exclude_flagged)).to_dict()

    api_token = gr.Textbox(visible=False)
    api_share = gr.Checkbox(False, visible=False)
    api_result = gr.JSON(visible=False)
    gr.Button(visible=False).click(
        arena_battle, [audio, api_token, language, api_share], api_result, api_name="arena_battle", **models_group
    )
    gr.api(arena_vote, api_name="arena_vote", **arena_api)
    gr.api(arena_leaderboard, api_name="arena_leaderboard", **arena_api)

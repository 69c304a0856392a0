"""In-browser transcription end to end: Debian Chromium driven by Playwright, the WASM backend,
the local tiny.en ONNX export, a WAV file as a fake microphone. The GPU is disabled, so these
tests see the WASM path; the WebGPU path is chosen only with a real adapter (checked here too)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from explorer.latency import events_from, reference_alignment, stream_latency
from explorer.metrics import commit_lag
from explorer.scoring import score
from tests.browser_page import CHROMIUM, Page, launch, stream_microphone, write_mic_sequence

TINY_FP32 = "browser/whisper-tiny.en"
# Streaming runs the q8 encoder with the fp32 decoder, the fastest local graphs (the bench,
# bench/bench_browser_stream.py, measures all three). Issue 18's target on this 2-core machine:
# tiny.en, ~60 s of speech through the fake microphone, mean commit lag <= 4 s, the last quarter's
# at most 1.5x the first's, WER <= 15 %. Three quiet runs of the bench each on 2026-12-06, after the
# text anchor and the lag bound (local_agreement.js): mean lag 2.89 / 2.85 / 2.84 s and WER 7.9 /
# 7.3 / 6.1 % with these graphs (q8: 3.29 / 3.19 / 3.10 s, 5.5 / 3.7 / 4.3 %). Before them, q8
# gave 3.59-4.37 s in six runs, and CI once 4.69 s: two passes disagreeing on the first word
# after a cut held every later word for up to 8 s.
TINY_STREAM = "browser/whisper-tiny.en-q8-encoder"
# The 4 s target is the bench's to check on a quiet machine (the brief: speed targets in bench
# tables, not timed tests). The lag follows the pass time: 2.8 passes in the bench (2.85 s at
# 1.02 s a pass) and 2.8 in a CI run whose machine was slow (4.02 s at 1.45 s a pass, which
# failed a 4 s bound). So the test holds the lag in passes, the policy's own figure (its floor is
# ~2.5: half a pass to be heard, two to agree; the q8 runs before the 2026-12-06 stall fix gave
# 2.9-3.0), and twice the target in seconds as a bound on keeping up at all.
MAX_MEAN_LAG_PASSES = 3.3
MAX_MEAN_LAG_SECONDS = 2 * 4.0
MAX_LAST_TO_FIRST_QUARTER = 1.5
MAX_WER = 0.15
# Words committed by the lag bound (max_unconfirmed_seconds) without two passes agreeing: a few
# after cuts (0-7 of ~150 in the bench runs); many would mean agreement itself had broken down.
MAX_FORCED_SHARE = 0.15


@pytest.fixture(scope="module")
def speech_wav(clips, tmp_path_factory) -> tuple[Path, str, float]:
    """The five LibriVox clips in turn with 0.5 s pauses up to ~60 s, then 30 s of silence:
    Chromium loops the file, and the silence keeps a second pass of speech out of the stream
    before it stops."""
    return write_mic_sequence(clips, tmp_path_factory.mktemp("mic") / "speech.wav", seconds=60)


@pytest.fixture(scope="module")
def browser(speech_wav):
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: run the tests with `make test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p, speech_wav[0])
        yield b
        b.close()


def wait_until_idle(app, quiet_polls: int = 3, timeout: float = 180.0) -> dict:
    """Wait until the app runs no model call, no queued request and no batch job (earlier tests'
    work), for `quiet_polls` polls in a row: the lag measured below is the page's own, not the
    page's against the server's work on the same two cores. Returns the last /health."""
    client, quiet, deadline = app.client(), 0, time.time() + timeout
    while True:
        health = client.predict(api_name="/health")
        busy = health["models_running"] or health["requests_waiting"] or health["jobs_running"]
        quiet = 0 if busy else quiet + 1
        if quiet >= quiet_polls or time.time() > deadline:
            return health
        time.sleep(1.0)


def test_microphone_streams_with_bounded_lag_and_only_the_result_reaches_the_server(browser, app, speech_wav, service):
    """~60 s of speech streamed live on WASM threads: commits keep up with the audio (mean lag,
    and no growth from the first quarter of the words to the last), the text is right, and the
    server receives only the result, with one event per committed word."""
    wav, reference, seconds = speech_wav
    health = wait_until_idle(app)
    ui = Page(browser, app.url)
    assert ui.page.evaluate("self.crossOriginIsolated"), "the app's page is not cross-origin isolated"
    ready = ui.load(TINY_STREAM)
    assert "WASM" in ready  # no GPU here: WASM, and the UI says so
    threads = int(ready.split("WASM threads: ")[1].split(")")[0].split(",")[0])
    assert threads > 1, ready
    run = stream_microphone(ui, seconds)

    assert any(c.strip() and u.strip() for _, c, u, _ in run.snapshots), "committed and unconfirmed text never showed together"
    committed = run.committed
    assert all(b.startswith(a) for a, b in zip(committed, committed[1:]) if a), "committed text changed"
    assert run.final.startswith(committed[-1])
    assert score(reference, run.final).wer <= MAX_WER, run.final
    assert "first commit" in ui.text("metrics")

    assert ui.outside(app.url) == []  # nothing outside localhost: assets and model from the app
    # Zero-server: 16 kHz audio is 64 kB a second; nothing the page sent comes near that (the
    # events are some 30 bytes a word).
    assert max(len(body) for _, _, body in ui.requests) < 32_000
    run_id = ui.text("run").split()[-1]  # "run <id>", as the component shows it
    ui.close()
    result = app.client().predict(run_id, api_name="/browser_result")
    assert result["text"] == run.final and result["mode"] == "stream" and result["device"] == "wasm"
    m = result["metrics"]
    assert m["device"] == "wasm" and m["threads"] == threads
    assert m["first_commit_latency"] > 0 and m["audio_seconds"] >= seconds - 1
    events = result["events"]
    assert [w for _, _, w in events] == run.final.split()  # one event per committed word, in order
    assert all(emitted > end > 0 for emitted, end, _ in events)  # a word is committed after it is heard
    lag = commit_lag(events)
    assert m["mean_commit_lag"] == pytest.approx(lag.mean_lag_seconds)
    figures = (
        f"mean lag {lag.mean_lag_seconds:.2f} s, quarters {[round(q, 2) for q in lag.quarter_lags]}, RTFx {m['rtfx']:.2f}, "
        f"{m['iterations']} passes of {m['mean_pass_seconds']:.2f} s (longest {m['max_pass_seconds']:.2f} s), "
        f"longest buffer {m['max_buffer_seconds']:.1f} s, {m['forced_words']} forced words, "
        f"behind at most {m['max_behind_seconds']:.1f} s, load average {os.getloadavg()}, server before: {health}"
    )
    assert lag.mean_lag_seconds <= MAX_MEAN_LAG_PASSES * m["mean_pass_seconds"], figures
    assert lag.mean_lag_seconds <= MAX_MEAN_LAG_SECONDS, figures
    assert lag.last_to_first_quarter <= MAX_LAST_TO_FIRST_QUARTER, figures
    assert 0 <= m["forced_words"] <= MAX_FORCED_SHARE * lag.words, figures  # agreement commits nearly all words

    # Word latency as the server measures it: emission minus the word's end in a reference
    # alignment of the file (an offline pass of the largest local faster-whisper model). Chromium
    # plays the file from its start when the stream opens, so the two time bases are one.
    alignment = reference_alignment(service, service.decode(wav))
    word = stream_latency(events_from(events), m["processing_seconds"] or 0.0, m["audio_seconds"], alignment)
    assert word.words_matched >= 0.8 * word.words_committed, word
    assert abs(word.mean_word_latency - lag.mean_lag_seconds) <= 1.5, (word, figures)  # the two definitions agree


def test_file_mode_transcribes_in_the_page_and_caches_the_model(browser, app, clips):
    ui = Page(browser, app.url)
    ui.at("model").select_option(TINY_FP32)
    clip = clips[0]
    ui.at("file").set_input_files(str(clip.path))
    ui.wait_status("done")
    assert score(clip.reference, ui.text("committed")).wer <= 0.15
    metrics = ui.text("metrics")
    assert "TTFT" in metrics and "RTFx" in metrics
    # Only the result went to the server: no request carried the file's bytes.
    size = clip.path.stat().st_size
    assert max(len(body) for _, _, body in ui.requests) < size / 4
    cached = ui.page.evaluate(
        "async () => { const out = []; for (const k of await caches.keys()) "
        "{ const c = await caches.open(k); out.push(...(await c.keys()).map(r => r.url)); } return out; }"
    )
    assert any(u.endswith("encoder_model.onnx") for u in cached), cached  # the next load reads the Cache API
    before = len(ui.requests)
    ui.page.reload()
    ui.page.get_by_role("tab", name="Browser").click()
    ui.at("model").select_option(TINY_FP32)
    ui.at("load").click()
    ui.wait_status("Whisper tiny.en")
    refetched = [u for _, u, _ in ui.requests[before:] if u.endswith(".onnx")]
    assert refetched == [], f"model files fetched again: {refetched}"
    ui.context.close()


def test_webgpu_only_with_a_real_adapter(browser, app):
    ui = Page(browser, app.url)
    adapter = ui.page.evaluate(
        "async () => { if (!navigator.gpu) return 'none'; const a = await navigator.gpu.requestAdapter(); "
        "return !a ? 'none' : ((a.info && a.info.isFallbackAdapter) || a.isFallbackAdapter) ? 'fallback' : 'real'; }"
    )
    ui.at("model").select_option(TINY_FP32)
    ui.at("load").click()
    status = ui.wait_status("Whisper tiny.en")
    if adapter == "real":
        assert "on WEBGPU" in status
    else:
        assert "on WASM" in status and ("no WebGPU" in status or "fallback" in status), status
        ui.at("device").select_option("webgpu")
        ui.at("load").click()
        assert "WebGPU was chosen but" in ui.wait_status("error", timeout=60)
    ui.context.close()


def test_batch_tab_lists_the_workers_taking_jobs(browser, app):
    """The Batch tab's Workers table shows the app's own batch worker as it reports itself, as a
    number: its id (host, pid) is for /health with ADMIN_TOKEN, not for anyone who opens the page."""
    import socket

    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(app.url)
        page.get_by_role("tab", name="Batch").click()
        page.get_by_text("Workers", exact=True).click()
        page.get_by_text("1 worker(s) on this server's SQLite store").wait_for(timeout=30_000)
        deadline = time.time() + 15
        while "#1" not in page.inner_text("body") and time.time() < deadline:
            page.wait_for_timeout(500)  # the table refreshes every 5 s
        assert "#1" in page.inner_text("body")
        assert f"{socket.gethostname()}:{app.proc.pid}:" not in page.inner_text("body")  # a worker's id: host, pid, suffix
    finally:
        context.close()


# Console messages of a page offline that say nothing about the app (a request to another host).
OFFLINE = ("ERR_NAME_NOT_RESOLVED", "ERR_INTERNET_DISCONNECTED", "ERR_CONNECTION_REFUSED")
# What Chromium logs when an embedder or opener policy refuses something.
REFUSED = ("ERR_BLOCKED", "Cross-Origin", "cross-origin", "COEP", "CORP", "SharedArrayBuffer", "Failed to load resource")


# True once the element's value is non-empty and has stayed the same for 2 s (checked every poll).
SETTLED_TEXT = """(e) => {
  const v = e.value.trim();
  if (v !== e.dataset.seen) { e.dataset.seen = v; e.dataset.since = String(Date.now()); return false; }
  return v.length > 0 && Date.now() - Number(e.dataset.since) >= 2000;
}"""


def test_every_tab_works_on_the_cross_origin_isolated_page(browser, app, clips):
    """COOP/COEP on every response: the page is isolated (WASM may use threads), nothing it loads
    is blocked, and each tab's main control still does its job."""
    ui = Page(browser, app.url, tab="")
    page = ui.page
    try:
        response = page.request.get(app.url)
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
        assert response.headers["cross-origin-embedder-policy"] == "credentialless"
        assert page.evaluate("self.crossOriginIsolated")
        panel = lambda: page.get_by_role("tabpanel")  # noqa: E731 - the tab shown now
        clip = str(clips[0].path)

        page.get_by_role("tab", name="Transcribe").click()
        panel().locator("input[type=file]").first.set_input_files(clip)
        panel().get_by_role("button", name="Transcribe", exact=True).click()
        transcript = panel().get_by_label("Transcript")
        # The transcript streams in as the model emits it; the metric cards come with the result.
        panel().locator(".metric-cards").first.wait_for(timeout=120_000)
        assert score(clips[0].reference, transcript.input_value()).wer <= 0.15

        page.get_by_role("tab", name="Compare").click()
        panel().locator("input[type=file]").first.set_input_files(clip)
        panel().get_by_role("button", name="Compare", exact=True).click()
        first = panel().get_by_label("faster-whisper/tiny.en", exact=True)  # a slot is labelled with its model
        first.wait_for(timeout=120_000)
        # Slots stream too, several at once: read the slot once its text has not changed for 2 s.
        page.wait_for_function(SETTLED_TEXT, arg=first.element_handle(), timeout=180_000, polling=250)
        assert score(clips[0].reference, first.input_value()).wer <= 0.15

        page.get_by_role("tab", name="Evaluate").click()
        panel().get_by_role("button", name="Evaluate", exact=True).click()  # no dataset: a clear message
        page.get_by_text("no dataset: upload files").first.wait_for(timeout=30_000)

        page.get_by_role("tab", name="Batch").click()
        panel().locator("input[type=file]").first.set_input_files(clip)
        panel().get_by_role("button", name="Submit batch").click()
        panel().get_by_text("1 / 1 finished").first.wait_for(timeout=120_000)

        page.get_by_role("tab", name="Models").click()
        panel().get_by_text("faster-whisper/tiny.en").first.wait_for(timeout=30_000)

        page.get_by_role("tab", name="Browser").click()
        status = panel().locator(".basr-status")
        status.wait_for()
        assert "threads available" in status.inner_text()

        # Gradio's own frontend throws a few TypeErrors while the tabs mount ("reading '0'",
        # "reading 'offsetWidth'"); none is a refused resource.
        blocked = [e for e in ui.console_errors if any(r in e for r in REFUSED) and not any(o in e for o in OFFLINE)]
        assert blocked == [], blocked
    finally:
        ui.close()


def test_where_isolation_is_refused_wasm_runs_single_threaded(browser, app, clips):
    """As where a browser or a host does not grant isolation (the page without its COOP/COEP
    headers, as a proxy that drops them would serve it): the browser model still works, on one
    WASM thread, and the status says why."""
    context = browser.new_context()
    try:

        def without_isolation(route):
            response = route.fetch()
            headers = {k: v for k, v in response.headers.items() if not k.lower().startswith("cross-origin-")}
            route.fulfill(response=response, headers=headers)

        context.route(app.url, without_isolation)  # the page itself; its assets as served
        page = context.new_page()
        page.goto(app.url)
        assert page.evaluate("self.crossOriginIsolated") is False
        page.get_by_role("tab", name="Browser").click()
        panel = page.get_by_role("tabpanel")
        status = panel.locator(".basr-status")
        status.wait_for()
        assert "single-threaded WASM: page not cross-origin isolated" in status.inner_text()
        panel.locator(".basr-model").select_option(TINY_FP32)
        panel.locator(".basr-file").set_input_files(str(clips[0].path))
        deadline = time.time() + 180
        while not status.inner_text().startswith(("done", "error")) and time.time() < deadline:
            page.wait_for_timeout(250)
        assert status.inner_text().startswith("done"), status.inner_text()
        assert score(clips[0].reference, panel.locator(".basr-committed").inner_text()).wer <= 0.15
        assert re.search(r"WASM threads\s+1\b", panel.locator(".basr-metrics").inner_text())  # the threads card
    finally:
        context.close()

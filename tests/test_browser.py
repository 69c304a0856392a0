"""In-browser transcription end to end: Debian Chromium driven by Playwright, the WASM backend,
the local tiny.en ONNX export, a WAV file as a fake microphone. The GPU is disabled, so these
tests see the WASM path; the WebGPU path is chosen only with a real adapter (checked here too)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from explorer.scoring import score

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]  # fmt: skip
TINY_FP32 = "browser/whisper-tiny.en"


@pytest.fixture(scope="module")
def speech_wav(clips, tmp_path_factory) -> tuple[Path, str, float]:
    """The five LibriVox clips back to back (~27 s), then 20 s of silence: Chromium loops the
    file, and the silence keeps a second pass of speech out of the stream before it stops."""
    pause = np.zeros(8000, dtype=np.float32)
    speech = np.concatenate([x for c in clips for x in (c.samples, pause)])
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    sf.write(path, np.concatenate([speech, np.zeros(20 * 16000, dtype=np.float32)]), 16000)
    return path, " ".join(c.reference for c in clips), len(speech) / 16000


@pytest.fixture(scope="module")
def browser(speech_wav):
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: run the tests with `make test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*ARGS, f"--use-file-for-fake-audio-capture={speech_wav[0]}"]
        )
        yield b
        b.close()


class Page:
    """The Browser tab in a fresh browser context, with every request it makes recorded."""

    def __init__(self, browser, app):
        self.context = browser.new_context(permissions=["microphone"])
        self.page = self.context.new_page()
        self.requests: list[tuple[str, str, bytes]] = []
        self.page.on("request", lambda r: self.requests.append((r.method, r.url, r.post_data_buffer or b"")))
        self.page.goto(app.url)
        self.page.get_by_role("tab", name="Browser").click()
        self.panel = self.page.get_by_role("tabpanel")  # the Compare tab holds a second component
        self.panel.locator(".basr-status").wait_for()

    def at(self, part: str):
        return self.panel.locator(f".basr-{part}")

    def text(self, part: str) -> str:
        return self.at(part).inner_text()

    def wait_status(self, *prefixes: str, timeout: float = 180) -> str:
        """Wait until this component's status starts with one of `prefixes` (or "error")."""
        condition = " || ".join(f"s.startsWith({p!r})" for p in (*prefixes, "error"))
        self.page.wait_for_function(
            f"(e) => {{ const s = e.textContent; return {condition}; }}",
            arg=self.at("status").element_handle(),
            timeout=timeout * 1000,
        )
        status = self.text("status")
        if "error" not in prefixes:
            assert not status.startswith("error"), status
        return status

    def outside(self, base: str) -> list[str]:
        return [url for _, url, _ in self.requests if not url.startswith(base.rstrip("/"))]


def test_microphone_streams_with_local_agreement_and_only_the_result_reaches_the_server(browser, app, speech_wav):
    wav, reference, seconds = speech_wav
    ui = Page(browser, app)
    ui.at("model").select_option(TINY_FP32)
    ui.at("load").click()
    ready = ui.wait_status("Whisper tiny.en")
    assert "WASM" in ready  # no GPU here: WASM, and the UI says so
    ui.at("mic").click()
    start, seen = time.time(), []
    # Stop once the speech is over, or, on a slow machine, once a commit has shown beside an
    # unconfirmed tail, in the silence that follows the speech (at most 15 s of it).
    both = lambda: any(c.strip() and u.strip() for c, u in seen)  # noqa: E731
    while time.time() - start < seconds + 15 and not (time.time() - start > seconds + 1 and both()):
        seen.append((ui.text("committed"), ui.text("unconfirmed")))
        ui.page.wait_for_timeout(500)
    ui.at("stop").click()
    ui.wait_status("stopped", timeout=240)

    assert both(), "committed and unconfirmed text never showed together"
    committed = [c for c, _ in seen]
    assert all(b.startswith(a) for a, b in zip(committed, committed[1:]) if a), "committed text changed"
    final = ui.text("committed")
    assert score(reference, final).wer <= 0.15, final
    assert "first commit" in ui.text("metrics")

    assert ui.outside(app.url) == []  # nothing outside localhost: assets and model from the app
    # Zero-server: 16 kHz audio is 64 kB a second; nothing the page sent comes near that.
    assert max(len(body) for _, _, body in ui.requests) < 16_000
    run_id = ui.text("run").split()[-1]  # "run <id>", as the component shows it
    result = app.client().predict(run_id, api_name="/browser_result")
    assert result["text"] == final and result["mode"] == "stream" and result["device"] == "wasm"
    m = result["metrics"]
    assert m["first_commit_latency"] > 0 and m["mean_commit_lag"] > 0 and m["audio_seconds"] >= seconds - 1
    ui.context.close()


def test_file_mode_transcribes_in_the_page_and_caches_the_model(browser, app, clips):
    ui = Page(browser, app)
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
    ui = Page(browser, app)
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

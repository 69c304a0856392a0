"""Debian Chromium driven by Playwright on the app's Browser tab; shared by tests/test_browser.py
and bench/bench_browser_stream.py. The microphone is Chromium's fake capture device playing a
WAV file (it loops the file, so callers end the file with silence and stop before it repeats)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]  # fmt: skip
RATE = 16000


def launch(playwright, wav: Path):
    """Chromium whose microphone plays `wav`."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*ARGS, f"--use-file-for-fake-audio-capture={wav}"])


def write_mic_sequence(clips: Sequence, path: Path, seconds: float = 60.0, pause: float = 0.5, silence: float = 30.0):
    """The clips in turn, each followed by `pause` s, until at least `seconds` of audio, then
    `silence` s: returns (path, reference text, seconds of speech and pauses)."""
    gap = np.zeros(int(pause * RATE), dtype=np.float32)
    parts, words, total, n = [], [], 0, 0
    while total < seconds * RATE:
        clip = clips[n % len(clips)]
        parts += [clip.samples.astype(np.float32), gap]
        words.append(clip.reference)
        total += len(clip.samples) + len(gap)
        n += 1
    sf.write(path, np.concatenate([*parts, np.zeros(int(silence * RATE), dtype=np.float32)]), RATE)
    return path, " ".join(words), total / RATE


class Page:
    """The Browser tab in a fresh browser context, with every request and console error recorded."""

    def __init__(self, browser, url: str, tab: str = "Browser"):
        self.context = browser.new_context(permissions=["microphone"])
        self.page = self.context.new_page()
        self.requests: list[tuple[str, str, bytes]] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append((r.method, r.url, r.post_data_buffer or b"")))
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.goto(url)
        if tab:
            self.page.get_by_role("tab", name=tab).click()
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
        """Requests that left the page for another host (blob: and data: URLs never leave it)."""
        return [url for _, url, _ in self.requests if not url.startswith((base.rstrip("/"), "blob:", "data:"))]

    def load(self, model_key: str) -> str:
        self.at("model").select_option(model_key)
        self.at("load").click()
        return self.wait_status("Whisper")

    def close(self) -> None:
        self.context.close()


@dataclass
class StreamRun:
    snapshots: list[tuple[float, str, str, str]] = field(default_factory=list)  # (s, committed, unconfirmed, status)
    final: str = ""
    stopped_after: float = 0.0

    @property
    def committed(self) -> list[str]:
        return [c for _, c, _, _ in self.snapshots]

    @property
    def statuses(self) -> list[str]:
        return [s for _, _, _, s in self.snapshots]


def stream_microphone(ui: Page, speech_seconds: float, settle: float = 2.0, tail: float = 15.0) -> StreamRun:
    """Start the microphone, watch the transcript every 0.25 s while the speech plays, then stop
    once the unconfirmed tail is empty and the committed text has not changed for `settle` s
    (at most `tail` s after the speech's end, inside the file's silence)."""
    run = StreamRun()
    ui.at("mic").click()
    start = time.time()
    changed = start
    while True:
        elapsed = time.time() - start
        committed, unconfirmed, status = ui.text("committed"), ui.text("unconfirmed"), ui.text("status")
        if run.snapshots and committed != run.snapshots[-1][1]:
            changed = time.time()
        run.snapshots.append((elapsed, committed, unconfirmed, status))
        if elapsed > speech_seconds + tail:
            break
        if elapsed > speech_seconds and not unconfirmed.strip() and time.time() - changed > settle:
            break
        ui.page.wait_for_timeout(250)
    run.stopped_after = time.time() - start
    ui.at("stop").click()
    ui.wait_status("stopped", timeout=240)
    run.final = ui.text("committed")
    return run

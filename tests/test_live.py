"""Live server streaming (explorer.live): real tiny.en on real speech, through the streams
registry directly, through the /v1/live API of the running app in real time, and from Chromium's
fake microphone into the Browser tab's server microphone."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from explorer.live import LiveStreamError, LiveStreams
from explorer.scoring import score
from explorer.types import TranscribeOptions
from tests.browser_page import ARGS, CHROMIUM

MODEL = "faster-whisper/tiny.en"
LEAD_IN_SECONDS = 1.5
EN = TranscribeOptions(language="en")


def chunks(samples: np.ndarray, seconds: float = 0.5):
    step = int(seconds * 16000)
    return [samples[i : i + step] for i in range(0, len(samples), step)]


def assert_only_grows(texts: list[str]) -> None:
    previous = ""
    for text in texts:
        assert text.startswith(previous), (previous, text)
        previous = text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stream_commits_growing_text_that_reads_like_the_reference(service, offline_settings, clips):
    """Pushed faster than real time (a pass per chunk as it becomes ready), closed with the tail."""
    clip = clips[0]  # 7.1 s
    live = LiveStreams(service, offline_settings)
    stream = live.open("test:a", MODEL, EN, 1.0)
    seen = [stream.push(c).committed for c in chunks(clip.samples)]
    assert_only_grows(seen)
    assert stream.passes >= 5
    final = live.close(stream.id, reference_text=clip.reference)
    assert_only_grows([*seen, final.committed])
    assert final.closed and final.latency.wer <= 0.15, final.committed
    assert final.latency.words_committed >= 20 and final.latency.compute_ratio > 0
    assert final.latency.first_commit_latency is not None
    assert live.open_count() == 0
    with pytest.raises(LiveStreamError):
        live.get(stream.id)


def test_a_page_push_returns_while_its_pass_runs_and_loses_no_audio(service, offline_settings, clips):
    """The page's microphone pushes with wait=False: Gradio keeps only the newest chunk sent while a
    stream handler runs, so the handler must not wait for a pass. Chunks pushed back to back while
    passes run on the stream's thread are all kept, and closing transcribes what came last."""
    clip = clips[0]
    live = LiveStreams(service, offline_settings)
    stream = live.open("test:page", MODEL, EN, 1.0)
    while_busy = 0
    for c in chunks(clip.samples):
        stream.push(c, wait=False)
        while_busy += stream.busy  # returned with a pass still in flight
    assert while_busy >= 3  # a tiny.en pass takes ~0.1-0.5 s here, a push microseconds
    final = live.close(stream.id, reference_text=clip.reference)
    assert final.audio_seconds == pytest.approx(len(clip.samples) / 16000)
    assert 1 <= final.passes < len(chunks(clip.samples))  # chunks that came during a pass share the next
    assert final.latency.wer <= 0.15, final.committed


def test_limits_per_session_overall_time_and_idle(service, offline_settings, clips):
    from dataclasses import replace

    settings = replace(offline_settings, max_live_streams=2, max_live_streams_per_session=1,
                       live_stream_max_seconds=2.0, live_stream_idle_seconds=5.0)  # fmt: skip
    clock = Clock()
    live = LiveStreams(service, settings, clock=clock)
    first = live.open("s1", MODEL, EN)
    with pytest.raises(LiveStreamError, match="MAX_LIVE_STREAMS_PER_SESSION"):
        live.open("s1", MODEL, EN)
    second = live.open("s2", MODEL, EN)
    with pytest.raises(LiveStreamError, match="MAX_LIVE_STREAMS"):
        live.open("s3", MODEL, EN)
    with pytest.raises(LiveStreamError, match="no such"):
        live.get(first.id, owner="s2")  # another session's stream
    # The time limit: audio past LIVE_STREAM_MAX_SECONDS ends the stream.
    ended = first.push(clips[0].samples[: 3 * 16000])
    assert ended.closed and ended.reason == "time limit" and ended.audio_seconds == pytest.approx(2.0)
    with pytest.raises(LiveStreamError, match="closed"):
        first.push(clips[0].samples[:800])
    # Idle: no audio for LIVE_STREAM_IDLE_SECONDS and the stream is closed.
    clock.now += 6
    assert live.reap() == 2  # the ended one too: it had no audio since
    assert live.open_count() == 0 and second.closed.reason == "idle"
    with pytest.raises(LiveStreamError, match="min_chunk"):
        live.open("s1", MODEL, EN, 0.01)


def real_time_sender(samples: np.ndarray, send, seconds: float = 0.5) -> list:
    """Calls send(chunk) with each chunk once its audio would have been captured."""
    start = time.monotonic()
    answers = []
    for i, chunk in enumerate(chunks(samples, seconds)):
        due = start + (i + 1) * seconds
        time.sleep(max(0.0, due - time.monotonic()))
        answers.append(send(chunk))
    return answers


def test_live_stream_through_the_api_in_real_time(app, clips):
    import httpx

    clip = clips[3]  # ~6 s
    with httpx.Client(base_url=app.url, timeout=60) as http:
        opened = http.post("/v1/live", params={"model": MODEL, "language": "en", "min_chunk": 1.0})
        assert opened.status_code == 200, opened.text
        stream_id = opened.json()["stream_id"]
        pcm = lambda c: (np.clip(c, -1, 1) * 32767).astype("<i2").tobytes()  # noqa: E731
        answers = real_time_sender(clip.samples, lambda c: http.post(f"/v1/live/{stream_id}/audio", content=pcm(c)))
        assert all(a.status_code == 200 for a in answers), answers[-1].text
        updates = [a.json() for a in answers]
        assert max(u["passes"] for u in updates) >= 3
        final = http.post(f"/v1/live/{stream_id}/close", params={"align": "true"}).json()
        assert_only_grows([u["committed"] for u in updates] + [final["committed"]])
        assert score(clip.reference, final["committed"]).wer <= 0.15, final["committed"]
        latency = final["latency"]
        assert latency["alignment"].startswith("faster-whisper/base") and latency["words_matched"] >= 5
        assert 0 < latency["mean_word_latency"] < 10 and latency["p90_word_latency"] >= latency["p50_word_latency"]
        # Bad input: a clear error, and the server goes on.
        assert http.post(f"/v1/live/{stream_id}/audio", content=b"\0\0").status_code == 404  # closed
        bad = http.post("/v1/live", params={"model": "no/such-model"})
        assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"  # as /v1/audio/* answers
        again = http.post("/v1/live", params={"model": MODEL})
        more = http.post("/v1/live", params={"model": MODEL})  # one per client (MAX_LIVE_STREAMS_PER_SESSION)
        assert more.status_code == 429 and "MAX_LIVE_STREAMS_PER_SESSION" in more.json()["error"]["message"]
        odd = http.post(f"/v1/live/{again.json()['stream_id']}/audio", content=b"\0\0\0")
        assert odd.status_code == 400 and "even" in odd.json()["error"]["message"]
        assert http.post(f"/v1/live/{again.json()['stream_id']}/close").status_code == 200


def live_streams(app) -> int:
    return app.client().predict(api_name="/health")["live_streams"]


@pytest.fixture(scope="module")
def mic_wav(clips, tmp_path_factory) -> Path:
    """1.5 s of silence, one clip, then silence (Chromium loops the file). The lead-in is the
    moment a person waits after pressing Record: while Gradio's stream event starts, its page
    drops the microphone's chunks (measured: up to ~1 s, the start of the first take)."""
    path = tmp_path_factory.mktemp("live-mic") / "speech.wav"
    silence = lambda seconds: np.zeros(int(seconds * 16000), dtype=np.float32)  # noqa: E731
    sf.write(path, np.concatenate([silence(LEAD_IN_SECONDS), clips[0].samples, silence(30)]), 16000)
    return path


def test_live_stream_from_the_fake_microphone(app, clips, mic_wav):
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: run the tests with `make test`")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*ARGS, f"--use-file-for-fake-audio-capture={mic_wav}"])
        try:
            page = browser.new_context(permissions=["microphone"]).new_page()
            page.goto(app.url)
            page.get_by_role("tab", name="Browser").click()
            record = page.locator("#live-mic").get_by_role("button", name="Record")
            record.click()
            committed = []
            deadline = time.monotonic() + LEAD_IN_SECONDS + 10  # the clip (7.1 s) and a little silence
            while time.monotonic() < deadline:
                committed.append(page.locator("#live-text .committed").all_inner_texts())
                time.sleep(0.25)
            page.locator("#live-mic").get_by_role("button", name="Stop").click()
            summary = "() => document.querySelector('#live-summary').innerText"
            page.wait_for_function(f"() => ({summary})().includes('latency')", timeout=60_000)
            final = page.locator("#live-text .committed").inner_text()
            first_take = page.evaluate(summary)
            # Gradio may send one more chunk after Stop; it must not open a stream (one that the
            # next take would inherit, its clock started at that chunk). Record opens the take's.
            page.wait_for_timeout(1500)
            after_stop = live_streams(app)
            record.click()
            page.wait_for_timeout(2000)
            during_second = live_streams(app)
            page.locator("#live-mic").get_by_role("button", name="Stop").click()
            page.wait_for_function(f"(first) => ({summary})() !== first && ({summary})().includes('latency')", arg=first_take, timeout=60_000)
            page.wait_for_timeout(1500)
            after_second = live_streams(app)
        finally:
            browser.close()
    assert (after_stop, during_second, after_second) == (0, 1, 0)
    seen = [texts[0] for texts in committed if texts and texts[0]]
    assert len(set(seen)) >= 2, committed  # committed text arrived while the microphone was on
    assert_only_grows([*seen, final])
    assert score(clips[0].reference, final).wer <= 0.15, final

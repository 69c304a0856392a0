"""Server-side streaming: faster-whisper tiny.en under LocalAgreement-2 on real speech."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from explorer.audio import Audio
from explorer.scoring import score
from explorer.simulate import StreamReport, simulate_stream
from explorer.types import TranscribeOptions
from tests.conftest import ADMIN_TOKEN, ROOT

MODEL = "faster-whisper/tiny.en"
OPTIONS = TranscribeOptions(language="en")


@pytest.fixture(scope="module")
def long_report(service, long_speech) -> StreamReport:
    """27 s streamed a second at a time, the buffer trimmed past 8 s (about a minute on two CPUs)."""
    return simulate_stream(service, MODEL, Audio(long_speech), OPTIONS, trim_seconds=8.0, realtime=False)


def test_streamed_long_speech_reads_like_the_references(long_report, clips):
    reference = " ".join(c.reference for c in clips)
    assert score(reference, long_report.text).wer <= 0.15, long_report.text
    assert long_report.text == long_report.steps[-1].committed
    assert long_report.audio_seconds == pytest.approx(27.2, abs=0.1)


def test_a_chunk_per_pass_without_realtime(long_report):
    passes = long_report.steps[:-1]  # the last record is finish()
    assert long_report.iterations == len(passes) >= 10
    assert [s.audio_seconds for s in passes[:-1]] == pytest.approx([i + 1.0 for i in range(len(passes) - 1)])
    assert passes[-1].audio_seconds == pytest.approx(long_report.audio_seconds)
    assert long_report.processing_seconds == pytest.approx(sum(s.processing_seconds for s in passes))
    for step in passes:  # the simulated timeline: a pass ends after its audio arrived and it ran
        assert step.time >= step.audio_seconds + step.processing_seconds - 1e-6


def test_committed_text_only_grows(long_report):
    previous = ""
    for step in long_report.steps:
        assert step.committed.startswith(previous), (previous, step.committed)
        previous = step.committed
    words = long_report.words
    assert all(a.end <= b.end + 0.1 for a, b in zip(words, words[1:]))  # stream times, in order


def test_buffer_is_trimmed_past_trim_seconds(long_report):
    assert long_report.trims >= 1
    # A trimmed buffer is shorter than the audio heard so far.
    assert any(s.buffer_seconds < s.audio_seconds - 1 for s in long_report.steps[:-1])


def test_word_latency_of_every_committed_word(long_report):
    latency = long_report.latency
    assert len(long_report.events) == len(long_report.words) == latency.words_committed
    assert latency.alignment.startswith("the stream's own")  # no reference alignment given
    assert 0 < latency.p50_word_latency <= latency.p90_word_latency
    assert latency.compute_ratio == pytest.approx(long_report.processing_seconds / long_report.audio_seconds)
    assert long_report.word_times == "engine"


def test_segments_without_words_get_their_times_spread():
    from explorer.simulate import hypothesis_from
    from explorer.types import Segment

    hyp = hypothesis_from([Segment(1.0, 3.0, " He was not"), Segment(3.0, 4.0, " an")])
    assert [w.text for w in hyp.words] == [" He", " was", " not", " an"]
    assert [t for w in hyp.words for t in (w.start, w.end)] == pytest.approx([1.0, 1.5, 1.5, 2.25, 2.25, 3.0, 3.0, 4.0])
    assert list(hyp.segment_ends) == [3.0, 4.0]


def test_commit_latency_figures(long_report):
    assert long_report.first_commit_latency is not None and long_report.first_commit_latency > 0
    assert long_report.mean_commit_lag is not None and long_report.mean_commit_lag > 0
    # Nothing is committed before two passes agree: at least two chunks of audio.
    assert long_report.first_commit_latency >= 2 * long_report.min_chunk_seconds
    assert long_report.to_dict()["options"]["word_timestamps"] is True


class SteppedClock:
    """Real time plus every sleep, taken at once: a real-time run that never waits."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self) -> float:
        return time.monotonic() + sum(self.slept)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_realtime_waits_for_the_audio_and_takes_all_that_arrived(service, clips):
    clip = clips[0]  # 7.1 s
    clock = SteppedClock()
    seen = []
    report = simulate_stream(
        service, MODEL, Audio(clip.samples), OPTIONS, realtime=True, clock=clock, sleep=clock.sleep, on_step=seen.append
    )
    assert seen == list(report.steps[:-1])
    assert clock.slept and all(s > 0 for s in clock.slept)
    assert report.wall_seconds >= report.audio_seconds
    passes = report.steps[:-1]
    previous_end = 0.0
    for step in passes:
        # A pass only takes audio that has arrived by its start, at least a chunk of new audio.
        assert step.audio_seconds <= step.time - step.processing_seconds + 0.05
        assert step.audio_seconds - previous_end >= 1.0 - 1e-9 or step.audio_seconds == report.audio_seconds
        previous_end = step.audio_seconds
    assert score(clip.reference, report.text).wer <= 0.15, report.text
    assert report.first_commit_latency is not None and report.first_commit_latency > 0


def test_cli_streams_a_file_and_writes_the_report(models_dir, clips, tmp_path):
    clip = clips[0]
    out = tmp_path / "out.json"
    env = {**os.environ, "MODELS_DIR": str(models_dir), "HF_HUB_OFFLINE": "1"}
    args = ["stream", "--model", MODEL, "--audio", clip.path, "--no-realtime", "--json", out, "--reference", clip.reference]
    run = subprocess.run(
        [sys.executable, "-m", "explorer", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "s) | " in run.stdout and "first-commit latency" in run.stdout and "WER" in run.stdout
    saved = json.loads(out.read_text())
    assert "dashwood" in saved["text"].lower()
    assert saved["first_commit_latency"] > 0 and saved["mean_commit_lag"] > 0
    assert saved["iterations"] >= 7 and saved["realtime"] is False
    assert saved["score"]["wer"] <= 0.15


def test_cli_refuses_a_missing_file(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "explorer", "stream", "--model", MODEL, "--audio", str(tmp_path / "none.wav")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2 and run.stderr.startswith("error:"), run.stderr


def test_server_streaming_through_the_api(app, clips):
    """/simulate_stream on the running app: passes stream in, the last update has the latency."""
    from gradio_client import handle_file

    clip = clips[3]  # ~6 s: streamed in real time
    job = app.client().submit(handle_file(str(clip.path)), "faster-whisper/tiny.en", "en", 1.0, api_name="/simulate_stream")
    updates = list(job)
    assert len(updates) >= 3
    summary = updates[-1][1]
    assert score(clip.reference, summary["text"]).wer <= 0.2
    assert summary["first_commit_latency"] > 0 and summary["mean_commit_lag"] > 0
    assert summary["wall_seconds"] >= summary["audio_seconds"] - 0.5  # real time: no faster than the audio


def test_a_cancelled_stream_stops_its_model_calls_and_the_server_keeps_serving(app, clips):
    """/simulate_stream runs its passes in the handler: once the client cancels, the stream ends
    (the app logs it) and no model call follows; the next request is served."""
    from gradio_client import handle_file

    client = app.client()

    def runs() -> int:
        detail = client.predict(ADMIN_TOKEN, api_name="/health")["detail"]  # runs per model: admin detail
        return sum(m["runs"] for m in detail["loaded_models"])

    job = client.submit(handle_file(str(clips[0].path)), MODEL, "en", 1.0, api_name="/simulate_stream")  # 7.1 s
    while sum(isinstance(u[0], str) for u in job.outputs()) < 2:  # two passes in (not the waits' skips)
        assert not job.done(), "the stream ended before it could be cancelled"
        time.sleep(0.1)
    job.cancel()
    deadline = time.monotonic() + 60
    while "closed by the client" not in app.log_path.read_text():
        assert time.monotonic() < deadline, "the stream was not closed"
        time.sleep(0.1)
    after_close = runs()
    time.sleep(3)  # long enough for three more passes, had the stream gone on
    assert runs() == after_close
    assert "dashwood" in client.predict(handle_file(str(clips[0].path)), MODEL, api_name="/transcribe")["text"].lower()

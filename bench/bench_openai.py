"""Benchmark: what the OpenAI-compatible route and gradio_client's /transcribe add to a raw
faster-whisper call, on the same clips, weights and options, in one run.

    .venv/bin/python bench/bench_openai.py [--repeats 5]

Targets: /v1/audio/transcriptions adds at most 5 % to the raw wall time on clips of 10 s or more
and at most 50 ms on a 3 s clip. The three are run in turn for each repeat (after one warm-up
each), so drift hits all alike; the table gives medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from bench.bench_transcribe import make_long_clips, raw_tiny_en, timed_all  # noqa: E402
from explorer import zoo  # noqa: E402
from explorer.audio import load_audio  # noqa: E402
from explorer.config import Settings  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402

TINY = "faster-whisper/tiny.en"
SHORT_SECONDS = 3.0


def make_short_clip(folder: Path) -> Path:
    """The first 3 s of a LibriVox clip."""
    samples, rate = sf.read(librivox_clips()[0].path, dtype="float32")
    path = folder / "short.wav"
    sf.write(path, samples[: int(SHORT_SECONDS * rate)], rate)
    return path


def bench(paths: list[Path], models_dir: Path, repeats: int) -> pd.DataFrame:
    from gradio_client import Client, handle_file
    from openai import OpenAI

    raw_transcribe = raw_tiny_en(models_dir)
    app = RunningApp(models_dir, Path(tempfile.mkdtemp()) / "app.log")
    rows = []
    try:
        gradio = Client(app.url, verbose=False)
        client = OpenAI(base_url=app.url + "v1", api_key="unused")
        for path in paths:
            audio = load_audio(path).samples

            def raw():
                return raw_transcribe(audio)

            def openai_route():
                with open(path, "rb") as f:
                    return client.audio.transcriptions.create(model=TINY, file=f, language="en")

            def gradio_route():
                return gradio.predict(handle_file(str(path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe")

            raw_s, openai_s, gradio_s = timed_all([raw, openai_route, gradio_route], repeats)
            rows.append(
                {
                    "clip": path.name,
                    "audio s": round(len(audio) / 16000, 1),
                    "raw faster-whisper s": round(raw_s, 3),
                    "/v1/audio/transcriptions s": round(openai_s, 3),
                    "gradio_client /transcribe s": round(gradio_s, 3),
                    "OpenAI route overhead ms": round(1000 * (openai_s - raw_s)),
                    "OpenAI route overhead %": round(100 * (openai_s - raw_s) / raw_s, 1),
                    "gradio_client overhead ms": round(1000 * (gradio_s - raw_s)),
                    "gradio_client overhead %": round(100 * (gradio_s - raw_s) / raw_s, 1),
                }
            )
    finally:
        app.stop()
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = Settings.from_env()
    zoo.prepare(models_dir=settings.models_dir, log=lambda _: None)
    with tempfile.TemporaryDirectory() as tmp:
        long_paths, _ = make_long_clips(Path(tmp))
        paths = [make_short_clip(Path(tmp)), *long_paths]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
              f"CPU_THREADS {settings.cpu_threads}; median of {args.repeats} runs after one warm-up\n")  # fmt: skip
        print("## Raw faster-whisper, the OpenAI-compatible route and gradio_client (tiny.en int8, beam 1, VAD)\n")
        print(bench(paths, settings.models_dir, args.repeats).to_markdown(index=False))


if __name__ == "__main__":
    main()

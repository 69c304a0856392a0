"""Browser streaming against the clock: the Browser tab's LocalAgreement-2 in headless Chromium.

The five LibriVox clips in turn with 0.5 s pauses up to ~60 s of audio, then silence, played by
Chromium's fake microphone into the app's Browser tab (`python app.py`, offline, tiny.en ONNX
exports from the zoo). For each model: the first commit, the mean commit lag (emission minus the
word's end in the stream, per committed word, from the result's `events`), the mean lag of the last
quarter of the words over the first's, the final WER against the clips' references, WASM threads
and RTFx (audio over time spent in passes). Run it under the CPU lock:

    flock /tmp/cpu.lock .venv/bin/python bench/bench_browser_stream.py [--isolation off] [--record]

`--record` writes each local model's streaming WER (the median of `--repeat` runs) to explorer/browser_wer.json, which the
Browser tab shows next to the model's name.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pandas as pd  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from explorer.config import Settings  # noqa: E402
from explorer.latency import events_from, reference_alignment, stream_latency  # noqa: E402
from explorer.metrics import commit_lag  # noqa: E402
from explorer.service import ModelService  # noqa: E402
from explorer.scoring import align, score  # noqa: E402
from tests.browser_page import Page, launch, stream_microphone, write_mic_sequence  # noqa: E402
from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import RunningApp  # noqa: E402

MODELS = ["browser/whisper-tiny.en", "browser/whisper-tiny.en-q8", "browser/whisper-tiny.en-q8-encoder"]
WER_FILE = ROOT / "explorer" / "browser_wer.json"


def measure(browser, url: str, model: str, reference: str, speech_seconds: float) -> dict:
    ui = Page(browser, url)
    try:
        ui.load(model)
        run = stream_microphone(ui, speech_seconds)
        isolated = ui.page.evaluate("self.crossOriginIsolated")
        run_id = ui.text("run").split()[-1]
    finally:
        ui.close()
    return {"run_id": run_id, "final": run.final, "isolated": isolated, "behind": [s for s in run.statuses if "falling behind" in s]}


# One pass on a 6 s clip, straight through transformers.js (served by the app) on its isolated page,
# for each onnxruntime setting: the proxy worker, WASM threads, the graphs.
PASS_JS = """async ([tjs, wasm, models, audio, proxy, threads, dtype]) => {
  const T = await import(new URL(tjs, document.baseURI).href);
  T.env.backends.onnx.wasm.wasmPaths = new URL(wasm, document.baseURI).href;
  T.env.backends.onnx.wasm.numThreads = threads; T.env.backends.onnx.wasm.proxy = proxy;
  T.env.allowLocalModels = true; T.env.allowRemoteModels = false; T.env.localModelPath = models;
  const asr = await T.pipeline("automatic-speech-recognition", "whisper-tiny.en-onnx", { device: "wasm", dtype });
  const x = Float32Array.from(audio); const times = []; let text = "";
  for (let i = 0; i < 4; i++) {
    const t0 = performance.now(); text = (await asr(x, { return_timestamps: true })).text; times.push((performance.now() - t0) / 1000);
  }
  return { times, text, isolated: self.crossOriginIsolated };
}"""
SETTINGS = [(True, 2, "fp32"), (False, 2, "fp32"), (True, 1, "fp32"), (False, 1, "fp32"), (True, 2, "q8"), (False, 2, "q8")]


def pass_times(browser, url: str, clip) -> list[dict]:
    from gradio_browser_asr import ASSETS_DIR, ORT_DIST, TRANSFORMERS_JS
    import soundfile as sf

    audio = sf.read(clip.path, dtype="float32")[0][: 16000 * 6].tolist()
    models = f"/gradio_api/file={Settings().models_dir.resolve()}/"
    urls = [f"gradio_api/file={(ASSETS_DIR / TRANSFORMERS_JS).resolve()}", f"gradio_api/file={(ASSETS_DIR / ORT_DIST).resolve()}/"]
    rows = []
    for proxy, threads, dtype in SETTINGS:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        r = page.evaluate(PASS_JS, [*urls, models, audio, proxy, threads, dtype])
        context.close()
        rows.append({"proxy worker": proxy, "WASM threads": threads, "graphs": dtype, "isolated": r["isolated"],
                     "pass s (warm-up, then 3)": " ".join(f"{t:.2f}" for t in r["times"]), "text": r["text"][:40]})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio before the closing silence")
    parser.add_argument("--isolation", default=None, help="CROSS_ORIGIN_ISOLATION for the app (default: its default)")
    parser.add_argument("--passes", action="store_true", help="also time single passes for each onnxruntime setting")
    parser.add_argument("--errors", action="store_true", help="also print each run's word errors against the reference")
    parser.add_argument("--repeat", type=int, default=1, help="stream each model this many times (one row per run)")
    parser.add_argument("--events", type=Path, help="also write each run's result (text, metrics, per-word events) to this JSON-lines file")
    parser.add_argument("--record", action="store_true", help=f"write the streaming WERs to {WER_FILE.relative_to(ROOT)}")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_browser_"))
    wav, reference, speech_seconds = write_mic_sequence(librivox_clips(), work / "mic.wav", args.seconds)
    env = {"DATA_DIR": work / "data", "NUM_WORKERS": 1}
    if args.isolation is not None:
        env["CROSS_ORIGIN_ISOLATION"] = args.isolation
    app = RunningApp(Settings().models_dir, work / "app.log", **env)
    rows, recorded, errors = [], {}, {}
    # Word latency against a reference alignment of the file (the server's definition, explorer/latency.py).
    service = ModelService(Settings.from_env())
    alignment = reference_alignment(service, service.decode(wav))
    try:
        client = app.client()
        with sync_playwright() as p:
            browser = launch(p, wav)
            for model in [m for m in args.models for _ in range(args.repeat)]:
                seen = measure(browser, app.url, model, reference, speech_seconds)
                result = client.predict(seen["run_id"], api_name="/browser_result")
                if args.events:
                    with args.events.open("a") as out:
                        out.write(json.dumps({"model": model, **result}) + "\n")
                m, lag = result["metrics"], commit_lag(result.get("events") or [])
                wer = score(reference, result["text"]).wer
                recorded.setdefault(model, []).append(wer)
                errors[model] = [f"{a.reference or '–'}→{a.hypothesis or '–'}" for a in align(reference, result["text"]) if a.op != "equal"]
                q = lag.quarter_lags
                word = stream_latency(events_from(result.get("events") or []), m.get("processing_seconds") or 0.0,
                                      m.get("audio_seconds") or 0.0, alignment)  # fmt: skip
                rows.append({
                    "model": model,
                    "isolated": seen["isolated"],
                    "threads": m.get("threads"),
                    "first commit s": lag.first_commit_seconds,
                    "mean lag s": lag.mean_lag_seconds,
                    "lag by quarter s": " / ".join("–" if v is None else f"{v:.1f}" for v in q),
                    "last/first quarter": lag.last_to_first_quarter,
                    "WER %": 100 * wer,
                    "word latency mean / p50 / p90 s": " / ".join(
                        "–" if v is None else f"{v:.2f}" for v in (word.mean_word_latency, word.p50_word_latency, word.p90_word_latency)
                    ),
                    "words matched": f"{word.words_matched}/{word.words_committed}",
                    "RTFx": m.get("rtfx"),
                    "passes": m.get("iterations"),
                    "pass s mean / max": f"{m.get('mean_pass_seconds') or 0:.2f} / {m.get('max_pass_seconds') or 0:.2f}",
                    "longest buffer s": m.get("max_buffer_seconds"),
                    "words": lag.words,
                    "forced words": m.get("forced_words"),
                    "'falling behind' shown": len(seen["behind"]),
                })  # fmt: skip
            passes = pass_times(browser, app.url, librivox_clips()[1]) if args.passes else []
            browser.close()
    finally:
        app.stop()
    print(f"\n{speech_seconds:.1f} s of LibriVox speech and pauses, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"word latency against {alignment.source}\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))
    if args.errors:
        for model, wrong in errors.items():
            print(f"\n{model}: {len(wrong)} word errors (reference→streamed): {', '.join(wrong)}")
    if passes:
        print("\nOne pass on a 6 s LibriVox clip (transformers.js straight, the app's page)\n")
        print(pd.DataFrame(passes).to_markdown(index=False))
    if args.record:
        data = {
            "how": f"bench/bench_browser_stream.py: streaming WER on {speech_seconds:.0f} s of the LibriVox clips "
            "(fake microphone, headless Chromium, WASM)",
            "measured": f"{datetime.date.today()}",
            "wer": {k: round(statistics.median(v), 4) for k, v in recorded.items()},  # the median of --repeat runs
        }
        WER_FILE.write_text(json.dumps(data, indent=1) + "\n")
        print(f"\nwrote {WER_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

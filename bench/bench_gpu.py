"""The CUDA paths, on a machine with a GPU: the figures README "Deploy" lists as unmeasured.

    .venv/bin/python bench/bench_gpu.py [--files 24] [--repeats 3]

Through the app's own ModelService with DEVICE=cuda, on the offline zoo's tiny.en/base weights and
the LibriVox clips (no VAD, greedy, English):

1. faster-whisper on CUDA: the compute type it chose (float16 is the engine's CUDA default), RTFx
   and WER, against the same files on the CPU (int8).
2. transformers Whisper on CUDA: RTFx and WER.
3. Eviction by memory: GPU_MEMORY_UTILIZATION set just under what the first loaded model leaves in
   use, so loading a second model must evict the first (service._evict's memory rule, not
   MAX_LOADED_MODELS, which is set high); the table shows the GPU memory in use after each step,
   so whether closing an engine really gave its memory back (CTranslate2 and torch alike).
4. Batch speed-up: the same files one call each against ModelService.transcribe_batch (one
   batched call, faster-whisper's BatchedInferencePipeline) on CUDA.

Without CUDA it says so and exits with status 2 (nothing is faked on a CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

FW_TINY, FW_BASE, HF_TINY = "faster-whisper/tiny.en", "faster-whisper/base", "transformers/whisper-tiny.en"
ZOO = ["whisper-tiny.en-ct2", "whisper-base-ct2", "whisper-tiny.en-hf"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=24, help="LibriVox clips (repeated) per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (the median is shown)")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run parts 1, 2 and 4 on the CPU and skip 3: checks this script's code paths, measures nothing")  # fmt: skip
    return parser.parse_args(argv)


def cuda_missing() -> str | None:
    """Why the CUDA paths cannot run here, or None."""
    import ctranslate2
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if ctranslate2.get_cuda_device_count() < 1:
        return "CTranslate2 sees no CUDA device (a CPU-only ctranslate2 wheel, or no CUDA runtime)"
    return None


def evict_by_memory(base, unload) -> None:
    """Part 3: the memory rule of ModelService._evict on a real GPU."""
    import pandas as pd
    import torch

    from explorer.service import ModelService, gpu_used_fraction

    service = ModelService(replace(base, device="cuda"), online=False)
    steps = []

    def step(what: str) -> None:
        free, total = torch.cuda.mem_get_info()
        steps.append({"step": what, "loaded": ", ".join(service._loaded) or "-",
                      "GPU MiB in use": round((total - free) / 2**20), "used fraction": round(gpu_used_fraction(), 4)})  # fmt: skip

    step("start")
    service.preload(FW_BASE)
    step(f"loaded {FW_BASE}")
    service.preload(HF_TINY)
    step(f"loaded {HF_TINY} (limit {base.gpu_memory_utilization}: both stay)")
    kept = list(service._loaded)
    # Just under what is in use now: the next load must evict by memory, least recently used first.
    service.settings = replace(service.settings, gpu_memory_utilization=max(1e-4, gpu_used_fraction() * 0.99))
    service.preload(FW_TINY)
    step(f"loaded {FW_TINY} (limit {service.settings.gpu_memory_utilization:.4f})")
    print("\n## Eviction by memory (GPU_MEMORY_UTILIZATION, MAX_LOADED_MODELS=8)\n")
    print(pd.DataFrame(steps).to_markdown(index=False))
    evicted = [k for k in kept if k not in service._loaded]
    print(f"\nevicted by memory: {evicted or 'nothing'}; loaded now: {list(service._loaded)}")
    assert kept == [FW_BASE, HF_TINY] and evicted and FW_TINY in service._loaded, (kept, list(service._loaded))
    unload(service)


def main(argv=None) -> int:
    args = parse_args(argv)
    why = None if args.cpu_dry_run else cuda_missing()
    if why:
        print(f"bench_gpu: no GPU to measure: {why}", file=sys.stderr)
        return 2

    import gc
    import statistics

    import pandas as pd
    import torch

    from explorer import gpu, zoo
    from explorer.audio import load_audio
    from explorer.config import Settings
    from explorer.scoring import corpus_wer
    from explorer.service import ModelService
    from explorer.types import TranscribeOptions
    from tests.conftest import librivox_clips

    base = replace(Settings.from_env(), offline=True, max_loaded_models=8)
    zoo.prepare(models_dir=base.models_dir, names=ZOO, log=print)
    clips = librivox_clips()
    picked = [clips[i % len(clips)] for i in range(args.files)]
    audios = [load_audio(str(c.path)) for c in picked]
    references = [c.reference for c in picked]
    audio_seconds = sum(a.duration for a in audios)
    options = TranscribeOptions(language="en", vad_filter=False)
    cuda = "cpu" if args.cpu_dry_run else "cuda"  # the device of the rows that measure CUDA
    where = "CPU DRY RUN, no figure here is a GPU's" if args.cpu_dry_run else torch.cuda.get_device_name(0)
    print(f"{where}; {args.files} files, {audio_seconds:.0f} s of audio\n")

    def unload(service) -> None:
        """Close every model the service holds, so the next part starts with the GPU's memory back."""
        for model in list(service._loaded.values()):
            gpu.forget(model.ref)
            model.engine.close()
        service._loaded.clear()
        gc.collect()
        if cuda == "cuda":
            torch.cuda.empty_cache()

    def timed(run) -> tuple[float, list]:
        run()  # warm-up (loads the model, CUDA kernels)
        seconds, results = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            results = run()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds), results

    # 1-2. faster-whisper float16 and transformers on CUDA, the CPU beside them
    rows = []
    for device, key in ((cuda, FW_TINY), (cuda, FW_BASE), (cuda, HF_TINY), ("cpu", FW_TINY)):
        service = ModelService(replace(base, device=device), online=False)
        seconds, results = timed(lambda: [service.transcribe(key, a, options) for a in audios])
        env = results[0].environment
        rows.append({"model": key, "device": env.device, "compute type": env.compute_type, "gpu": env.gpu,
                     "RTFx": round(audio_seconds / seconds, 1),
                     "WER %": round(100 * corpus_wer(references, [r.text for r in results]).wer, 1)})  # fmt: skip
        assert env.device == device, env
        unload(service)
    print("## faster-whisper and transformers on CUDA (one call per file)\n")
    print(pd.DataFrame(rows).to_markdown(index=False))

    # 3. eviction by memory
    if cuda == "cuda":
        evict_by_memory(base, unload)
    else:
        print("\n## Eviction by memory: skipped (needs CUDA)")

    # 4. batch speed-up on CUDA (files of at most 30 s: one batched call)
    service = ModelService(replace(base, device=cuda), online=False)
    one_by_one, singles = timed(lambda: [service.transcribe(FW_TINY, a, options) for a in audios])
    batched, together = timed(lambda: service.transcribe_batch(FW_TINY, audios, options))
    wer = lambda results: round(100 * corpus_wer(references, [r.text for r in results]).wer, 1)  # noqa: E731
    table = pd.DataFrame([
        {"how": "one call per file", "seconds": round(one_by_one, 3), "RTFx": round(audio_seconds / one_by_one, 1),
         "WER %": wer(singles), "speed-up": 1.0},
        {"how": f"transcribe_batch ({len(audios)} files, one call)", "seconds": round(batched, 3),
         "RTFx": round(audio_seconds / batched, 1), "WER %": wer(together), "speed-up": round(one_by_one / batched, 2)},
    ])  # fmt: skip
    print(f"\n## Batch speed-up on CUDA ({FW_TINY}, {together[0].environment.compute_type})\n")
    print(table.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The CUDA paths, for a machine with a GPU (README "Deploy", figures unmeasured until run), in one
# command: bench/bench_gpu.py runs faster-whisper on CUDA (float16, the engine's CUDA default),
# transformers Whisper on CUDA, the service's eviction by GPU memory and the batched speed-up,
# through ModelService with DEVICE=cuda, and prints the tables to paste into the README (a few
# minutes on tiny.en/base). FULL=1 adds the app-level benches with DEVICE=auto (CUDA there; their
# plain-loop baselines stay on the CPU), which take much longer.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, ctranslate2; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), '| ctranslate2', ctranslate2.__version__, 'cuda devices', ctranslate2.get_cuda_device_count())"
$PY bench/bench_gpu.py "$@"
if [ "${FULL:-0}" = 1 ]; then
    DEVICE=auto $PY bench/bench_transcribe.py --only runtimes
    DEVICE=auto $PY bench/bench_batch.py
fi

#!/usr/bin/env bash
# The CUDA paths, for a machine with a GPU (README "Deploy", figures unmeasured until run):
# DEVICE=auto picks CUDA there, so faster-whisper runs float16 and transformers on CUDA; the batch
# bench gives the batched speed-up. Prints the tables to paste into the README.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv
$PY -c "import torch, ctranslate2; print('torch cuda', torch.cuda.is_available(), '| ctranslate2 cuda devices', ctranslate2.get_cuda_device_count())"
$PY bench/bench_transcribe.py
$PY bench/bench_batch.py

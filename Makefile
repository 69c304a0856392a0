# All set-up for a fresh machine lives here: `make run` serves the app, `make test` runs every test.
VENV   := .venv
PY     := $(VENV)/bin/python
# Debian packages: what the app needs at run time is packages.txt (a Gradio SDK Space installs
# exactly that list, and so does the Dockerfile); the rest is for tests: real speech (LibriVox
# clips), encoders for the audio format tests, Node (the browser component's npm assets and its JS
# tests), Chromium (browser tests) and a real Redis server for the Redis job store's tests.
RUNTIME_PACKAGES := $(shell cat packages.txt)
APT_PACKAGES := $(RUNTIME_PACKAGES) pocketsphinx-testdata sox espeak-ng nodejs chromium redis-server
ASSETS := custom_components/browser_asr

.PHONY: setup system venv assets prepare run test bench fuzz space-check

setup: system venv assets prepare

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Debian's npm is its own package; NodeSource's nodejs already brings npm.
	@command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null)

venv: $(VENV)/.installed

# torch first: 2.13.0 resolves to the CPU build on this machine's disk (a CUDA build elsewhere);
# installed after the rest, pip would pick a multi-GB CUDA build as a dependency.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# transformers.js and onnxruntime-web for the browser component, served by the app (never a CDN).
# onnxruntime-node's install script downloads from outside the registry: skipped, and not needed.
assets: $(ASSETS)/node_modules/.installed

$(ASSETS)/node_modules/.installed: $(ASSETS)/package.json $(ASSETS)/package-lock.json
	cd $(ASSETS) && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --ignore-scripts
	touch $@

prepare: venv
	$(PY) -m explorer.zoo prepare

run: setup
	$(PY) app.py

test: setup
	$(PY) -m pytest

# The load levels (1, 4, 16, 50 clients), then a soak of SOAK_MINUTES at the queue's capacity.
SOAK_MINUTES ?= 10
bench: setup
	$(PY) bench/bench_transcribe.py
	$(PY) bench/bench_batch.py
	$(PY) bench/bench_priority.py
	$(PY) bench/bench_ray.py
	$(PY) bench/bench_workers.py
	$(PY) bench/bench_openai.py
	$(PY) bench/bench_arena.py
	$(PY) bench/bench_load.py --soak $(SOAK_MINUTES)

# A long fuzz of the audio decoder with a fresh random seed each run (`make test` runs a short,
# reproducible one). FUZZ_EXAMPLES is per seed file (8); inputs that break it are saved in
# bench/results/fuzz/. `make fuzz FUZZ_EXAMPLES=500` for a quicker run.
FUZZ_EXAMPLES ?= 3000
fuzz: setup
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/test_audio_fuzz.py \
		-k damaged --hypothesis-show-statistics

# A Gradio SDK Space's build, simulated: a fresh venv from requirements.txt alone, packages.txt's
# Debian packages only, then `python app.py` in an empty HOME, which prepares the zoo and the
# browser assets itself; checks /health, the zoo, a Chromium file-mode transcription, /transcribe.
space-check: system
	.ci/space_check.sh

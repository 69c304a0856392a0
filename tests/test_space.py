"""Deploying as Spaces run: what crosses a ZeroGPU call (pickled, CPU values only), the durations
the calls ask for, the first start of a fresh machine, and the Dockerfile's honesty.

ZeroGPU itself cannot run here (no GPU, no device API): its worker is imitated by a real forked
process that gets the call's arguments and sends back its results by pickling, as spaces 0.51.3's
zero/wrappers.py does. Real ZeroGPU scheduling and CUDA inside the worker are not tested here.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explorer import gpu, zoo
from explorer.config import Settings, default_models_dir
from explorer.types import TranscribeOptions

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_KEYS = ("faster-whisper/tiny.en", "transformers/whisper-tiny.en", "onnx/whisper-tiny.en")


# -- durations -----------------------------------------------------------------------------------
# engine: seconds asked for 3 s, 10 min and 30 min of audio (beam 1, the 300 s cap)
DURATIONS = {
    "faster-whisper": (11, 40, 100),
    "transformers": (16, 65, 165),
    "granite": (31, 105, 255),
    "cohere": (31, 105, 255),
    "qwen-asr": (31, 105, 255),
    "onnx": (11, 85, 235),
}


def test_every_engine_has_a_duration_row():
    from explorer.engines import ENGINE_MODULES

    assert set(DURATIONS) == set(ENGINE_MODULES) == set(gpu.GPU_COST)


@pytest.mark.parametrize("engine", sorted(DURATIONS))
def test_duration_table_through_spaces_own_dispatch(engine):
    """spaces 0.51.3 calls the duration callable with the call's own arguments
    (zero/wrappers.py static_duration: ``duration(*args, **kwargs)``; that module cannot be
    imported without a CUDA torch), so the table is read the same way."""
    ref = gpu.EngineRef("k", engine, "/w", gpu.Runtime(), 0)
    got = tuple(
        gpu._duration(ref, np.zeros(int(s * 16000), np.float32), TranscribeOptions())
        for s in (3, 600, 1800)
    )
    assert got == DURATIONS[engine]
    assert got[2] > 60  # never the 60 s default for a 30-minute file


def test_duration_grows_with_beams_and_stops_at_the_cap():
    assert gpu.gpu_seconds("faster-whisper", 600, beam_size=5) > gpu.gpu_seconds("faster-whisper", 600)
    assert gpu.gpu_seconds("qwen-asr", 1800, beam_size=5, max_seconds=300) == 300
    assert gpu.gpu_seconds("faster-whisper", 0.0, max_seconds=600) == gpu.MIN_GPU_SECONDS


def test_a_batch_asks_for_its_total_audio():
    ref = gpu.EngineRef("k", "faster-whisper", "/w", gpu.Runtime(), 0)
    batch = [np.zeros(30 * 16000, np.float32)] * 8  # BATCH_SIZE files of the 30 s window
    assert gpu._batch_duration(ref, batch, TranscribeOptions()) == gpu.gpu_seconds("faster-whisper", 240)


# -- what crosses a GPU call -----------------------------------------------------------------------
def _no_tensors(value, path="value"):
    """Only plain CPU values: no torch tensor (a CUDA one would hang ZeroGPU's pickling)."""
    import torch

    assert not isinstance(value, torch.Tensor), f"{path} is a tensor"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _no_tensors(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _no_tensors(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_tensors(v, f"{path}[{k!r}]")


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _round_trip(value) -> None:
    _no_tensors(value)
    assert _same(pickle.loads(pickle.dumps(value)), value), value


@pytest.fixture(scope="module")
def zoo_service(request):
    """A service on the zoo prepared by `make` (else the session's own, slower to build)."""
    from explorer.service import ModelService

    ready = all(zoo.local_weights(n) for n in ("whisper-tiny.en-ct2", "whisper-tiny.en-hf", "whisper-tiny.en-onnx"))
    folder = default_models_dir() if ready else request.getfixturevalue("models_dir")
    return ModelService(Settings(models_dir=folder, offline=True, max_loaded_models=3, cpu_threads=2), online=False)


@pytest.fixture
def crossings(monkeypatch):
    """Every argument given to and every value returned from the GPU-wrapped calls."""
    seen: list[tuple[str, object]] = []

    def run_engine(ref, samples, options):
        seen.append(("args", (ref, samples, options)))
        for item in gpu._run_engine(ref, samples, options):
            seen.append(("item", item))
            yield item

    def run_engine_batch(ref, batch, options, step_files=0, between_steps=None):
        # between_steps (handing the device slot over between steps) is a callback of this process:
        # the service gives it only to in-process calls, and 0 steps and None on ZeroGPU.
        crossing = between_steps if ref.load_in_call else None
        seen.append(("args", (ref, batch, options, step_files, crossing)))
        out = gpu._run_engine_batch(ref, batch, options, step_files, between_steps)
        seen.append(("result", out))
        return out

    monkeypatch.setattr(gpu, "run_engine", run_engine)
    monkeypatch.setattr(gpu, "run_engine_batch", run_engine_batch)
    return seen


@pytest.mark.parametrize("key", OFFLINE_KEYS)
def test_everything_crossing_a_gpu_call_pickles_on_real_runs(zoo_service, crossings, clips, key):
    from explorer.audio import load_audio

    audio = load_audio(str(clips[0].path))
    updates = list(zoo_service.stream(key, audio, TranscribeOptions(word_timestamps=True)))
    assert updates[-1].result.text and len(updates) > 2  # streamed, then the result
    kinds = {kind for kind, _ in crossings}
    assert kinds == {"args", "item"}
    for _, value in crossings:
        _round_trip(value)


def test_batched_and_server_streaming_calls_pickle(zoo_service, crossings, clips):
    from explorer.audio import load_audio
    from explorer.simulate import simulate_stream

    audios = [load_audio(str(c.path)) for c in clips[:3]]
    results = zoo_service.transcribe_batch("faster-whisper/tiny.en", audios, TranscribeOptions(language="en"))
    assert all(r.text for r in results)
    report = simulate_stream(zoo_service, "faster-whisper/tiny.en", audios[0], TranscribeOptions(language="en"), 1.0)
    assert report.text
    assert {"args", "result", "item"} <= {kind for kind, _ in crossings}
    for _, value in crossings:
        _round_trip(value)


def test_live_streams_and_arena_battles_cross_as_plain_values(zoo_service, crossings, clips, tmp_path):
    """The paths added since the GPU calls were: a live stream's passes (explorer/live.py, each a
    call on its buffer so far) and an arena battle's two models (explorer/battles.py) run through
    the same wrapped calls, with the same plain values crossing."""
    from dataclasses import replace

    from explorer.audio import load_audio
    from explorer.battles import Arena
    from explorer.live import LiveStreams

    options = TranscribeOptions(language="en")
    live = LiveStreams(zoo_service, zoo_service.settings)
    stream = live.open("space-test", "faster-whisper/tiny.en", options, 1.0)
    samples = clips[0].samples.astype(np.float32)
    for start in range(0, len(samples), 16000):
        stream.push(samples[start : start + 16000])
    final = live.close(stream.id)
    assert final.closed and final.committed
    passes = [v for kind, v in crossings if kind == "args"]
    assert len(passes) >= stream.passes >= 5  # one GPU call per pass
    assert all(len(s) <= len(samples) for _, s, _ in passes)

    settings = replace(zoo_service.settings, data_dir=tmp_path,
                       arena_models=("faster-whisper/tiny.en", "transformers/whisper-tiny.en"))  # fmt: skip
    issued = Arena(zoo_service, settings).battle("", load_audio(str(clips[1].path)), options)
    assert issued.battle.result_a.text and issued.battle.result_b.text
    before = len(passes)
    called = {v[0].key for v in [v for kind, v in crossings if kind == "args"][before:]}
    assert called == set(settings.arena_models)
    for _, value in crossings:
        _round_trip(value)


def _forked_worker(args_pickle: bytes, out) -> None:
    """ZeroGPU's worker in miniature: unpickle the call, run it, send each item back pickled."""
    ref, samples, options = pickle.loads(args_pickle)
    try:
        out.send_bytes(pickle.dumps(("ok", list(gpu._run_engine(ref, samples, options)))))
    except BaseException as exc:
        out.send_bytes(pickle.dumps(("error", repr(exc))))


def test_a_worker_process_loads_its_own_copy_from_the_ref(zoo_service, clips):
    """On ZeroGPU the call loads the model inside the worker (load_in_call): here, on the CPU, in
    another process, from nothing but the pickled EngineRef, samples and options. Spawned, not
    forked as ZeroGPU does: a fork of this test process (torch's and CTranslate2's thread pools
    already running) hung in CTranslate2; ZeroGPU forks before any model runs in the app."""
    from explorer.audio import load_audio

    audio = load_audio(str(clips[0].path))
    with zoo_service.checkout("faster-whisper/tiny.en") as (model, _):
        ref = dataclasses.replace(model.ref, load_in_call=True, instance=-1)
        expected = list(gpu._run_engine(model.ref, audio.samples, TranscribeOptions(language="en")))
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_forked_worker, args=(pickle.dumps((ref, audio.samples, TranscribeOptions(language="en"))), send))
    proc.start()
    assert receive.poll(300), "the worker sent nothing back"
    status, items = pickle.loads(receive.recv_bytes())
    proc.join(60)
    assert status == "ok", items
    assert [s.text for s in items if hasattr(s, "start")] == [s.text for s in expected if hasattr(s, "start")]


# -- one list of Debian packages; the Dockerfile --------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)]


def test_every_copy_source_exists():
    copies = [args for op, args in _dockerfile() if op == "COPY"]
    assert copies
    for args in copies:
        *sources, _dest = [a for a in shlex.split(args) if not a.startswith("--")]
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"


def test_image_installs_packages_txt_and_requirements_as_a_space_does():
    runs = " ".join(args for op, args in _dockerfile() if op == "RUN")
    assert "packages.txt" in runs and "apt-get install" in runs  # the one list, read from the file
    assert "pip install" in runs and "-r requirements.txt" in runs
    assert "npm" not in runs  # the app fetches the browser assets itself, as on a Space
    make = subprocess.run(["make", "-n", "system"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for pkg in (ROOT / "packages.txt").read_text().split():
        assert f" {pkg} " in make  # the Makefile installs packages.txt's list too


def test_what_the_first_start_fetches_and_every_store_live_on_the_data_volume():
    """Models, jobs, the Hub cache and the browser assets are all under the image's VOLUME: a new
    container on the same volume fetches nothing again and loses no job."""
    ops = _dockerfile()
    (volume,) = [args for op, args in ops if op == "VOLUME"]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for op, args in ops if op == "ENV")))
    for name in ("MODELS_DIR", "DATA_DIR", "HF_HOME", "BROWSER_ASSETS_DIR"):
        assert env[name].startswith(volume.strip() + "/"), (name, env.get(name))
    assert Settings.from_env(env).browser_assets_dir == Path(env["BROWSER_ASSETS_DIR"])  # the app reads that name


def _front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README.md has no front matter"
    block = text.split("---\n", 2)[1]
    return {k.strip(): v.strip().strip('"') for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line)}


def test_front_matter_names_the_pinned_gradio_and_the_images_python():
    """A Gradio SDK Space installs the gradio of sdk_version and the Python of python_version:
    the same gradio as requirements.txt pins and the same Python as the Docker image."""
    meta = _front_matter()
    assert meta["sdk"] == "gradio" and (ROOT / meta["app_file"]).is_file(), meta
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().split() if "==" in line)
    assert meta["sdk_version"] == pins["gradio"], (meta["sdk_version"], pins["gradio"])
    base = next(args for op, args in _dockerfile() if op == "FROM")
    assert re.fullmatch(r"python:(\d+\.\d+)-slim", base)[1] == meta["python_version"], (base, meta["python_version"])


def test_gpu_check_runs_every_cuda_path_and_refuses_without_a_gpu():
    """bench/gpu_check.sh cannot run here (no GPU): its script parses, it runs bench/bench_gpu.py,
    which names the four CUDA paths of the deploy notes, and without CUDA that says so and exits 2
    rather than printing CPU figures as GPU ones."""
    import torch

    subprocess.run(["bash", "-n", str(ROOT / "bench/gpu_check.sh")], check=True)
    assert "bench/bench_gpu.py" in (ROOT / "bench/gpu_check.sh").read_text()
    doc = (ROOT / "bench/bench_gpu.py").read_text()
    for path in ("float16", "transformers Whisper on CUDA", "Eviction by memory", "Batch speed-up"):
        assert path in doc, path
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run bench/gpu_check.sh itself")
    run = subprocess.run([sys.executable, "bench/bench_gpu.py", "--files", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no GPU to measure" in run.stderr, (run.returncode, run.stderr[-2000:])


def test_the_image_cmd_starts_the_app_in_the_venv(tmp_path):
    """The CMD's command, run with this venv's python and a short timeout, starts the app."""
    cmd = [json for op, json in _dockerfile() if op == "CMD"][-1]
    argv = __import__("json").loads(cmd)
    assert argv[0] == "python", argv
    from tests.running_app import free_port

    port = free_port()
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "PORT": str(port),
           "MODELS_DIR": str(default_models_dir()), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "DATA_DIR": str(tmp_path / "data"), "BROWSER_ASSETS_DIR": str(ROOT / "custom_components/browser_asr/node_modules")}  # fmt: skip
    if first_start_needed(env):
        pytest.skip("the zoo or the browser assets are not prepared here (make setup)")
    proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = wait_health(f"http://127.0.0.1:{port}/", proc, 120)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert status == "ok", out[-2000:]


def first_start_needed(env: dict) -> bool:
    from explorer import first_start

    return bool(first_start.needed(Settings.from_env(env)))


def wait_health(url: str, proc: subprocess.Popen, timeout: float, seen: list | None = None) -> str | None:
    from gradio_client import Client

    deadline, status = time.time() + timeout, None
    while time.time() < deadline and proc.poll() is None:
        try:
            status = Client(url, verbose=False).predict(api_name="/health")["status"]
        except Exception:  # not up yet, or the placeholder giving way to the app
            status = None
        if status and seen is not None and (not seen or seen[-1] != status):
            seen.append(status)
        if status == "ok":
            return status
        time.sleep(1)
    return status


def test_space_check_imports_only_names_that_exist():
    """`make space-check` is too long for `make test`, so a rename in the test helpers it borrows
    (as when tests/browser_page.py took over Page and ARGS) would break it unseen: every name it
    imports, inside its functions too, must exist."""
    import ast
    import importlib

    tree = ast.parse((ROOT / ".ci/space_check.py").read_text())
    imported = [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module and node.module.split(".")[0] in ("tests", "explorer") for alias in node.names]  # fmt: skip
    assert any(n == "Page" for _, n in imported), imported  # the Browser tab check's helper is found
    missing = [f"{m}.{n}" for m, n in imported if not hasattr(importlib.import_module(m), n)]
    assert missing == [], missing


# -- the first start, end to end (the bounded slice of `make space-check`) -------------------------
def test_first_start_prepares_behind_a_preparing_page_then_serves(tmp_path, clips):
    """Empty HOME, a models folder lacking tiny.en's CTranslate2 model and an empty assets folder:
    the app answers "preparing", builds the model and fetches the npm tarballs (from the npm
    registry, sha512-checked against the lockfile) itself, then serves /transcribe."""
    source = default_models_dir()
    if not all(zoo.local_weights(n, source) for n in zoo.MODELS):
        pytest.skip("needs the zoo prepared by `make` to copy from")
    models = tmp_path / "models"
    models.mkdir()
    for name in zoo.MODELS:
        if name != "whisper-tiny.en-ct2":  # the rest, hard-linked: the slice builds one model
            subprocess.run(["cp", "-al", str(source / name), str(models / name)], check=True)
    from tests.running_app import free_port

    port = free_port()
    assets = tmp_path / "assets" / "node_modules"
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path / "home"), "PORT": str(port),
           "MODELS_DIR": str(models), "BROWSER_ASSETS_DIR": str(assets), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    (tmp_path / "home").mkdir()
    log = tmp_path / "app.log"
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        seen: list = []
        status = wait_health(url, proc, 600, seen)
        assert status == "ok" and seen[0] == "preparing", (seen, log.read_text()[-3000:])
        assert zoo.verify("whisper-tiny.en-ct2", models)
        from gradio_browser_asr import assets_missing

        assert assets_missing(assets) is None
        from gradio_client import Client, handle_file

        result = Client(url, verbose=False).predict(handle_file(str(clips[0].path)), "faster-whisper/tiny.en", api_name="/transcribe")
        from explorer.scoring import score

        assert score(clips[0].reference, result["text"]).wer <= 0.15, result["text"]
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "whisper-tiny.en-ct2: building" in text and "sha512 matches the lockfile" in text


def test_the_preparing_page_shows_no_server_path_and_prepare_on_start_can_be_off():
    from explorer import first_start

    progress = first_start.Progress(["model zoo"])
    progress.log("whisper-tiny.en-ct2 <- /root/.cache/open-asr-explorer/models/x.bin")
    assert progress.lines == ["whisper-tiny.en-ct2 <- a folder on this server"]
    assert Settings.from_env({}).prepare_on_start
    off = Settings.from_env({"PREPARE_ON_START": "0"})
    assert not off.prepare_on_start and first_start.run(off) is None  # serves at once, prepares nothing

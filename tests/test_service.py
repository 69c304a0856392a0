"""The service with the real faster-whisper engine on the real packaged weights and real speech."""

import time
from dataclasses import replace

import numpy as np
import pytest

from explorer import catalog
from explorer.audio import Audio
from explorer.scoring import corpus_wer
from explorer.service import ModelError, ModelService
from explorer.types import Segment, TranscribeOptions

TINY = "faster-whisper/tiny.en"
BASE = "faster-whisper/base"


def audio(samples: np.ndarray) -> Audio:
    return Audio(samples.astype(np.float32), (), 16000, 1)


@pytest.mark.parametrize("key", [TINY, BASE])
def test_packaged_models_transcribe_librivox_under_10_percent_wer(service, clips, key):
    hyps = [service.transcribe(key, audio(c.samples), TranscribeOptions(beam_size=5)).text for c in clips]
    score = corpus_wer([c.reference for c in clips], hyps)
    assert score.reference_words == 71
    assert score.wer <= 0.10, (score, hyps)


def test_metrics_on_a_real_streaming_run(service, long_speech):
    service.preload(TINY)
    updates = list(service.stream(TINY, audio(long_speech), TranscribeOptions()))
    result = updates[-1].result
    m = result.metrics
    assert all(u.result is None for u in updates[:-1])
    assert len(result.segments) >= 3 and m.emissions == len(result.segments) and m.itl_unit == "segment"
    # TTFT is the time of the first segment, well before the end of processing
    first = next(u.elapsed for u in updates if isinstance(u.emission, Segment))
    assert m.ttft_seconds == first and m.streamed
    assert m.audio_seconds == pytest.approx(len(long_speech) / 16000)
    assert m.load_seconds == 0.0  # preloaded: load time is reported apart, never in TTFT
    # the streamed text grows to the final transcript
    assert updates[-2].text == result.text and len(updates[0].text) < len(result.text)


def test_a_cold_calls_processing_excludes_the_model_load(offline_settings, long_speech):
    """The first call loads the model: its load is reported apart, and its processing is that of
    a warm call (within 30 %), so a load leaking into processing (or RTFx) would show here."""
    fresh = ModelService(offline_settings, online=False)
    clip = audio(long_speech)
    cold = fresh.transcribe(TINY, clip).metrics
    warm = [fresh.transcribe(TINY, clip).metrics for _ in range(3)]
    assert cold.load_seconds > 0 and all(w.load_seconds == 0.0 for w in warm)
    # Within 30 % of the warm runs' range (the machine's noise shows in that range): a load of
    # ~0.6 s leaking into ~1.2 s of processing would be +50 %.
    seconds = [w.processing_seconds for w in warm]
    assert 0.7 * min(seconds) <= cold.processing_seconds <= 1.3 * max(seconds), (cold, warm)


def _read(updates, pause: float):
    """Read a stream as a UI would, spending `pause` seconds on each update (posting it)."""
    for update in updates:
        if update.result is not None:
            return update.result.metrics
        time.sleep(pause)


def test_a_slow_reader_does_not_change_the_timing(service, long_speech):
    """Emission times belong to the producer: reading a token stream (transformers tiny.en, 27 s
    of speech, 85 tokens) while sleeping 50 ms per update leaves processing and ITL where reading
    it at once puts them. Timed at the reader, the sleeps would be billed to them: ~4.2 s more
    processing (the reader-timed code gave 5.1 s against 2.7 s) and ~50 ms per token. Each may
    rise by a quarter of that bias at most, well above this machine's noise (CI saw processing
    +7 % and TTFT +45 ms between two best-of-5 sets) and well below the bias.
    TTFT is only held to the producer's noise (25 %): the first update is read before any pause,
    so reader timing would not show in it.
    One-sided, because the other direction is real and not a timing error: a reader that wakes
    for every token competes with the engine's threads for the GIL and the 2 cores, and the
    engine then runs up to ~7 % slower than under a sleeping reader (measured in CI: 2.50 s
    against 2.34 s). Each figure is the best of 5 alternating runs: noise only adds time, and the
    bias looked for would show in every run, the best included."""
    key = "transformers/whisper-tiny.en"
    pause = 0.05
    clip, options = audio(long_speech), TranscribeOptions(language="en")
    service.transcribe(key, clip, options)  # warm-up (load, first-call allocations)
    fast, slow = [], []
    for _ in range(5):
        fast.append(_read(service.stream(key, clip, options), 0.0))
        slow.append(_read(service.stream(key, clip, options), pause))
    tokens = min(m.emissions for m in fast)
    assert tokens >= 50  # enough tokens for 50 ms each to matter
    best = lambda name: [min(getattr(m, name) for m in runs) for runs in (fast, slow)]  # noqa: E731
    allowed = {"processing_seconds": 0.25 * tokens * pause, "itl_seconds": 0.25 * pause}
    allowed["ttft_seconds"] = 0.25 * best("ttft_seconds")[0]
    for name, extra in allowed.items():
        a, b = best(name)
        assert b <= a + extra, (name, a, b, extra, fast, slow)


def test_beam_search_token_runs_report_no_streaming_figures(service, clips):
    """transformers cannot stream beam search: every token comes at the end, so TTFT and ITL
    would only look like streaming; they are absent and the run says it was not streamed."""
    m = service.transcribe("transformers/whisper-tiny.en", audio(clips[1].samples), TranscribeOptions(beam_size=2)).metrics
    assert not m.streamed and m.ttft_seconds is None and m.itl_seconds is None
    assert m.emissions > 3 and m.rtfx is not None
    segments = service.transcribe(TINY, audio(clips[1].samples), TranscribeOptions(beam_size=2)).metrics
    assert segments.streamed and segments.ttft_seconds is not None  # faster-whisper's segments still stream


def test_results_record_their_run_environment(service, clips):
    result = service.transcribe(TINY, audio(clips[1].samples))
    env = result.environment
    assert env is not None and env.engine == "faster-whisper" and env.device == "cpu" and env.compute_type == "int8"
    assert env.threads == service.settings.cpu_threads and "ctranslate2" in env.libraries and env.cpu
    assert f"{env.threads} threads" in env.label()
    assert result.to_dict()["environment"]["threads"] == env.threads  # saved in every export


@pytest.mark.parametrize(
    "name, samples",
    [
        ("zero samples", np.zeros(0)),
        ("one sample", np.zeros(1)),
        ("silence", np.zeros(16000 * 5)),
        ("tone", 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000 * 5) / 16000)),
        ("noise", np.random.default_rng(0).normal(0, 0.05, 16000 * 5)),
    ],
)
def test_no_speech_gives_an_empty_transcript(service, name, samples):
    result = service.transcribe(TINY, audio(samples))
    assert result.text == "", name
    assert result.segments == ()


def test_english_only_model_ignores_other_language_with_a_warning(service, clips):
    result = service.transcribe(TINY, audio(clips[1].samples), TranscribeOptions(language="de", task="translate"))
    assert result.language == "en"
    assert any("language 'de' ignored" in w for w in result.warnings)
    assert any("translate ignored" in w for w in result.warnings)


def test_multilingual_model_detects_language_and_rejects_unknown(service, clips):
    result = service.transcribe(BASE, audio(clips[1].samples))
    assert result.language == "en"
    with pytest.raises(ValueError, match="does not support language 'xx'"):
        service.transcribe(BASE, audio(clips[1].samples), TranscribeOptions(language="xx"))


def test_lru_evicts_least_recently_used(offline_settings, clips):
    one = ModelService(replace(offline_settings, max_loaded_models=1), online=False)
    one.transcribe(TINY, audio(clips[1].samples))
    one.transcribe(BASE, audio(clips[1].samples))
    assert [m["key"] for m in one.health()["loaded_models"]] == [BASE]


def test_unavailable_and_failing_models_give_clear_errors(offline_settings, tmp_path, clips):
    svc = ModelService(offline_settings, online=False)
    with pytest.raises(ModelError, match="unavailable: offline"):
        svc.transcribe("faster-whisper/small", audio(clips[1].samples))
    # A model folder without weights: the load fails, /health says which and why.
    svc.availability[TINY] = catalog.Availability("ready", "test", str(tmp_path))
    with pytest.raises(ModelError, match="failed to load"):
        svc.transcribe(TINY, audio(clips[1].samples))
    assert TINY in svc.health()["failed_models"]
    assert svc.health()["status"] == "ok"


def test_download_reports_progress_then_runs(offline_settings, clips, monkeypatch, tmp_path):
    """The Hub download is mocked (no network here): snapshot_download is replaced by a copy of
    the packaged tiny.en that drives the tqdm class the service passes, as the real one does."""
    import shutil

    import huggingface_hub

    from explorer import zoo

    calls = {}

    def fake_snapshot_download(repo_id, token=None, tqdm_class=None, local_files_only=False, **kwargs):
        if local_files_only:  # nothing in the local cache, as on a first run
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        calls["repo"], calls["token"] = repo_id, token
        src = zoo.local_weights("whisper-tiny.en-ct2", offline_settings.models_dir)
        dest = tmp_path / "snapshot"
        files = sorted(p for p in src.iterdir())
        bar = tqdm_class(total=len(files), desc="Fetching files")
        dest.mkdir()
        for f in files:
            shutil.copy(f, dest / f.name)
            bar.update(1)
        bar.close()
        return str(dest)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    svc = ModelService(replace(offline_settings, hf_token="hf_test"), online=True)
    key = "faster-whisper/small"
    assert svc.availability[key].status == "downloadable"
    seen = []
    result = svc.transcribe(key, audio(clips[1].samples), progress=lambda frac, desc: seen.append((frac, desc)))
    assert calls == {"repo": "Systran/faster-whisper-small", "token": "hf_test"}
    fractions = [f for f, _ in seen if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("loading" in d for _, d in seen)
    assert result.text and result.metrics.load_seconds > 0


class _IdleEngine:
    """Stands in for a model resident on a GPU, which this machine does not have."""

    emits = "segment"

    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_gpu_memory_cap_evicts_idle_models_first(offline_settings, monkeypatch):
    """No GPU here: the memory reading is mocked; the eviction policy is the real one."""
    import torch

    from explorer import service as service_module
    from explorer.environment import describe
    from explorer.service import LoadedModel

    svc = ModelService(replace(offline_settings, max_loaded_models=8, gpu_memory_utilization=0.5), online=False)
    old, busy, recent = _IdleEngine(), _IdleEngine(), _IdleEngine()
    env = describe("faster-whisper", "cuda", "float16", 1)
    svc._loaded["old"] = LoadedModel("old", old, "cuda", 1.0, env)
    svc._loaded["busy"] = LoadedModel("busy", busy, "cuda", 1.0, env, in_use=1)
    svc._loaded["recent"] = LoadedModel("recent", recent, "cuda", 1.0, env)
    usage = iter([0.9, 0.7, 0.4])  # falls as models are evicted
    monkeypatch.setattr(service_module, "gpu_used_fraction", lambda: next(usage))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    svc._evict(reserve_gpu=True)
    assert old.closed and recent.closed and not busy.closed
    assert list(svc._loaded) == ["busy"]


def test_engines_without_their_own_vad_are_gated_on_silence(service):
    """transformers Whisper (the rebuilt tiny.en) has no VAD: the service's Silero gate answers."""
    result = service.transcribe("transformers/whisper-tiny.en", audio(np.zeros(16000 * 3)))
    assert result.text == "" and any("no speech detected" in w for w in result.warnings)


def test_check_decides_model_and_options_before_anything_runs(service):
    """One place decides whether a request can run: unknown and unavailable models are
    ModelErrors, options a model cannot take ValueErrors, ignored options warnings."""
    spec, options, warnings = service.check(TINY, TranscribeOptions(language="de", task="translate"))
    assert spec.key == TINY and options.language == "en" and options.task == "transcribe" and len(warnings) == 2
    with pytest.raises(ModelError, match="unknown model 'no/such'"):
        service.check("no/such")
    offline_hub_model = next(m.key for m in catalog.MODELS if service.availability[m.key].status == "unavailable")
    with pytest.raises(ModelError, match="is unavailable"):
        service.check(offline_hub_model)
    with pytest.raises(ValueError, match="does not support language 'xx'"):
        service.check(BASE, TranscribeOptions(language="xx"))


def test_decode_applies_the_settings_limits(offline_settings, clips, tmp_path):
    small = ModelService(replace(offline_settings, max_upload_mb=0.01, max_audio_seconds=2.0), online=False)
    from explorer.audio import AudioError

    with pytest.raises(AudioError, match="MB"):
        small.decode(str(clips[0].path))  # larger than 10 kB
    with pytest.raises(AudioError, match="MAX_AUDIO_SECONDS"):
        small.decode(np.zeros(16000 * 3, dtype=np.float32))
    assert small.decode(np.zeros(16000, dtype=np.float32)).duration == pytest.approx(1.0)

"""Availability rules. The Hub cannot be reached here, so 'online' is the one thing simulated
(passed as online=True); everything else is the real check against the real cache and packages."""

import time
from dataclasses import replace

from explorer import catalog
from explorer.config import Settings


def test_every_model_is_declared_once_with_its_facts():
    keys = [m.key for m in catalog.MODELS]
    assert len(keys) == len(set(keys))
    engines = {m.engine for m in catalog.MODELS}
    assert engines == {"faster-whisper", "transformers", "onnx", "granite", "cohere", "qwen-asr"}
    cohere = catalog.get("cohere/cohere-transcribe-03-2026")
    assert cohere.gated and cohere.trust_remote_code
    assert catalog.get("faster-whisper/tiny.en").languages == ("en",)
    assert "de" in catalog.get("faster-whisper/base").languages


def test_offline_packaged_models_are_ready_and_hub_models_say_why_not(offline_settings):
    avail = catalog.check_all(offline_settings)
    assert avail["faster-whisper/tiny.en"].status == "ready"
    assert avail["faster-whisper/base"].status == "ready"
    for key in ("onnx/whisper-tiny.en", "onnx/whisper-tiny.en-q8", "onnx/whisper-base", "onnx/whisper-base-q8"):
        assert avail[key].status == "ready", (key, avail[key].reason)
    # the same weights rebuilt as transformers checkpoints by the zoo
    for size, entry in (("tiny.en", "whisper-tiny.en-hf"), ("base", "whisper-base-hf")):
        key = f"transformers/whisper-{size}"
        assert avail[key].status == "ready" and avail[key].weights == str(offline_settings.models_dir / entry)
        assert "converted offline" in catalog.get(key).source
    small = avail["faster-whisper/small"]
    assert small.status == "unavailable" and "offline" in small.reason
    assert avail["qwen-asr/Qwen3-ASR-0.6B"].status == "unavailable"


def test_unprepared_packaged_model_points_to_prepare(tmp_path):
    avail = catalog.availability(catalog.get("faster-whisper/base"), Settings(models_dir=tmp_path), online=False)
    assert avail.status == "unavailable" and "explorer.zoo prepare" in avail.reason


def test_online_rules_for_gated_and_remote_code(offline_settings):
    spec = catalog.get("cohere/cohere-transcribe-03-2026")
    no_token = catalog.availability(spec, offline_settings, online=True)
    assert no_token.status == "unavailable" and "HF_TOKEN" in no_token.reason
    with_token = catalog.availability(spec, replace(offline_settings, hf_token="hf_x"), online=True)
    assert with_token.status == "downloadable" and with_token.weights == spec.hub_repo
    not_allowed = replace(offline_settings, hf_token="hf_x", remote_code_allowlist=())
    refused = catalog.availability(spec, not_allowed, online=True)
    assert refused.status == "unavailable" and "trust_remote_code" in refused.reason
    small = catalog.availability(catalog.get("faster-whisper/small"), offline_settings, online=True)
    assert small.status == "downloadable" and "484 MB" in small.reason


def test_hub_check_does_not_hang_offline():
    start = time.perf_counter()
    assert catalog.hub_reachable(Settings(hub_timeout_seconds=2)) is False  # no route to the Hub here
    assert time.perf_counter() - start < 5
    assert catalog.hub_reachable(Settings(offline=True)) is False


def test_settings_from_env_use_the_original_names(tmp_path):
    s = Settings.from_env(
        {"WHISPER_MODEL": "faster-whisper/base", "NUM_WORKERS": "3", "GPU_MEMORY_UTILIZATION": "0.5",
         "HF_TOKEN": "hf_abc", "MODELS_DIR": str(tmp_path), "PORT": "8000", "HOST": "0.0.0.0"}
    )
    assert (s.default_model, s.num_workers, s.gpu_memory_utilization) == ("faster-whisper/base", 3, 0.5)
    assert (s.hf_token, s.models_dir, s.port, s.host) == ("hf_abc", tmp_path, 8000, "0.0.0.0")
    import pytest

    with pytest.raises(ValueError, match="NUM_WORKERS"):
        Settings.from_env({"NUM_WORKERS": "many"})
    with pytest.raises(ValueError, match="GPU_MEMORY_UTILIZATION"):
        Settings.from_env({"GPU_MEMORY_UTILIZATION": "2"})


def test_an_engine_missing_a_package_says_which(offline_settings, monkeypatch):
    from explorer.engines import ENGINE_PACKAGES

    monkeypatch.setitem(ENGINE_PACKAGES, "qwen-asr", ("qwen_asr", "no_such_package_here"))
    qwen = catalog.availability(catalog.get("qwen-asr/Qwen3-ASR-0.6B"), offline_settings, online=True)
    assert qwen.status == "unavailable" and qwen.reason == "Python package no_such_package_here is not installed"


def test_granite_is_a_hub_model_like_the_others_torchaudio_or_not(tmp_path):
    """Its feature extractor falls back to explorer/engines/granite_features.py without torchaudio."""
    spec = catalog.get("granite/granite-4.0-1b-speech")
    settings = Settings(models_dir=tmp_path, offline=True)
    assert catalog.availability(spec, settings, online=True).status == "downloadable"
    offline = catalog.availability(spec, settings, online=False)
    assert offline.status == "unavailable" and offline.reason.startswith("offline")


def test_only_multilingual_whisper_translates():
    assert catalog.get("faster-whisper/base").translates
    assert not catalog.get("faster-whisper/tiny.en").translates
    assert not catalog.get("qwen-asr/Qwen3-ASR-0.6B").translates


def test_onnx_entries_download_only_their_own_graphs():
    q8 = catalog.get("onnx/whisper-base-q8")
    assert q8.hub_repo == "onnx-community/whisper-base"
    assert "onnx/decoder_model_merged_quantized.onnx*" in q8.hub_files
    assert not any(p.startswith("onnx/") and "quantized" not in p for p in q8.hub_files)

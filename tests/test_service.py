"""The service with the real faster-whisper engine on the real packaged weights and real speech."""

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
    assert m.ttft_seconds == first
    assert 0 < m.ttft_seconds < 0.8 * m.processing_seconds
    assert m.rtfx == pytest.approx(m.audio_seconds / m.processing_seconds)
    assert m.audio_seconds == pytest.approx(len(long_speech) / 16000)
    assert m.load_seconds == 0.0  # preloaded: load time is reported apart, never in TTFT
    # the streamed text grows to the final transcript
    assert updates[-2].text == result.text and len(updates[0].text) < len(result.text)


def test_load_time_is_reported_separately(offline_settings, clips):
    fresh = ModelService(offline_settings, online=False)
    first = fresh.transcribe(TINY, audio(clips[1].samples))
    second = fresh.transcribe(TINY, audio(clips[1].samples))
    assert first.metrics.load_seconds > 0 and second.metrics.load_seconds == 0.0
    assert first.metrics.ttft_seconds < first.metrics.processing_seconds + 1e-9


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

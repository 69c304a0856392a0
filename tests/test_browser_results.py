"""What the server keeps of a browser run (explorer/ui/widgets.py `checked`), and the app's
cross-origin isolation setting: pure checks, no browser (tests/test_browser.py drives one)."""

from __future__ import annotations

import math

import pytest

from explorer.config import Settings
from explorer.ui.widgets import MAX_EVENTS, checked


def result(**extra) -> dict:
    return {"run_id": "abc123", "mode": "stream", "model": "browser/whisper-tiny.en", "device": "wasm",
            "text": "hello world", "metrics": {"rtfx": 1.5, "device": "wasm", "threads": 2}, **extra}  # fmt: skip


def test_the_device_is_kept_inside_metrics_and_events_pass_through():
    clean = checked(result(events=[[1.5, 0.8, "hello"], [2, 1, "world"]]))
    assert clean["metrics"]["device"] == "wasm" and clean["metrics"]["threads"] == 2.0
    assert clean["events"] == [[1.5, 0.8, "hello"], [2.0, 1.0, "world"]]
    assert checked(result(device="webgpu"))["metrics"]["device"] == "webgpu"
    assert checked(result(device="quantum"))["device"] == "wasm"  # only the two devices there are
    assert checked(result())["events"] == []  # a file run has none


def test_a_device_claimed_inside_the_metrics_is_the_results_own():
    clean = checked({"run_id": "abc123", "mode": "stream", "device": "webgpu", "metrics": {"rtfx": 2.0, "device": "evil"}})
    assert clean["device"] == "webgpu" and clean["metrics"] == {"rtfx": 2.0, "device": "webgpu"}
    assert checked({"run_id": "x1", "device": "cuda?"})["metrics"]["device"] == "wasm"  # only the two it can be


@pytest.mark.parametrize(
    "events, message",
    [
        ("1,2,word", "must be a list"),
        ([[1.0, 2.0]], "is not \\[emission_seconds"),
        ([[math.nan, 2.0, "w"]], "finite numbers"),
        ([[1.0, math.inf, "w"]], "finite numbers"),
        ([["1", 2.0, "w"]], "finite numbers"),
        ([[True, 2.0, "w"]], "finite numbers"),
        ([[1.0, 2.0, "w" * 65]], "at most 64 characters"),
        ([[1.0, 2.0, 7]], "at most 64 characters"),
        ([[1.0, 1.0, "w"]] * (MAX_EVENTS + 1), "too many events"),
    ],
)
def test_malformed_or_oversized_events_are_refused_with_the_reason(events, message):
    with pytest.raises(ValueError, match=message):
        checked(result(events=events))


def test_a_full_hour_of_words_fits():
    assert len(checked(result(events=[[1.0, 0.5, "word"]] * MAX_EVENTS))["events"]) == MAX_EVENTS


@pytest.mark.parametrize(
    "raw, policy",
    [("", "credentialless"), ("1", "credentialless"), ("on", "credentialless"), ("credentialless", "credentialless"),
     ("require-corp", "require-corp"), ("0", "off"), ("off", "off"), ("false", "off")],
)  # fmt: skip
def test_cross_origin_isolation_setting(raw, policy):
    assert Settings.from_env({"CROSS_ORIGIN_ISOLATION": raw} if raw else {}).cross_origin_isolation == policy


def test_an_unknown_isolation_policy_is_refused():
    with pytest.raises(ValueError, match="CROSS_ORIGIN_ISOLATION must be"):
        Settings.from_env({"CROSS_ORIGIN_ISOLATION": "same-site"})


def test_the_components_pacing_bounds_must_nest():
    from gradio_browser_asr import BrowserASR, BrowserModel

    model = BrowserModel("tiny", "onnx-community/whisper-tiny.en", "Whisper tiny.en")
    with pytest.raises(ValueError, match="min_chunk_seconds <= trim_seconds <= max_buffer_seconds"):
        BrowserASR([model], trim_seconds=15, max_buffer_seconds=10)
    with pytest.raises(ValueError, match="min_chunk_seconds"):
        BrowserASR([model], min_chunk_seconds=0)
    for name in ("anchor_seconds", "max_unconfirmed_seconds"):
        for bad in (0, -1.0, float("inf"), float("nan")):
            with pytest.raises(ValueError, match=f"{name} must be None or a positive number"):
                BrowserASR([model], **{name: bad})


def test_the_streaming_policy_reaches_the_page_and_can_be_whisper_streamings():
    """The anchor and the lag bound are the component's defaults; None turns each off (the page
    then runs LocalAgreement-2 as whisper_streaming does)."""
    from gradio_browser_asr import BrowserASR, BrowserModel

    model = BrowserModel("tiny", "onnx-community/whisper-tiny.en", "Whisper tiny.en")
    config = BrowserASR([model]).props["config"]
    assert (config["anchor_seconds"], config["max_unconfirmed_seconds"]) == (1.5, 3.0)
    plain = BrowserASR([model], anchor_seconds=None, max_unconfirmed_seconds=None).props["config"]
    assert (plain["anchor_seconds"], plain["max_unconfirmed_seconds"]) == (None, None)


def test_local_browser_models_show_their_measured_streaming_wer(offline_settings):
    from explorer.ui.widgets import browser_models

    labels = {m.key: m.label for m in browser_models(offline_settings, wer={"browser/whisper-tiny.en-q8": 0.0412})}
    assert labels["browser/whisper-tiny.en-q8"].endswith("streaming WER 4.1 %")
    assert "WER" not in labels["browser/whisper-tiny.en"]  # not measured: nothing shown


def test_local_exports_offer_fp32_q8_and_the_mixed_streaming_graphs(offline_settings):
    from explorer.ui.widgets import browser_models

    tiny = {m.key: m for m in browser_models(offline_settings, wer={}) if m.local and m.id == "whisper-tiny.en-onnx"}
    assert sorted(tiny) == ["browser/whisper-tiny.en", "browser/whisper-tiny.en-q8", "browser/whisper-tiny.en-q8-encoder"]
    mixed = tiny["browser/whisper-tiny.en-q8-encoder"]
    # transformers.js takes one dtype per graph; the files exist for both precisions.
    assert mixed.dtype == {"encoder_model": "q8", "decoder_model_merged": "fp32"}
    onnx = offline_settings.models_dir / mixed.id / "onnx"
    assert (onnx / "encoder_model_quantized.onnx").is_file() and (onnx / "decoder_model_merged.onnx").is_file()
    assert "q8 encoder, fp32 decoder" in mixed.label


@pytest.mark.parametrize("policy", ["credentialless", "require-corp"])
def test_every_response_of_the_gradio_app_carries_the_isolation_headers(policy):
    import gradio as gr
    from fastapi.testclient import TestClient
    from gradio.routes import App

    from explorer.isolation import isolation_middleware

    with gr.Blocks() as demo:
        gr.Markdown("hello")
    client = TestClient(App.create_app(demo, app_kwargs={"middleware": isolation_middleware(policy)}))
    for path in ("/config", "/gradio_api/info", "/no-such-page"):  # the page itself: tests/test_browser.py
        response = client.get(path)
        assert response.headers["cross-origin-opener-policy"] == "same-origin", path
        assert response.headers["cross-origin-embedder-policy"] == policy, path
    assert isolation_middleware("off") == []
    plain = TestClient(App.create_app(demo, app_kwargs={"middleware": isolation_middleware("off")}))
    assert "cross-origin-embedder-policy" not in plain.get("/config").headers


def test_kept_results_are_bounded_in_count_and_in_events():
    from explorer.ui.widgets import BrowserResults

    results = BrowserResults(limit=3, max_events=5)
    for n in range(4):
        results.add(result(run_id=f"r{n}", events=[[1.0, 0.5, "w"]] * 2))
    assert results.get("r0") is None and results.get("r1") is None  # 6 events > 5: the oldest went too
    assert results.get("r2") and results.get("r3")
    results.add(result(run_id="r3", events=[]))  # the same run again replaces it
    results.add(result(run_id="big", events=[[1.0, 0.5, "w"]] * 9))  # alone over the budget: kept, the rest go
    assert results.get("big") and results.get("r2") is None and results.get("r3") is None

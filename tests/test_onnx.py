"""Whisper exported to ONNX for transformers.js, and run in onnxruntime: real weights, real speech.

The real Whisper tiny.en (the packaged CTranslate2 weights, rebuilt as a transformers checkpoint
by the session's prepared cache, conftest ``models_dir``) is exported once per session with
``explorer.export_onnx`` into a temporary folder. The tests check the layout transformers.js loads
(file names per dtype, graph inputs it feeds), then transcribe the five LibriVox clips through the
ONNX engine in fp32 and q8: accuracy against the references, real token streaming, and fp32 writing
the same words as the PyTorch checkpoint it came from.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from explorer import zoo
from explorer.catalog import ModelSpec
from explorer.engines import onnx_whisper, streaming
from explorer.engines.base import LanguageInfo, Runtime
from explorer.export_onnx import ExportError, export_onnx, onnx_files
from explorer.scoring import corpus_wer
from explorer.types import SAMPLE_RATE, Segment, Token, TranscribeOptions

pytest.importorskip("optimum.onnxruntime")

WER_BOUND = {"fp32": 0.15, "q8": 0.30}  # measured: 7.0 % for both (5 errors in 71 words)


def _spec(dtype: str) -> ModelSpec:
    suffix = "" if dtype == "fp32" else f"-{dtype}"
    return ModelSpec(
        key=f"onnx/whisper-tiny.en{suffix}",
        name=f"Whisper tiny.en · ONNX {dtype}",
        engine="onnx",  # type: ignore[arg-type]
        hub_repo=None,
        languages=("en",),
    )


@pytest.fixture(scope="session")
def hf_checkpoint(models_dir) -> Path:
    folder = zoo.local_weights("whisper-tiny.en-hf", models_dir)
    assert folder is not None, "zoo.prepare did not build whisper-tiny.en-hf"
    return folder


@pytest.fixture(scope="session")
def exported(models_dir) -> Path:
    """The zoo's export of tiny.en (built by the session's zoo.prepare, pins checked there)."""
    folder = zoo.local_weights("whisper-tiny.en-onnx", models_dir)
    assert folder is not None, "zoo.prepare did not build whisper-tiny.en-onnx"
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")]  # no temporary left
    return folder


@pytest.fixture(scope="session")
def engines(exported):
    loaded = {dtype: onnx_whisper.load(_spec(dtype), str(exported), Runtime()) for dtype in WER_BOUND}
    yield loaded
    for engine in loaded.values():
        engine.close()


def _generation_running() -> bool:
    return any(t.name == streaming.THREAD_NAME and t.is_alive() for t in threading.enumerate())


def _ops(graph, counts: Counter, depth: int = 0) -> Counter:
    """Operator counts of a graph, keyed (op, depth): depth 1 is inside the merged decoder's If."""
    import onnx

    for node in graph.node:
        counts[node.op_type, depth] += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _ops(attr.g, counts, depth + 1)
    return counts


# -- the export ----------------------------------------------------------------------------------


def test_export_has_the_transformers_js_layout(exported, hf_checkpoint):
    import onnx

    top = sorted(p.name for p in exported.iterdir())
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
                 "tokenizer_config.json", "vocab.json", "merges.txt", "onnx"):
        assert name in top
    assert not [n for n in top if n.endswith(".onnx") or n.endswith(".safetensors")]
    graphs = sorted(p.name for p in (exported / "onnx").iterdir())
    # transformers.js: dtype fp32 -> no suffix, q8 -> "_quantized"; only the merged decoder
    assert graphs == sorted(Path(f).name for d in ("fp32", "q8") for f in onnx_files(d)) == [
        "decoder_model_merged.onnx", "decoder_model_merged_quantized.onnx",
        "encoder_model.onnx", "encoder_model_quantized.onnx",
    ]
    assert json.loads((exported / "config.json").read_text())["model_type"] == "whisper"
    assert json.loads((exported / "generation_config.json").read_text()) == json.loads(
        (hf_checkpoint / "generation_config.json").read_text()
    )

    size = {name: (exported / "onnx" / name).stat().st_size / 1e6 for name in graphs}
    print({k: f"{v:.1f} MB" for k, v in size.items()})
    assert 25 < size["encoder_model.onnx"] < 40 and 100 < size["decoder_model_merged.onnx"] < 210
    for name in ("encoder_model", "decoder_model_merged"):
        assert size[f"{name}_quantized.onnx"] < 0.35 * size[f"{name}.onnx"]

    # The names transformers.js feeds: encoder input_features -> last_hidden_state; the merged
    # decoder switches on use_cache_branch and takes/returns past_key_values.N / present.N.
    encoder = onnx.load(exported / "onnx/encoder_model.onnx", load_external_data=False)
    assert [i.name for i in encoder.graph.input] == ["input_features"]
    assert [o.name for o in encoder.graph.output] == ["last_hidden_state"]
    for suffix in ("", "_quantized"):
        decoder = onnx.load(exported / f"onnx/decoder_model_merged{suffix}.onnx", load_external_data=False)
        inputs = {i.name for i in decoder.graph.input}
        outputs = {o.name for o in decoder.graph.output}
        assert {"input_ids", "encoder_hidden_states", "use_cache_branch"} <= inputs
        for layer in range(4):  # tiny: 4 decoder layers
            for kind in ("decoder", "encoder"):
                assert f"past_key_values.{layer}.{kind}.key" in inputs
                assert f"present.{layer}.{kind}.value" in outputs
        assert "logits" in outputs

    # q8 reached inside the merged decoder's If branches (EnableSubgraph), not just the top graph
    ops = _ops(onnx.load(exported / "onnx/decoder_model_merged_quantized.onnx").graph, Counter())
    assert ops["MatMulInteger", 1] >= 40 and ops["MatMul", 1] < ops["MatMulInteger", 1]


def test_export_is_reproducible(exported, tmp_path):
    """A second export of the same checkpoint gives the same bytes as the zoo's pinned one."""
    import hashlib

    again = export_onnx(exported.parent / "whisper-tiny.en-hf", tmp_path / "again", log=lambda _: None)
    pinned = zoo.MODELS["whisper-tiny.en-onnx"].pinned
    sums = {name: hashlib.sha256((again / name).read_bytes()).hexdigest() for name in pinned}
    assert sums == pinned


def test_export_refuses_a_used_folder_and_leaves_nothing_on_failure(hf_checkpoint, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_onnx(hf_checkpoint, used, log=lambda _: None)
    assert [p.name for p in used.iterdir()] == ["keep.txt"]

    broken = tmp_path / "broken"  # every config, but no weights: optimum fails in the child
    broken.mkdir()
    for path in hf_checkpoint.iterdir():
        if path.suffix in (".json", ".txt"):
            (broken / path.name).write_bytes(path.read_bytes())
    out_parent = tmp_path / "models"
    out_parent.mkdir()
    with pytest.raises(ExportError, match="export of .* failed"):
        export_onnx(broken, out_parent / "broken-onnx", log=lambda _: None)
    assert list(out_parent.iterdir()) == []


# -- the engine ----------------------------------------------------------------------------------


def test_dtype_comes_from_the_key_suffix():
    assert onnx_whisper.dtype_of(_spec("fp32")) == "fp32"
    assert onnx_whisper.dtype_of(_spec("q8")) == "q8"
    turbo = ModelSpec(key="onnx/whisper-large-v3-turbo", name="t", engine="onnx", hub_repo=None)  # type: ignore[arg-type]
    assert onnx_whisper.dtype_of(turbo) == "fp32"


def test_loads_the_files_of_its_dtype(engines, exported):
    for dtype, engine in engines.items():
        encoder, decoder = (exported / f for f in onnx_files(dtype))
        assert Path(engine.model.encoder.session._model_path) == encoder
        assert Path(engine.model.decoder.session._model_path) == decoder
        assert engine.model.decoder.is_merged and engine.model.decoder_with_past is None
        assert engine.model.encoder.session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(FileNotFoundError, match="no fp16 ONNX Whisper"):
        onnx_whisper.load(_spec("fp16"), str(exported), Runtime())


def test_cuda_without_a_cuda_onnxruntime_falls_back_to_the_cpu(caplog):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with caplog.at_level("WARNING", logger="explorer.engines.onnx_whisper"):
        assert onnx_whisper.providers_for("cuda") == (["CPUExecutionProvider"], "cpu")
    assert "onnxruntime-gpu" in caplog.text
    assert onnx_whisper.providers_for("cpu") == (["CPUExecutionProvider"], "cpu")


@pytest.mark.parametrize("dtype", ["fp32", "q8"])
def test_transcribes_real_speech_streaming_tokens(dtype, engines, clips):
    engine = engines[dtype]
    hypotheses = []
    started = time.perf_counter()
    for clip in clips:
        audio = clip.samples
        events = [(time.perf_counter(), e, _generation_running()) for e in engine.transcribe(audio, TranscribeOptions())]
        ended = time.perf_counter()
        assert isinstance(events[0][1], LanguageInfo) and events[0][1].code == "en"
        tokens = [(t, e, running) for t, e, running in events if isinstance(e, Token)]
        segments = [e for _, e, _ in events if isinstance(e, Segment)]
        assert len(tokens) >= 3 and segments and isinstance(events[-1][1], Segment)
        # real streaming: the first token reached us while generate() was still decoding
        assert tokens[0][2], "the first token arrived only after generation ended"
        assert tokens[0][0] < tokens[-1][0] < ended
        duration = len(audio) / SAMPLE_RATE
        assert all(0.0 <= s.start <= s.end <= duration + 1e-6 for s in segments)
        text = "".join(s.text for s in segments)
        assert " ".join("".join(e.text for _, e, _ in tokens).split()) == " ".join(text.split())
        hypotheses.append(text)
    assert not _generation_running()
    score = corpus_wer([c.reference for c in clips], hypotheses)
    print(f"\nONNX {dtype}: WER {score.wer:.1%} ({score.substitutions} S, {score.deletions} D, "
          f"{score.insertions} I / {score.reference_words} words) in {time.perf_counter() - started:.1f} s")
    assert score.wer <= WER_BOUND[dtype]


def test_fp32_writes_what_the_pytorch_checkpoint_writes(engines, hf_checkpoint, clips):
    from explorer.engines import transformers_whisper

    spec = ModelSpec(key="transformers/whisper-tiny.en", name="t", engine="transformers", hub_repo=None)
    torch_engine = transformers_whisper.load(spec, str(hf_checkpoint), Runtime())
    try:
        for clip in clips[:2]:
            texts = [
                "".join(e.text for e in engine.transcribe(clip.samples, TranscribeOptions()) if isinstance(e, Segment))
                for engine in (torch_engine, engines["fp32"])
            ]
            assert texts[0] == texts[1]
    finally:
        torch_engine.close()


def test_long_form_audio(engines, long_speech, clips):
    """Over 30 s: transformers' sequential long-form decoding, driven through the ORT model."""
    import numpy as np

    audio = np.concatenate([long_speech, long_speech])
    duration = len(audio) / SAMPLE_RATE
    assert duration > 50
    segments = [e for e in engines["q8"].transcribe(audio, TranscribeOptions()) if isinstance(e, Segment)]
    assert segments[-1].end > 40 and all(s.end <= duration + 1e-6 for s in segments)
    score = corpus_wer([" ".join([c.reference for c in clips] * 2)], ["".join(s.text for s in segments)])
    assert score.wer <= WER_BOUND["q8"]

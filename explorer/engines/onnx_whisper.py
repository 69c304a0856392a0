"""Whisper exported to ONNX (transformers.js layout), run in onnxruntime through optimum.

The folder is what ``explorer.export_onnx`` writes, or an ``onnx-community/whisper-*`` snapshot:
configs and tokenizer at the top, graphs in ``onnx/``. optimum's ``ORTModelForWhisper`` wraps the
two onnxruntime sessions in a transformers ``GenerationMixin`` with Whisper's own ``generate``, so
the transformers engine's ``WhisperEngine`` runs it unchanged: the same token streaming, timestamps,
long-form decoding, language detection and options (see ``transformers_whisper``).

Precision is a catalog choice, named like transformers.js's ``dtype``: a spec key ending in
``-q8`` (e.g. ``onnx/whisper-tiny.en-q8``) loads ``*_quantized.onnx``; other suffixes it knows
(``-fp16``, ``-q4`` ...) load those files when a snapshot holds them; no suffix means fp32.

Execution provider: CUDA when the runtime asks for it and onnxruntime has it (the
``onnxruntime-gpu`` build), else the CPU, with a warning when CUDA was asked for.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.engines.base import Runtime
from explorer.export_onnx import DTYPE_SUFFIX, onnx_files

if TYPE_CHECKING:
    from explorer.catalog import ModelSpec
    from explorer.engines.transformers_whisper import WhisperEngine

log = logging.getLogger(__name__)

DEFAULT_DTYPE = "fp32"


def dtype_of(spec: "ModelSpec") -> str:
    """The transformers.js dtype a spec asks for: its key's last ``-`` part if it names one."""
    last = spec.key.rsplit("-", 1)[-1]
    return last if "-" in spec.key and last in DTYPE_SUFFIX else DEFAULT_DTYPE


def model_files(folder: Path, dtype: str) -> tuple[Path, Path]:
    """(encoder, merged decoder) paths for a dtype, checked to exist."""
    paths = tuple(folder / name for name in onnx_files(dtype))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no {dtype} ONNX Whisper in {folder}: missing {', '.join(missing)}")
    return paths  # type: ignore[return-value]


def providers_for(device: str) -> tuple[list[str], str]:
    """(onnxruntime providers, torch device of the inputs) for a runtime device."""
    import onnxruntime

    if device == "cuda":
        import torch

        # On CUDA optimum binds the session's inputs and outputs to torch tensors on the GPU
        # (IO binding), so torch must see the GPU too.
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            log.warning("onnxruntime has no CUDAExecutionProvider (the onnxruntime-gpu build): running on the CPU")
        elif not torch.cuda.is_available():
            log.warning("torch sees no CUDA device: running onnxruntime on the CPU")
        else:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"
    return ["CPUExecutionProvider"], "cpu"


def load_ort_whisper(folder: Path, dtype: str, providers: list[str], threads: int = 0):
    """optimum's ``ORTModelForWhisper`` on the given graphs.

    Built from its sessions rather than ``ORTModelForSpeechSeq2Seq.from_pretrained``: in
    optimum-onnx 0.1.0, naming a merged decoder file (``decoder_file_name``, needed to choose the
    q8 file over the fp32 one beside it) sends ``from_pretrained`` looking for a separate
    ``decoder_with_past`` graph, which the transformers.js layout does not have. The config set-up
    below is the one ``from_pretrained`` does.
    """
    import onnxruntime
    from optimum.onnxruntime.modeling_seq2seq import ORTModelForWhisper
    from transformers import AutoConfig, GenerationConfig

    encoder_path, decoder_path = model_files(folder, dtype)
    config = AutoConfig.from_pretrained(folder)
    if config.model_type != "whisper":
        raise ValueError(f"{folder} holds a {config.model_type} model, not Whisper")
    config.use_cache = True
    config.is_encoder_decoder = True
    config.is_decoder = False
    config._attn_implementation = "onnxruntime"
    generation_config = GenerationConfig.from_pretrained(folder)
    generation_config.use_cache = True

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (all physical cores)
    options.inter_op_num_threads = 1  # the graphs run sequentially; parallelism is intra-op
    sessions = [
        onnxruntime.InferenceSession(str(p), options, providers=providers) for p in (encoder_path, decoder_path)
    ]
    return ORTModelForWhisper(
        config=config,
        encoder_session=sessions[0],
        decoder_session=sessions[1],
        generation_config=generation_config,
        model_save_dir=folder,
    )


def load(spec: "ModelSpec", weights: str, runtime: Runtime) -> "WhisperEngine":
    from transformers import AutoProcessor

    from explorer.engines.transformers_whisper import WhisperEngine

    folder = Path(weights)
    providers, device = providers_for(runtime.device)
    model = load_ort_whisper(folder, dtype_of(spec), providers, runtime.cpu_threads)
    processor = AutoProcessor.from_pretrained(folder)
    return WhisperEngine(spec, model, processor, device, compute_type=dtype_of(spec))


__all__ = ["dtype_of", "load", "load_ort_whisper", "model_files", "providers_for"]

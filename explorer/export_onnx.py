"""Export a transformers Whisper checkpoint to ONNX, in the layout transformers.js loads.

The result is what the ``onnx-community/whisper-*`` repositories on the Hub hold::

    out_dir/
        config.json  generation_config.json  preprocessor_config.json
        tokenizer.json  tokenizer_config.json  vocab.json  merges.txt  ...   (tokenizer files)
        onnx/encoder_model.onnx                 onnx/decoder_model_merged.onnx             (fp32)
        onnx/encoder_model_quantized.onnx       onnx/decoder_model_merged_quantized.onnx   (q8)

transformers.js picks a file by ``dtype``: its ``DEFAULT_DTYPE_SUFFIX_MAPPING`` appends nothing
for ``fp32`` and ``_quantized`` for ``q8`` (the default on its wasm backend). Only the *merged*
decoder is kept (one graph that runs both the first step and the cached steps, switched by its
``use_cache_branch`` input): transformers.js and optimum's ``ORTModelForSpeechSeq2Seq`` both use it,
so the separate ``decoder_model.onnx`` / ``decoder_with_past_model.onnx`` optimum also writes are
dropped.

Export: ``optimum.exporters.onnx.main_export`` with task ``automatic-speech-recognition-with-past``
in float32 (optimum-onnx 0.1.0; it needs transformers < 4.58), run in a child Python with a fixed
hash seed so that the files are byte-reproducible (see ``_run_optimum_export``). Quantization: onnxruntime's
``quantize_dynamic`` to 8-bit weights (QUInt8). ``EnableSubgraph`` is required: the merged
decoder keeps its two branches in ``If`` subgraphs, which are otherwise left in float32.

Heavy imports (onnxruntime) happen inside the functions; torch and optimum's exporter are only
imported by the child process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Union

TASK = "automatic-speech-recognition-with-past"
ONNX_SUBFOLDER = "onnx"
ENCODER = "encoder_model"
DECODER = "decoder_model_merged"
# transformers.js DEFAULT_DTYPE_SUFFIX_MAPPING: dtype -> file-name suffix (what a Hub snapshot may hold)
DTYPE_SUFFIX = {
    "fp32": "",
    "fp16": "_fp16",
    "int8": "_int8",
    "uint8": "_uint8",
    "q8": "_quantized",
    "q4": "_q4",
    "q4f16": "_q4f16",
    "bnb4": "_bnb4",
}
EXPORTED_DTYPES = ("fp32", "q8")  # what export_onnx writes
# What a Whisper checkpoint folder must hold for the export (and for transformers.js beside it)
REQUIRED_CONFIGS = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json")


class ExportError(RuntimeError):
    """The checkpoint cannot be exported, or the export did not produce what transformers.js needs."""


def onnx_files(dtype: str) -> tuple[str, str]:
    """The (encoder, decoder) file names, relative to the model folder, for a transformers.js dtype."""
    suffix = DTYPE_SUFFIX[dtype]
    return f"{ONNX_SUBFOLDER}/{ENCODER}{suffix}.onnx", f"{ONNX_SUBFOLDER}/{DECODER}{suffix}.onnx"


def _mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def _move_model(src_dir: Path, name: str, dest_dir: Path) -> None:
    """Move ``name.onnx`` and any external-data files it references (``name.onnx_data`` ...,
    written for graphs over 2 GB), keeping their names: the graph refers to them by name."""
    moved = False
    for path in sorted(src_dir.glob(f"{name}.onnx*")):
        shutil.move(str(path), dest_dir / path.name)
        moved = True
    if not moved:
        raise ExportError(f"optimum did not write {name}.onnx (found: {sorted(p.name for p in src_dir.iterdir())})")


def _quantize(src: Path, dest: Path) -> None:
    """8-bit weights (QUInt8), activations quantized on the fly. The result is written as one file:
    even Whisper large-v3's q8 graphs stay under protobuf's 2 GB limit."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        src,
        dest,
        weight_type=QuantType.QUInt8,
        extra_options={"EnableSubgraph": True},  # or the merged decoder's If branches stay fp32
    )


# optimum's Python API, run in a child process (see _run_optimum_export)
MAIN_EXPORT_KWARGS = dict(
    task=TASK,
    framework="pt",
    library_name="transformers",
    local_files_only=True,
    # optimum's own check (PyTorch vs ONNX outputs on dummy inputs) costs about as long as the
    # export; the tests check the exported model on real speech instead.
    do_validation=False,
)
_CHILD = (
    "import sys\n"
    "from optimum.exporters.onnx import main_export\n"
    f"main_export(sys.argv[1], sys.argv[2], **{MAIN_EXPORT_KWARGS!r})\n"
)


def _run_optimum_export(hf_dir: Path, raw: Path) -> None:
    """``optimum.exporters.onnx.main_export`` in a child Python with ``PYTHONHASHSEED=0``.

    Why a child process: optimum merges the two decoders by deduplicating their shared weights,
    and picks each shared tensor's name by popping from a Python ``set`` of names, whose order
    follows the per-process string-hash seed. In-process, ``decoder_model_merged.onnx`` (and its
    quantized copy) therefore differs byte for byte between runs; with a fixed seed every file is
    reproducible, so the cache can pin its checksums. The child also takes the PyTorch model and
    the tracing memory with it when it exits.
    """
    import subprocess
    import sys

    env = {**os.environ, "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(hf_dir), str(raw)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ExportError(f"optimum's ONNX export of {hf_dir} failed (exit {proc.returncode}):\n{tail}")


def export_onnx(
    hf_dir: Union[str, Path], out_dir: Union[str, Path], log: Callable[[str], None] = print
) -> Path:
    """Export the Whisper checkpoint in ``hf_dir`` to ``out_dir`` (fp32 and q8, transformers.js layout).

    ``out_dir`` must be absent or empty. Everything is written in a temporary sibling folder that
    is renamed to ``out_dir`` at the end, so a failure leaves ``out_dir`` as it was (atomicity of
    the whole cache entry remains the caller's business). Returns ``out_dir``.
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if not (hf_dir / "config.json").is_file():
        raise ExportError(f"{hf_dir} is not a transformers checkpoint (no config.json)")
    missing = [n for n in REQUIRED_CONFIGS if not (hf_dir / n).is_file()]
    if missing:
        raise ExportError(f"{hf_dir} lacks {', '.join(missing)}, which transformers.js needs beside the ONNX files")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not an empty folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".onnx-export", dir=out_dir.parent))
    try:
        raw, model = tmp / "optimum", tmp / "model"
        (model / ONNX_SUBFOLDER).mkdir(parents=True)

        started = time.perf_counter()
        log(f"  exporting {hf_dir} to ONNX ({TASK}, fp32)")
        _run_optimum_export(hf_dir, raw)
        log(f"  exported in {time.perf_counter() - started:.1f} s")

        onnx_dir = model / ONNX_SUBFOLDER
        _move_model(raw, ENCODER, onnx_dir)
        _move_model(raw, DECODER, onnx_dir)
        # optimum copies the configs, tokenizer and feature-extractor files next to the graphs:
        # they go to the top of the folder, the unmerged decoders are dropped.
        for path in raw.iterdir():
            if path.is_file() and ".onnx" not in path.name:
                shutil.move(str(path), model / path.name)
        missing = [n for n in REQUIRED_CONFIGS if not (model / n).is_file()]
        if missing:
            raise ExportError(f"the export lacks {', '.join(missing)}")

        started = time.perf_counter()
        for name in (ENCODER, DECODER):
            _quantize(onnx_dir / f"{name}.onnx", onnx_dir / f"{name}{DTYPE_SUFFIX['q8']}.onnx")
        log(f"  quantized to q8 (QUInt8 weights) in {time.perf_counter() - started:.1f} s")
        for dtype in EXPORTED_DTYPES:
            sizes = ", ".join(f"{Path(f).name} {_mb(model / f):.0f} MB" for f in onnx_files(dtype))
            log(f"  {dtype}: {sizes}")

        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        model.rename(out_dir)
        return out_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["DTYPE_SUFFIX", "EXPORTED_DTYPES", "ExportError", "export_onnx", "onnx_files"]

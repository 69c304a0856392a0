"""The Browser tab's npm assets without npm: the exact tarballs of the component's package-lock.json.

A Gradio SDK Space runs no ``npm ci``; this does its part for the two packages the component
serves (``@huggingface/transformers`` and ``onnxruntime-web``): each tarball comes from the npm
registry over HTTPS at the version the lockfile pins, is checked against the lockfile's
``integrity`` (SHA-512) before anything is unpacked, and only its ``dist/`` files are written, in
the ``node_modules`` layout ``gradio_browser_asr`` serves from. The folder appears whole or not at
all (unpacked beside it, then renamed).

    python -m explorer.browser_assets [--assets-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from gradio_browser_asr import ASSETS_DIR, assets_missing

REGISTRY = "https://registry.npmjs.org"
LOCKFILE = ASSETS_DIR.parent / "package-lock.json"
SERVED = ("@huggingface/transformers", "onnxruntime-web")  # what BrowserASR serves: their dist/ folders
SERVED_FOLDER = "dist"


class AssetError(RuntimeError):
    """A tarball could not be fetched, does not match the lockfile, or holds something unexpected."""


@dataclass(frozen=True)
class Tarball:
    name: str  # "@huggingface/transformers"
    version: str
    integrity: str  # "sha512-<base64>", as npm writes it

    @property
    def url(self) -> str:
        # The registry's tarball path: a scoped package's file is named without its scope.
        return f"{REGISTRY}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"


def locked_tarballs(lockfile: Path = LOCKFILE, names: tuple[str, ...] = SERVED) -> list[Tarball]:
    packages = json.loads(lockfile.read_text())["packages"]
    found = []
    for name in names:
        entry = packages.get(f"node_modules/{name}")
        if entry is None or not str(entry.get("integrity", "")).startswith("sha512-"):
            raise AssetError(f"{lockfile} pins no sha512 tarball for {name}")
        found.append(Tarball(name, entry["version"], entry["integrity"]))
    return found


def check_integrity(data: bytes, integrity: str) -> None:
    expected = base64.b64decode(integrity.removeprefix("sha512-"))
    if hashlib.sha512(data).digest() != expected:
        actual = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        raise AssetError(f"integrity mismatch: the lockfile pins {integrity}, the download is {actual}")


def unpack_served(data: bytes, dest: Path) -> int:
    """Write the tarball's ``package/dist/`` regular files under ``dest``; returns how many."""
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = PurePosixPath(member.name).parts
            if len(parts) < 3 or parts[0] != "package" or parts[1] != SERVED_FOLDER or not member.isfile():
                continue
            if any(p in ("..", "") for p in parts) or PurePosixPath(member.name).is_absolute():
                raise AssetError(f"unsafe path in tarball: {member.name!r}")
            target = dest.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
            count += 1
    return count


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def fetch(
    assets_dir: Path = ASSETS_DIR,
    lockfile: Path = LOCKFILE,
    log: Callable[[str], None] = print,
    download: Callable[[str, float], bytes] = _download,
    timeout: float = 120.0,
) -> Path:
    """Fill ``assets_dir`` (no-op when the assets are already there)."""
    if assets_missing(assets_dir) is None:
        return assets_dir
    assets_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".browser-assets.", dir=assets_dir.parent))
    try:
        for tarball in locked_tarballs(lockfile):
            log(f"browser assets: {tarball.name}@{tarball.version} <- {tarball.url}")
            try:
                data = _download_checked(tarball, download, timeout)
            except OSError as exc:
                raise AssetError(f"could not download {tarball.url}: {exc}") from exc
            files = unpack_served(data, tmp / tarball.name)
            log(f"browser assets: {tarball.name}: {len(data) / 1e6:.1f} MB, sha512 matches the lockfile, {files} files")
        for path in tmp.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tmp.chmod(0o755)
        missing = assets_missing(tmp)
        if missing:
            raise AssetError(f"the tarballs did not provide what the component serves: {missing}")
        if assets_dir.exists():  # an incomplete earlier install (npm's or ours)
            shutil.rmtree(assets_dir)
        tmp.rename(assets_dir)
        return assets_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_checked(tarball: Tarball, download: Callable[[str, float], bytes], timeout: float) -> bytes:
    data = download(tarball.url, timeout)
    try:
        check_integrity(data, tarball.integrity)
    except AssetError as exc:
        raise AssetError(f"{tarball.name}@{tarball.version}: {exc}") from None
    return data


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer.browser_assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets-dir", type=Path, default=ASSETS_DIR)
    args = parser.parse_args(argv)
    try:
        print(fetch(args.assets_dir))
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

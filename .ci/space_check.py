"""`make space-check`: a Gradio SDK Space's build and first start, simulated on this machine.

1. The repository's files as a Space holds them (tracked and unignored files: no node_modules, no
   venv) are copied to a fresh folder.
2. A fresh venv gets pre-requirements.txt (if any), then requirements.txt: nothing else, as the
   Space's builder does (pip's cache makes a rerun tolerable).
3. `python app.py` starts there with HOME an empty folder (so MODELS_DIR's default is empty) and a
   PATH of the venv plus only the programs of packages.txt's Debian packages.
4. Checks: /health answers "preparing" and then "ok"; the zoo was prepared by the app itself; the
   Browser tab's page is cross-origin isolated (COOP/COEP) and its assets (fetched by the app,
   without npm) come with the embedder policy and serve a file-mode transcription in Chromium;
   /transcribe works. Each phase's seconds are printed.

Run with the dev venv's python (it drives Chromium with Playwright); the app runs in the fresh one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import librivox_clips  # noqa: E402
from tests.running_app import free_port  # noqa: E402

TIMES: list[tuple[str, float]] = []


def phase(name: str, start: float) -> None:
    TIMES.append((name, time.perf_counter() - start))
    print(f"space-check: {name}: {TIMES[-1][1]:.0f} s", flush=True)


def sh(*cmd: str, **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def debian_bin(work: Path) -> Path:
    """A folder with links to the programs of packages.txt's packages only."""
    folder = work / "debian-bin"
    folder.mkdir()
    for pkg in (ROOT / "packages.txt").read_text().split():
        sh("dpkg", "-s", pkg, stdout=subprocess.DEVNULL)  # installed (make system)
        files = subprocess.run(["dpkg", "-L", pkg], check=True, capture_output=True, text=True).stdout.split()
        for f in files:
            p = Path(f)
            if p.parent.name == "bin" and p.is_file() and os.access(p, os.X_OK):
                (folder / p.name).symlink_to(p)
    return folder


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="space-check."))
    app_dir, venv, home = work / "app", work / "venv", work / "home"
    home.mkdir()
    start = time.perf_counter()
    files = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (app_dir / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, app_dir / name.decode())
    assert not (app_dir / "custom_components/browser_asr/node_modules").exists()
    sh("python3", "-m", "venv", str(venv))
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q"]
    if (app_dir / "pre-requirements.txt").is_file():
        sh(*pip, "-r", "pre-requirements.txt", cwd=app_dir)
    sh(*pip, "-r", "requirements.txt", cwd=app_dir)
    phase("fresh venv from requirements.txt", start)

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {
        "HOME": str(home), "PATH": f"{venv / 'bin'}:{debian_bin(work)}", "PORT": str(port), "HOST": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",  # the Hub is unreachable here; a Space is online
        "GRADIO_ANALYTICS_ENABLED": "False", "LANG": "C.UTF-8",
    }  # fmt: skip
    log_path = work / "app.log"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(venv / "bin/python"), "app.py"], cwd=app_dir, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT
    )
    try:
        check_app(url, proc, log_path, home, start)
    finally:
        proc.terminate()
        proc.wait(30)
    print("\n| phase | seconds |\n|---|---|")
    for name, seconds in TIMES:
        print(f"| {name} | {seconds:.0f} |")
    print(f"\nspace-check: passed (work folder {work}, app log {log_path})")
    return 0


def health(url: str) -> dict | None:
    from gradio_client import Client

    try:
        return Client(url, verbose=False).predict(api_name="/health")
    except Exception:  # not up yet, or the placeholder giving way to the app
        return None


def check_app(url: str, proc: subprocess.Popen, log_path: Path, home: Path, start: float) -> None:
    seen = []
    deadline = time.time() + 1800
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        status = (health(url) or {}).get("status")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
            phase(f"/health says {status!r}", start)
        if status == "ok":
            break
        time.sleep(2)
    assert seen and seen[0] == "preparing" and seen[-1] == "ok", f"/health went {seen}"

    models = home / ".cache/open-asr-explorer/models"
    prepared = sorted(p.parent.name for p in models.glob("*/checksums.json"))
    print(f"space-check: the app prepared {prepared}")
    assert {"whisper-tiny.en-ct2", "whisper-tiny.en-onnx"} <= set(prepared), prepared

    from gradio_client import Client, handle_file

    clip = librivox_clips()[0]
    start = time.perf_counter()
    result = Client(url, verbose=False).predict(
        handle_file(str(clip.path)), "faster-whisper/tiny.en", api_name="/transcribe"
    )
    phase("/transcribe (tiny.en, first call loads it)", start)
    from explorer.scoring import score

    assert score(clip.reference, result["text"]).wer <= 0.15, result["text"]

    start = time.perf_counter()
    browser_file_mode(url, clip)
    phase("Chromium file-mode transcription (Browser tab)", start)


def browser_file_mode(url: str, clip) -> None:
    """The Browser tab on the simulated Space: its page cross-origin isolated (COOP/COEP from
    explorer/isolation.py, so the WASM runs on threads), its assets (fetched by the app itself,
    without npm) served with those headers, and a file-mode transcription in Chromium."""
    from playwright.sync_api import sync_playwright

    from explorer.scoring import score
    from tests.browser_page import ARGS, CHROMIUM, Page
    from tests.test_browser import TINY_FP32

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            ui = Page(browser, url)
            headers = {}
            ui.page.on("response", lambda r: "node_modules" in r.url and headers.setdefault(r.url, r.headers))
            page = ui.page.request.get(url)
            assert page.headers["cross-origin-opener-policy"] == "same-origin", page.headers
            assert page.headers["cross-origin-embedder-policy"] == "credentialless", page.headers
            assert ui.page.evaluate("self.crossOriginIsolated"), "the Space's page is not cross-origin isolated"
            assert "threads available" in ui.text("status"), ui.text("status")
            ui.at("model").select_option(TINY_FP32)
            ui.at("file").set_input_files(str(clip.path))
            ui.wait_status("done")
            text = ui.text("committed")
            assert score(clip.reference, text).wer <= 0.15, text
            assert ui.outside(url) == [], ui.outside(url)  # assets and model from the app itself
            assert headers, "no Browser-tab asset (transformers.js, onnxruntime-web) was fetched"
            without = [u for u, h in headers.items() if h.get("cross-origin-embedder-policy") != "credentialless"]
            assert without == [], without
            print(f"space-check: the page is cross-origin isolated; {len(headers)} Browser-tab assets served with COEP", flush=True)
        finally:
            browser.close()

if __name__ == "__main__":
    sys.exit(main())

"""Fuzzing explorer.audio.load_audio with damaged copies of real files of every accepted format.

Seed files are made once per session from real speech (a LibriVox clip shipped with
pocketsphinx) with the ffmpeg command line, as tests/test_audio.py makes them. hypothesis then
flips bytes, cuts the file anywhere, inserts, deletes and duplicates byte runs and overwrites
header fields. The property: load_audio either returns finite 16 kHz mono float32 samples in
[-1, 1] or raises AudioError (a message for the user) -- never another exception, never a hang.

`make test` runs a bounded, reproducible fuzz (derandomize=True, database=None: nothing is
written to .hypothesis/). `make fuzz` sets FUZZ_EXAMPLES for a long run with a random seed; each
input that breaks the property is saved under bench/results/fuzz/ (git-ignored). Crashers worth
keeping go to tests/data/fuzz/, where test_crashers_replay replays them on every run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from explorer.audio import Audio, AudioError, load_audio
from explorer.types import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
SEED_SECONDS = "0.75"
CRASHERS = ROOT / "tests" / "data" / "fuzz"
FOUND = ROOT / "bench" / "results" / "fuzz"  # where `make fuzz` saves new crashers

# format -> (file name, ffmpeg output options); the name's extension is passed to load_audio.
SEEDS = {
    "wav": ("seed.wav", ["-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le"]),
    "flac": ("seed.flac", ["-ar", "22050", "-c:a", "flac"]),
    "mp3": ("seed.mp3", ["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "32k"]),
    "ogg": ("seed.ogg", ["-ar", "48000", "-c:a", "libvorbis"]),
    "opus": ("seed.opus", ["-c:a", "libopus", "-b:a", "24k"]),
    "webm": ("seed.webm", ["-c:a", "libopus", "-b:a", "24k"]),
    # What a browser's MediaRecorder uploads: webm/opus written as a stream (no duration, no cues).
    "webm-live": ("live.webm", ["-c:a", "libopus", "-b:a", "24k", "-f", "webm"]),
    "m4a": ("seed.m4a", ["-ar", "44100", "-c:a", "aac", "-b:a", "48k"]),
}

# Examples per seed file: 8 x 400 = 3,200 in `make test`.
LONG_RUN = "FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
DEADLINE_S = 5  # hypothesis fails an example slower than this (after re-running it once)
HANG_S = 30  # a hard stop for a decode that never returns to Python at all
MAX_SECONDS = 30.0
MAX_BYTES = 1 << 20


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    """The speech clip, cut to SEED_SECONDS, in every accepted format (made once per session)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None or not SPEECH.exists():
        pytest.fail("ffmpeg or pocketsphinx-testdata is missing: run the tests with `make test`")
    out = tmp_path_factory.mktemp("fuzz-seeds")
    made = {}
    for fmt, (filename, options) in SEEDS.items():
        command = [ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(SPEECH), "-t", SEED_SECONDS]
        if fmt == "webm-live":
            made[fmt] = subprocess.run(
                [*command, *options, "pipe:1"], check=True, capture_output=True, timeout=30
            ).stdout
        else:
            subprocess.run([*command, *options, str(out / filename)], check=True, timeout=30)
            made[fmt] = (out / filename).read_bytes()
    return made


# --- mutations: each takes (draw, data) and returns the damaged data ---------------------------


def _flip(draw, data: bytearray) -> bytearray:
    at = draw(st.integers(0, len(data) - 1))
    data[at] ^= draw(st.integers(1, 255))
    return data


def _truncate(draw, data: bytearray) -> bytearray:
    return data[: draw(st.integers(0, len(data) - 1))]


def _insert(draw, data: bytearray) -> bytearray:
    at = draw(st.integers(0, len(data)))
    run = draw(
        st.one_of(
            st.binary(min_size=1, max_size=64),
            st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(1, 4096)),
        )
    )
    return data[:at] + run + data[at:]


def _delete(draw, data: bytearray) -> bytearray:
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + data[at + draw(st.integers(1, 4096)) :]


def _duplicate(draw, data: bytearray) -> bytearray:
    start = draw(st.integers(0, len(data) - 1))
    chunk = data[start : start + draw(st.integers(1, 8192))]
    at = draw(st.integers(0, len(data)))
    return data[:at] + chunk * draw(st.integers(1, 3)) + data[at:]


def _header_field(draw, data: bytearray) -> bytearray:
    """Overwrite a 1-, 2- or 4-byte field in the first 64 bytes: sizes, rates, channel counts."""
    width = draw(st.sampled_from([1, 2, 4]))
    at = draw(st.integers(0, max(0, min(64, len(data)) - width)))
    top = (1 << (8 * width)) - 1
    value = draw(st.one_of(st.sampled_from([0, 1, top, top >> 1, (top >> 1) + 1]), st.integers(0, top)))
    data[at : at + width] = value.to_bytes(width, draw(st.sampled_from(["little", "big"])))
    return data


MUTATIONS = [_flip, _truncate, _insert, _delete, _duplicate, _header_field]


@st.composite
def damaged(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        data = draw(st.sampled_from(MUTATIONS))(draw, data)
    return bytes(data)


# --- the property ------------------------------------------------------------------------------


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang(f"load_audio did not return within {HANG_S} s")


def check_decodes_or_refuses(data: bytes, name: str, max_seconds, max_bytes) -> str:
    """The property: audio that keeps every promise of Audio, or AudioError; nothing else.

    Returns which it was ("decoded", "decoded with warnings" or "AudioError")."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(HANG_S)
    try:
        audio = load_audio(data, max_seconds=max_seconds, max_bytes=max_bytes, name=name)
    except AudioError as e:
        assert str(e), "an AudioError must carry a message for the user"
        return "AudioError"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(audio, Audio)
    assert SAMPLE_RATE == 16000
    samples = audio.samples
    assert isinstance(samples, np.ndarray) and samples.dtype == np.float32 and samples.ndim == 1
    assert np.isfinite(samples).all()
    assert np.abs(samples).max(initial=0) <= 1.0
    assert all(isinstance(w, str) and w for w in audio.warnings)
    return "decoded with warnings" if audio.warnings else "decoded"


def _save(data: bytes, fmt: str) -> Path:
    FOUND.mkdir(parents=True, exist_ok=True)
    path = FOUND / f"{fmt}-{hashlib.sha1(data).hexdigest()[:12]}{Path(SEEDS[fmt][0]).suffix}"
    path.write_bytes(data)
    return path


# Mostly the app's limits; also none at all, and a max_seconds the seeds exceed (so a corrupted
# duration field decides between refusing early and decoding).
LIMITS = [(MAX_SECONDS, MAX_BYTES), (MAX_SECONDS, MAX_BYTES), (None, None), (0.5, MAX_BYTES)]


@pytest.mark.parametrize("fmt", list(SEEDS))
@settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=DEADLINE_S),
    derandomize=not LONG_RUN,  # `make test` is reproducible; `make fuzz` explores anew each run
    database=None,  # nothing written to .hypothesis/: crashers worth keeping go to tests/data/fuzz
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(data=st.data(), limits=st.sampled_from(LIMITS))
def test_damaged_files_decode_or_raise_audio_error(seeds, fmt, data, limits) -> None:
    damaged_file = data.draw(damaged(seeds[fmt]), label="file")
    name = SEEDS[fmt][0]
    try:
        event(check_decodes_or_refuses(damaged_file, name, *limits))
    except BaseException:
        if LONG_RUN:
            _save(damaged_file, fmt)
        raise


def test_seeds_decode_cleanly(seeds) -> None:
    """The undamaged seeds are real audio of about SEED_SECONDS, so the mutations start from it."""
    for fmt, seed in seeds.items():
        audio = load_audio(seed, max_seconds=MAX_SECONDS, max_bytes=MAX_BYTES, name=SEEDS[fmt][0])
        assert audio.duration == pytest.approx(float(SEED_SECONDS), abs=0.1), fmt


def test_crashers_replay() -> None:
    """Inputs the fuzzer once broke load_audio with (tests/data/fuzz/): each now decodes or raises
    AudioError. One test over the folder, so an empty folder is not reported as a skip."""
    crashers = sorted(p for p in CRASHERS.iterdir() if p.suffix != ".md")
    for path in crashers:
        outcome = check_decodes_or_refuses(path.read_bytes(), path.name, MAX_SECONDS, MAX_BYTES)
        assert outcome, path.name

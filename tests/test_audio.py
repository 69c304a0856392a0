"""explorer.audio on real files: every input format, every kind of bad input, damaged audio.

Files are made in the test from real speech (LibriVox clips shipped with pocketsphinx) with
soundfile and the ffmpeg command line, so what is tested is what a browser or a user uploads.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import explorer.audio as audio_mod
from explorer.audio import Audio, AudioError, load_audio, to_mono_16k
from explorer.types import SAMPLE_RATE

SPEECH_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
SPEECH = SPEECH_DIR / "sense_and_sensibility_01_austen_64kb-0880.wav"  # 2.99 s, 16 kHz mono
SPEECH_SECONDS = 2.99
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg (Debian package) is not installed")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not SPEECH.exists():
        pytest.skip(f"{SPEECH} is missing (Debian package pocketsphinx-en-us / its test data)")
    samples, rate = sf.read(SPEECH, dtype="float32")
    assert rate == SAMPLE_RATE and samples.ndim == 1
    return samples


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", *args], check=True, timeout=30)


# name -> (file name, ffmpeg output options, rate the decoder should report)
ENCODINGS = {
    "wav-44k-stereo": ("speech.wav", ["-ar", "44100", "-ac", "2"], 44100),
    "flac-22k": ("speech.flac", ["-ar", "22050", "-c:a", "flac"], 22050),
    "mp3": ("speech.mp3", ["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "64k"], 44100),
    "ogg-vorbis": ("speech.ogg", ["-ar", "48000", "-c:a", "libvorbis"], 48000),
    # Opus always codes at 48 kHz; libsndfile decodes at the input rate its header records.
    "ogg-opus": ("speech.opus", ["-c:a", "libopus", "-b:a", "32k"], 16000),
    "webm-opus": ("speech.webm", ["-c:a", "libopus", "-b:a", "32k"], 48000),
    "m4a-aac": ("speech.m4a", ["-ar", "44100", "-c:a", "aac", "-b:a", "64k"], 44100),
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, speech) -> dict[str, Path]:
    """The speech clip in every format, made once for the module."""
    if FFMPEG is None:
        pytest.skip("ffmpeg (Debian package) is not installed")
    out = tmp_path_factory.mktemp("encoded")
    files = {}
    for name, (filename, options, _) in ENCODINGS.items():
        files[name] = out / filename
        ffmpeg("-i", str(SPEECH), *options, str(files[name]))
    # What a browser's MediaRecorder uploads: webm/opus written as a stream, so no duration
    # in the header and no cues.
    command = [FFMPEG, "-v", "error", "-nostdin", "-i", str(SPEECH), "-c:a", "libopus"]
    live = subprocess.run(
        [*command, "-f", "webm", "pipe:1"], check=True, capture_output=True, timeout=30
    ).stdout
    files["webm-live"] = out / "live.webm"
    files["webm-live"].write_bytes(live)
    return files


def envelope(x: np.ndarray, frame: int = 320) -> np.ndarray:
    """RMS per 20 ms: lossy codecs keep this, not the waveform."""
    n = len(x) // frame
    return np.sqrt((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1))


def assert_valid(a: Audio) -> None:
    assert isinstance(a, Audio)
    assert a.samples.dtype == np.float32 and a.samples.ndim == 1
    assert np.isfinite(a.samples).all()
    assert np.abs(a.samples).max(initial=0) <= 1.0
    assert a.duration == pytest.approx(len(a.samples) / SAMPLE_RATE)


def peak_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def sine(hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(
        np.float32
    )


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)  # 2x2 RGB
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\x00\xff" * 2)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


# --- every format decodes to the same speech ----------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("name", [*ENCODINGS, "webm-live"])
def test_every_format_decodes_to_the_speech(encoded, speech, name):
    a = load_audio(encoded[name])
    assert_valid(a)
    assert a.warnings == ()
    assert a.duration == pytest.approx(SPEECH_SECONDS, abs=0.03)
    want_rate = ENCODINGS[name][2] if name in ENCODINGS else 48000
    assert a.source_rate == want_rate
    assert a.source_channels == (2 if name == "wav-44k-stereo" else 1)
    n = min(len(a.samples), len(speech))
    corr = np.corrcoef(envelope(a.samples[:n]), envelope(speech[:n]))[0, 1]
    assert corr > 0.95, f"{name}: loudness envelope differs from the source (r={corr:.3f})"


@needs_ffmpeg
@pytest.mark.parametrize("name", ["wav-44k-stereo", "mp3", "webm-live", "ogg-opus"])
def test_bytes_decode_like_the_file(encoded, name):
    path = encoded[name]
    from_path, from_bytes = load_audio(path), load_audio(path.read_bytes())
    np.testing.assert_array_equal(from_path.samples, from_bytes.samples)
    assert from_bytes.source_rate == from_path.source_rate


def test_16k_wav_is_read_exactly(speech):
    a = load_audio(SPEECH)
    assert (a.source_rate, a.source_channels, a.warnings) == (16000, 1, ())
    np.testing.assert_array_equal(a.samples, speech)
    assert a.duration == pytest.approx(SPEECH_SECONDS)


def test_array_at_16k_passes_through(speech):
    a = load_audio(speech)
    np.testing.assert_array_equal(a.samples, speech)
    assert (a.source_rate, a.source_channels, a.warnings) == (16000, 1, ())


# --- bad input --------------------------------------------------------------------------------


BAD_FILES = {
    "empty file": ("empty.wav", b"", ["empty", "0 bytes"]),
    "text": ("notes.txt", b"Hello, this is not audio at all.\n" * 50, ["not audio"]),
    "png image": ("picture.png", png_bytes(), ["not audio", "picture.png", "no audio track"]),
    "random bytes": ("noise.bin", np.random.default_rng(0).bytes(50_000), ["not audio", "noise"]),
    "random bytes named .mp3": ("song.mp3", np.random.default_rng(1).bytes(50_000), ["not audio"]),
    "RIFF header then junk": (
        "fake.wav",
        b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8,
        ["not audio", "fake.wav"],
    ),
    "tiny junk": ("x.webm", b"\x1aE", ["not audio"]),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_gives_clear_error(tmp_path, case):
    filename, data, words = BAD_FILES[case]
    path = tmp_path / filename
    path.write_bytes(data)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    for word in words:
        assert word in str(err.value)
    assert str(tmp_path) not in str(err.value)  # never the server's directory


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_bytes_give_clear_error(case):
    _, data, words = BAD_FILES[case]
    with pytest.raises(AudioError) as err:
        load_audio(data)
    assert words[0] in str(err.value)


@pytest.mark.parametrize(
    "source, words",
    [
        (None, "No audio"),
        ("", "No audio"),
        ((16000, None), "No audio"),
        ((16000,), "sample_rate, samples"),
        ("/no/such/dir/speech.wav", "File not found: 'speech.wav'"),
        ("/tmp", "not a regular file"),
        (np.zeros((2, 3, 4), np.float32), "1-D or 2-D"),
        (np.array(0.5, np.float32), "1-D or 2-D"),
        (np.zeros(100, np.complex64), "integers or floats"),
        (np.array(["a", "b"]), "integers or floats"),
        (np.zeros((100, 0), np.float32), "0 channels"),
        (np.zeros((100, 100), np.float32), "100 channels"),
    ],
)
def test_unusable_sources(source, words):
    with pytest.raises(AudioError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_audio(source)


def test_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "upload.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(fifo)


def test_wrong_type_is_a_programming_error():
    with pytest.raises(TypeError):
        load_audio(42)


@pytest.mark.parametrize(
    "rate, words",
    [
        (0, "must be positive"),
        (-16000, "must be positive"),
        (16000.5, "whole number"),
        (float("nan"), "whole number"),
        ("16000", "number of Hz"),
        (True, "number of Hz"),
        (100, "not supported"),
        (10_000_000, "not supported"),
    ],
)
def test_bad_sample_rates(rate, words):
    with pytest.raises(AudioError, match=words):
        load_audio((rate, np.zeros(1600, np.int16)))
    with pytest.raises(AudioError, match=words):
        to_mono_16k(np.zeros(1600, np.float32), rate)


@pytest.mark.parametrize("field, value", [("rate", 0), ("channels", 0)])
def test_wav_header_with_zero_rate_or_channels(speech, field, value):
    data = bytearray(wav_bytes(speech, 16000))
    offset = {"rate": 24, "channels": 22}[field]
    data[offset : offset + (4 if field == "rate" else 2)] = bytes(4 if field == "rate" else 2)
    with pytest.raises(AudioError, match="could not decode"):
        load_audio(bytes(data))


# --- limits -----------------------------------------------------------------------------------


def test_upload_over_size_limit_is_refused_before_decoding(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("decoded despite the size limit")

    monkeypatch.setattr(audio_mod, "_decode", boom)
    data = bytes(250 << 20)
    with pytest.raises(AudioError) as err:
        load_audio(data, max_bytes=200 << 20)
    assert str(err.value) == "Upload is 250 MB; the limit is 200 MB (MAX_UPLOAD_MB)"


def test_size_limit_applies_to_files(tmp_path, speech):
    path = tmp_path / "speech.wav"
    sf.write(path, speech, 16000)
    size = path.stat().st_size
    assert load_audio(path, max_bytes=size).duration == pytest.approx(SPEECH_SECONDS)
    with pytest.raises(AudioError, match=r"Upload is 0\.\d+ MB; the limit is 0\.\d+ MB"):
        load_audio(path, max_bytes=size - 1000)


def test_size_message_never_shows_equal_numbers():
    with pytest.raises(AudioError) as err:
        load_audio(bytes((200 << 20) + 30_000), max_bytes=200 << 20)
    got, limit = str(err.value).split(";")
    assert "200.03 MB" in got and "200 MB" in limit


def test_duration_limit_message():
    with pytest.raises(AudioError) as err:
        load_audio((8000, np.zeros(int(31.5 * 60 * 8000), np.int16)), max_seconds=30 * 60)
    assert str(err.value) == "Audio is 31.5 min long; the limit is 30 min (MAX_AUDIO_SECONDS)"


@needs_ffmpeg
@pytest.mark.parametrize(
    "name", ["wav-44k-stereo", "flac-22k", "mp3", "ogg-opus", "webm-opus", "m4a-aac"]
)
def test_stated_duration_is_checked_before_decoding(encoded, monkeypatch, name):
    def boom(*args, **kwargs):
        raise AssertionError("decoded although the header already says it is too long")

    monkeypatch.setattr(audio_mod._Collector, "add", boom)
    with pytest.raises(AudioError) as err:
        load_audio(encoded[name], max_seconds=2)
    assert "Audio is 3 s long; the limit is 2 s (MAX_AUDIO_SECONDS)" == str(err.value)


@needs_ffmpeg
def test_stream_without_duration_stops_decoding_at_the_limit(encoded, monkeypatch):
    added = []
    real_add = audio_mod._Collector.add

    def counting_add(self, frames, rate):
        added.append(len(frames) / rate)
        real_add(self, frames, rate)

    monkeypatch.setattr(audio_mod._Collector, "add", counting_add)
    with pytest.raises(AudioError, match=r"longer than the limit of 1 s \(MAX_AUDIO_SECONDS\)"):
        load_audio(encoded["webm-live"], max_seconds=1)
    assert 1.0 < sum(added) < 1.2  # stopped right after the limit, not at the end of the file


@needs_ffmpeg
@pytest.mark.parametrize("name", [*ENCODINGS, "webm-live"])
def test_audio_at_the_limit_passes(encoded, name):
    assert load_audio(encoded[name], max_seconds=SPEECH_SECONDS).duration == pytest.approx(
        SPEECH_SECONDS, abs=0.03
    )


# --- damaged audio ----------------------------------------------------------------------------


def test_truncated_wav_warns_how_much_was_used(speech):
    data = wav_bytes(speech, 16000)
    a = load_audio(data[: 44 + 2 * 16000])  # header + exactly 1 s of 16-bit samples
    assert_valid(a)
    assert a.duration == pytest.approx(1.0)
    assert a.warnings == (
        "The file is truncated or damaged: decoded 1.0 s of the 3.0 s its header declares",
    )
    np.testing.assert_array_equal(a.samples, speech[:16000])


def test_wav_header_claiming_more_than_the_file_holds(speech):
    data = bytearray(wav_bytes(speech, 16000))
    assert data[36:40] == b"data"
    data[40:44] = struct.pack("<I", 10 * 16000 * 2)  # "10 s of data"
    a = load_audio(bytes(data))
    assert a.duration == pytest.approx(SPEECH_SECONDS)
    assert a.warnings == (
        "The file is truncated or damaged: decoded 3.0 s of the 10.0 s its header declares",
    )


def test_wav_header_never_finalised(speech):
    data = bytearray(wav_bytes(speech, 16000))
    data[40:44] = bytes(4)  # a recorder that crashed before writing the data size
    a = load_audio(bytes(data))
    assert a.duration == pytest.approx(SPEECH_SECONDS)
    np.testing.assert_allclose(a.samples, speech, atol=1e-6)
    assert len(a.warnings) == 1 and "never finalised" in a.warnings[0]


def test_wav_with_unknown_data_size_is_read_to_the_end(speech):
    data = bytearray(wav_bytes(speech, 16000))
    data[40:44] = b"\xff\xff\xff\xff"  # ffmpeg writing to a pipe does this
    a = load_audio(bytes(data))
    assert a.duration == pytest.approx(SPEECH_SECONDS) and a.warnings == ()


@needs_ffmpeg
@pytest.mark.parametrize("name", ["flac-22k", "mp3", "webm-opus", "ogg-vorbis", "ogg-opus"])
def test_truncated_compressed_file_warns(encoded, name):
    data = encoded[name].read_bytes()
    a = load_audio(data[: len(data) // 2])
    assert_valid(a)
    assert 0.5 < a.duration < 2.5
    assert any("truncated or damaged" in w for w in a.warnings), a.warnings
    # says how much was used, as a number of seconds that matches what came back
    used = (f"decoded {a.duration:.1f} s", f"decoded the {a.duration:.1f} s present")
    assert any(u in w for u in used for w in a.warnings), a.warnings


@needs_ffmpeg
def test_truncated_m4a_with_index_at_the_end_is_refused(encoded):
    data = encoded["m4a-aac"].read_bytes()
    with pytest.raises(AudioError, match="could not decode"):
        load_audio(data[: len(data) // 2])


def test_nan_and_inf_samples_are_silenced_with_a_warning(speech):
    damaged = speech.copy()
    damaged[[100, 200, 300]] = [np.nan, np.inf, -np.inf]
    a = load_audio(wav_bytes(damaged, 16000, subtype="FLOAT"))
    assert_valid(a)
    assert a.samples[[100, 200, 300]].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(a.samples[:100], speech[:100])
    assert a.warnings == (
        f"3 of {len(speech)} samples (0.0063%) were not numbers (NaN or infinite); "
        "replaced them with silence",
    )


def test_out_of_range_float_samples_are_clipped_with_a_warning():
    x = np.array([0.5, 2.0, -3.0, 0.25] * 4000, np.float32)
    a = load_audio((16000, x))
    assert a.samples.tolist()[:4] == [0.5, 1.0, -1.0, 0.25]
    assert any("8000 of 16000 samples (50%) were outside [-1, 1] (peak 3)" in w for w in a.warnings)


def test_normalise_is_pure():
    x = np.array([np.nan, 2.0, 0.5] * 1000, np.float32)
    before = x.copy()
    out, warnings = to_mono_16k(x, 16000)
    np.testing.assert_array_equal(x, before)  # the caller's array is untouched
    assert out.tolist()[:3] == [0.0, 1.0, 0.5] and len(warnings) == 2
    assert isinstance(warnings, list)


# --- short, silent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        np.zeros(0, np.float32),
        np.zeros(1, np.float32),
        (44100, np.zeros(0, np.int16)),
        (48000, np.ones(1, np.int16)),
        wav_bytes(np.zeros(0, np.float32), 16000),  # a header and no samples
        wav_bytes(np.zeros(5, np.float32), 8000),
    ],
    ids=["empty-array", "one-sample", "empty-tuple", "one-sample-48k", "empty-wav", "5-sample-wav"],
)
def test_zero_or_one_sample_is_valid_audio_with_a_warning(source):
    a = load_audio(source)
    assert_valid(a)
    assert a.duration < 0.001
    assert any("shorter than 0.1 s" in w for w in a.warnings), a.warnings


def test_silence_is_valid_audio():
    a = load_audio(wav_bytes(np.zeros(16000, np.float32), 16000))
    assert a.duration == pytest.approx(1.0) and a.warnings == ()
    assert not a.samples.any()


# --- channels ---------------------------------------------------------------------------------


def test_stereo_file_is_the_mean_of_its_channels(tmp_path):
    left, right = sine(440, 1.0, 16000), sine(1000, 1.0, 16000, amplitude=0.3)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    a = load_audio(path)
    assert a.source_channels == 2 and a.warnings == ()
    np.testing.assert_allclose(a.samples, (left + right) / 2, atol=1e-6)


@needs_ffmpeg
def test_stereo_compressed_file_is_the_mean_of_its_channels(tmp_path):
    left, right = sine(440, 1.0, 16000), sine(1000, 1.0, 16000, amplitude=0.3)
    wav = tmp_path / "stereo.wav"
    sf.write(wav, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    m4a = tmp_path / "stereo.m4a"
    ffmpeg("-i", str(wav), "-c:a", "aac", "-b:a", "128k", str(m4a))
    a = load_audio(m4a)
    assert a.source_channels == 2
    spectrum = np.abs(np.fft.rfft(a.samples[:16000]))
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    level = {hz: spectrum[np.abs(freqs - hz) < 5].max() for hz in (440, 1000)}
    assert level[1000] / level[440] == pytest.approx(0.6, rel=0.1)  # amplitudes 0.25 and 0.15


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channel_counts_in_arrays_and_files(tmp_path, channels):
    rng = np.random.default_rng(channels)
    x = (rng.uniform(-0.5, 0.5, (8000, channels))).astype(np.float32)
    want = x.mean(axis=1)
    a = load_audio((16000, x))
    assert a.source_channels == channels and a.warnings == ()
    np.testing.assert_allclose(a.samples, want, atol=1e-6)
    path = tmp_path / f"{channels}ch.flac"
    sf.write(path, x, 16000, subtype="PCM_24")
    b = load_audio(path)
    assert b.source_channels == channels
    np.testing.assert_allclose(b.samples, want, atol=1e-5)


def test_channels_first_array_is_read_with_a_warning():
    x = np.stack([sine(440, 0.5, 16000), np.zeros(8000, np.float32)])  # (2, 8000)
    a = load_audio((16000, x))
    assert a.source_channels == 2 and a.duration == pytest.approx(0.5)
    np.testing.assert_allclose(a.samples, x[0] / 2, atol=1e-6)
    assert any("(channels, samples)" in w for w in a.warnings)


# --- sample formats and rates -----------------------------------------------------------------


@pytest.mark.parametrize(
    "values, want",
    [
        (np.array([-32768, 0, 16384, 32767], np.int16), [-1.0, 0.0, 0.5, 32767 / 32768]),
        (np.array([-(2**31), 0, 2**30], np.int32), [-1.0, 0.0, 0.5]),
        (np.array([0, 128, 192], np.uint8), [-1.0, 0.0, 0.5]),
        (np.array([-0.5, 0.0, 0.75], np.float64), [-0.5, 0.0, 0.75]),
    ],
    ids=["int16", "int32", "uint8", "float64"],
)
def test_gradio_tuple_pcm_is_scaled_to_unit_range(values, want):
    a = load_audio((16000, np.repeat(values[None, :], 2000, axis=0).ravel()))
    np.testing.assert_allclose(a.samples[: len(want)], want, atol=1e-6)
    assert a.samples.dtype == np.float32 and a.warnings == ()


def test_gradio_microphone_tuple(speech):
    """gradio gives (rate, int16 array of shape (n, channels)) for a stereo microphone."""
    pcm = np.round(speech * 32767).astype(np.int16)
    stereo = np.stack([pcm, pcm], axis=1)
    resampled48k = load_audio((48000, stereo))
    assert resampled48k.duration == pytest.approx(SPEECH_SECONDS / 3, abs=1e-3)
    a = load_audio((16000, stereo))
    assert (a.source_rate, a.source_channels, a.warnings) == (16000, 2, ())
    np.testing.assert_allclose(a.samples, speech, atol=1 / 32768)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 96000])
def test_resampling_keeps_duration_and_pitch(rate):
    a = load_audio((rate, sine(1000, 1.5, rate)))
    assert a.source_rate == rate and a.warnings == ()
    assert len(a.samples) == pytest.approx(1.5 * SAMPLE_RATE, abs=1)
    assert peak_hz(a.samples) == pytest.approx(1000, abs=1)
    # amplitude survives (away from the edges, where the filter rings in)
    assert np.abs(a.samples[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    "rate, fmt", [(44100, "WAV"), (11025, "FLAC"), (96000, "WAV"), (8000, "WAV")]
)
def test_file_at_another_rate_is_resampled(tmp_path, rate, fmt):
    path = tmp_path / f"sine.{fmt.lower()}"
    sf.write(path, sine(1000, 2.0, rate), rate, format=fmt)
    a = load_audio(path)
    assert a.source_rate == rate and a.warnings == ()
    assert a.duration == pytest.approx(2.0, abs=1 / SAMPLE_RATE)
    assert peak_hz(a.samples) == pytest.approx(1000, abs=1)


def test_tones_above_8k_are_filtered_out_not_aliased():
    a = load_audio((44100, sine(12000, 1.0, 44100)))  # above the 8 kHz Nyquist of 16 kHz audio
    assert np.abs(a.samples[2000:-2000]).max() < 0.01


def test_audio_is_frozen():
    a = load_audio(np.zeros(16000, np.float32))
    with pytest.raises(AttributeError):
        a.samples = np.zeros(1, np.float32)
    assert a.duration == 1.0

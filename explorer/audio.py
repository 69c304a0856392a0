"""Turn whatever the user gave us into 16 kHz mono float32: the one place audio is decoded.

soundfile (libsndfile) reads WAV, FLAC, Ogg and AIFF: it is exact and fast for PCM. PyAV (bundled
FFmpeg) reads everything else (mp3, m4a/aac, webm/opus from browser microphones) and is also the
fallback when libsndfile gives up part-way through a damaged file. Both feed the same _Collector,
which mixes, repairs and resamples (soxr) chunk by chunk, so every path warns the same way and a
long file never sits in memory at its native rate and channel count.

Bad input raises AudioError, whose message is shown to the user as is. Repairs (NaN samples,
clipping, a truncated file) are never silent: each one is a plain sentence in Audio.warnings.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Optional, Union

import av
import numpy as np
import soundfile as sf
import soxr

from explorer.types import SAMPLE_RATE

__all__ = ["Audio", "AudioError", "AudioSource", "load_audio", "to_mono_16k"]

# Limits messages speak in MB = 2**20 bytes: callers pass max_bytes = MAX_UPLOAD_MB * 2**20.
_MB = 1 << 20
_MIN_RATE, _MAX_RATE = 1_000, 768_000
_MAX_CHANNELS = 64  # FFmpeg's own ceiling; more "channels" means the array is channels-first
_SHORT_SECONDS = 0.1
# Encoders pad a few ms (mp3 ~26 ms, AAC ~21-46 ms), so a file cut exactly at the limit or
# decoded a hair short of its stated length is neither refused nor called truncated.
_LIMIT_SLACK_SECONDS = 0.1
_TRUNCATION_TOLERANCE_S = 0.25  # lossy decoders; PCM is held to 10 ms
_CHUNK_FRAMES = 1 << 16  # how much native-rate audio is buffered before it is mixed and resampled
# Magic bytes of containers libsndfile reads well; anything else goes straight to PyAV (and
# libsndfile's mp3 support is kept out of the way: its mpg123 prints warnings to stderr).
_SOUNDFILE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM")
_SNIFF_BYTES = 1 << 16

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, tuple]


class AudioError(ValueError):
    """The input cannot be used as audio; str(error) is a message for the user."""


@dataclass(frozen=True, eq=False)  # eq=False: an ndarray field makes == and hash() meaningless
class Audio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE, finite, in [-1, 1]
    warnings: tuple[str, ...] = ()  # every repair made, said plainly
    source_rate: Optional[int] = None
    source_channels: Optional[int] = None

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_audio(
    source: AudioSource,
    *,
    max_seconds: Optional[float] = None,
    max_bytes: Optional[int] = None,
    name: Optional[str] = None,
) -> Audio:
    """Decode `source` to 16 kHz mono float32.

    source: a path; the bytes of a file; a gradio numpy tuple (sample_rate, array) with shape (n,)
    or (n, channels); or an array already at 16 kHz. max_bytes is checked before anything is
    decoded (files and bytes only: arrays are decoded already); max_seconds is checked against
    the length the container states, then while decoding, so an over-long file is refused early.
    name: the file bytes came from, for error messages.
    """
    if source is None or (isinstance(source, str) and not source):
        raise AudioError("No audio was given")
    if isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError(f"Expected (sample_rate, samples), got a tuple of {len(source)} items")
        rate, data = source
        if data is None:
            raise AudioError("No audio was given")
        return _from_array(np.asarray(data), rate, max_seconds)
    if isinstance(source, np.ndarray):
        return _from_array(source, SAMPLE_RATE, max_seconds)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_size(len(data), max_bytes)
        return _decode(io.BytesIO(data), f"'{name}'" if name else "the uploaded data", max_seconds)
    if isinstance(source, (str, os.PathLike)):
        name = f"'{Path(source).name}'"  # never the server's directory
        _check_size(_file_size(source, name), max_bytes)
        try:
            f = open(source, "rb")  # a file object, so FFmpeg never interprets the name as a URL
        except OSError as e:
            raise AudioError(f"Could not read {name} ({e.strerror})") from None
        with f:
            return _decode(f, name, max_seconds)
    raise TypeError(f"load_audio() cannot read a {type(source).__name__}")


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """Samples of any dtype, shape (n,) or (n, channels), at any rate -> 16 kHz mono float32.

    Integer PCM is scaled to [-1, 1], channels are averaged, NaN/inf become 0 and values outside
    [-1, 1] are clipped (both with a warning), then soxr resamples. Returns (samples, warnings).
    """
    rate = _check_rate(sample_rate)
    warnings: list[str] = []
    frames = _to_float(_as_frames(np.asarray(samples), warnings))
    collector = _Collector()
    collector.add(frames, rate)
    mono, more = collector.finish()
    return mono, warnings + more


# --- arrays -------------------------------------------------------------------------------------


def _from_array(samples: np.ndarray, rate: object, max_seconds: Optional[float]) -> Audio:
    rate = _check_rate(rate)
    warnings: list[str] = []
    frames = _as_frames(samples, warnings)
    # Checked before any work: converting and resampling a huge array is what would be costly.
    _check_seconds(len(frames) / rate, max_seconds)
    frames = _to_float(frames)
    collector = _Collector()
    collector.add(frames, rate)
    mono, more = collector.finish()
    return Audio(mono, tuple(warnings + more), rate, frames.shape[1])


def _as_frames(samples: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Shape (frames, channels), dtype unchanged; raises on what cannot be audio."""
    if samples.ndim == 1:
        samples = samples[:, None]
    elif samples.ndim != 2:
        raise AudioError(
            f"Audio must be a 1-D or 2-D array (samples, channels), got shape {samples.shape}"
        )
    n, channels = samples.shape
    if channels > _MAX_CHANNELS:
        if n > _MAX_CHANNELS:
            raise AudioError(
                f"Audio has {channels} channels; at most {_MAX_CHANNELS} are supported"
            )
        # torchaudio and librosa give (channels, samples); gradio gives (samples, channels).
        samples = samples.T
        n, channels = samples.shape
        warnings.append(
            f"The array looked like (channels, samples); read it as {channels} channel(s) "
            f"of {n} samples"
        )
    if channels == 0:
        raise AudioError("Audio has 0 channels")
    if samples.dtype.kind not in "iuf":
        raise AudioError(f"Audio samples must be integers or floats, not {samples.dtype}")
    return samples


def _to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1) (full scale); floats are kept as they are."""
    kind, bits = samples.dtype.kind, samples.dtype.itemsize * 8
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind == "i":
        return samples.astype(np.float32) * np.float32(2.0 ** -(bits - 1))
    if kind == "u":  # unsigned PCM (8-bit WAV) is centred on 2**(bits-1)
        half = 2.0 ** (bits - 1)
        return ((samples.astype(np.float64) - half) / half).astype(np.float32)
    raise AudioError(f"Audio samples must be integers or floats, not {samples.dtype}")


def _check_rate(rate: object) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise AudioError(f"The sample rate must be a number of Hz, got {rate!r}")
    if not math.isfinite(rate) or rate != int(rate):
        raise AudioError(f"The sample rate must be a whole number of Hz, got {rate}")
    rate = int(rate)
    if rate <= 0:
        raise AudioError(f"The sample rate must be positive, got {rate} Hz")
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise AudioError(
            f"A sample rate of {rate} Hz is not supported (use {_MIN_RATE} to {_MAX_RATE} Hz)"
        )
    return rate


# --- mixing, repair, resampling ---------------------------------------------------------------


class _Collector:
    """Takes (frames, channels) float32 chunks at any rate; gives 16 kHz mono and its warnings.

    Repairs happen per input value, before mixing, so the counts are what the source held.
    clip_is_damage=False for lossy decoders: their float output overshoots full scale a little by
    design, which is clipped without a warning as it says nothing about the file.
    """

    def __init__(self, *, clip_is_damage: bool = True) -> None:
        self.clip_is_damage = clip_is_damage
        self.seconds = 0.0  # of source audio taken in so far
        self.rate: Optional[int] = None
        self.channels: Optional[int] = None
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self._resampler: Optional[soxr.ResampleStream] = None
        self._out: list[np.ndarray] = []
        self._values = self._nonfinite = self._clipped = 0
        self._peak = 0.0
        self._rate_changes = 0

    def add(self, frames: np.ndarray, rate: int) -> None:
        if rate != self.rate or frames.shape[1] != self.channels:
            self._process()  # pending chunks must share a rate and a channel count
            if rate != self.rate:
                if self.rate is not None:
                    self._flush_resampler()
                    self._rate_changes += 1
                self.rate = _check_rate(rate)
                if rate != SAMPLE_RATE:
                    self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
            self.channels = frames.shape[1]
        self._pending.append(frames)
        self._pending_frames += len(frames)
        self.seconds += len(frames) / rate
        if self._pending_frames >= _CHUNK_FRAMES:
            self._process()

    def finish(self) -> tuple[np.ndarray, list[str]]:
        self._process()
        self._flush_resampler()
        mono = np.concatenate(self._out) if self._out else np.zeros(0, np.float32)
        # soxr rings slightly past full scale near clipped input; that is ours, not the file's.
        np.clip(mono, -1.0, 1.0, out=mono)
        return mono, self._warnings(len(mono))

    def _process(self) -> None:
        if not self._pending:
            return
        # Always a copy (even of one chunk): the repairs below must not touch the caller's array.
        chunk = np.concatenate(self._pending, dtype=np.float32)
        self._pending, self._pending_frames = [], 0
        self._values += chunk.size
        bad = ~np.isfinite(chunk)
        if bad.any():
            self._nonfinite += int(bad.sum())
            chunk[bad] = 0.0
        peak = max(float(chunk.max()), -float(chunk.min())) if chunk.size else 0.0
        if peak > 1.0:
            self._clipped += int(np.count_nonzero(np.abs(chunk) > 1.0))
            self._peak = max(self._peak, peak)
            np.clip(chunk, -1.0, 1.0, out=chunk)
        mono = chunk.mean(axis=1, dtype=np.float32) if chunk.shape[1] > 1 else chunk[:, 0]
        mono = np.ascontiguousarray(mono)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono)
        self._out.append(mono)

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            self._out.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._resampler = None

    def _warnings(self, n_out: int) -> list[str]:
        out = []
        if self._nonfinite:
            out.append(
                f"{_count(self._nonfinite, self._values)} were not numbers (NaN or infinite); "
                "replaced them with silence"
            )
        if self._clipped and self.clip_is_damage:
            out.append(
                f"{_count(self._clipped, self._values)} were outside [-1, 1] "
                f"(peak {self._peak:.3g}); clipped them"
            )
        if self._rate_changes:
            out.append(
                f"The sample rate changed {self._rate_changes} time(s) part-way through; "
                "each part was resampled on its own"
            )
        if n_out / SAMPLE_RATE < _SHORT_SECONDS:
            out.append(
                f"Audio is shorter than {_SHORT_SECONDS:g} s ({n_out} samples at "
                f"{SAMPLE_RATE // 1000} kHz); there is little or nothing to transcribe"
            )
        return out


def _count(part: int, whole: int) -> str:
    return f"{part} of {whole} samples ({100 * part / whole:.2g}%)"


# --- files --------------------------------------------------------------------------------------


class _UseAV(Exception):
    """libsndfile cannot (fully) read this; decode it again with PyAV."""

    def __init__(self, warning: Optional[str] = None) -> None:
        super().__init__(warning)
        self.warning = warning


def _decode(f: BinaryIO, name: str, max_seconds: Optional[float]) -> Audio:
    head = f.read(_SNIFF_BYTES)
    size = f.seek(0, io.SEEK_END)
    if size == 0:
        raise AudioError("The file is empty (0 bytes)")
    audio = None
    warnings: list[str] = []
    if head[:4] in _SOUNDFILE_MAGIC:
        try:
            f.seek(0)
            audio = _decode_soundfile(f, head, size, max_seconds)
        except _UseAV as e:
            if e.warning:
                warnings.append(e.warning)
    if audio is None:
        f.seek(0)
        audio = _decode_av(f, name, max_seconds, warnings)
    # Both decoders stop quietly at a cut-off last Ogg page and take the length from the last
    # complete one, so a truncated Ogg looks like a shorter file unless its end is checked.
    if head[:4] == b"OggS" and not _ogg_ends_cleanly(f, size):
        cut = (
            "The file is truncated or damaged: its Ogg stream stops before its end marker; "
            f"decoded the {audio.duration:.1f} s present"
        )
        audio = replace(audio, warnings=(cut,) + audio.warnings)
    return audio


def _decode_soundfile(f: BinaryIO, head: bytes, size: int, max_seconds: Optional[float]) -> Audio:
    wav = _wav_data_chunk(head)
    if wav is not None and wav[0] == 0 and size > wav[1]:
        # Recorders write the header first and patch in the sizes at the end; one that crashed or
        # was streamed leaves "0 bytes of data". libsndfile believes it, FFmpeg reads to the end.
        raise _UseAV(
            "The WAV header says it holds no audio (the recording was never finalised); "
            "decoded what follows it instead"
        )
    try:
        with sf.SoundFile(f) as snd:
            rate, channels, frames = snd.samplerate, snd.channels, snd.frames
            if frames >= 1 << 62:  # libsndfile's "unknown" (e.g. a FLAC written to a pipe)
                raise _UseAV()
            rate = _check_rate(rate)
            _check_seconds(frames / rate, max_seconds)
            collector = _Collector(clip_is_damage=snd.subtype in ("FLOAT", "DOUBLE"))
            for block in snd.blocks(blocksize=_CHUNK_FRAMES, dtype="float32", always_2d=True):
                collector.add(block, rate)
                _check_running(collector.seconds, max_seconds)
    except (AudioError, _UseAV):
        raise
    except (RuntimeError, ValueError, OSError, TypeError):
        # Unknown or damaged beyond libsndfile (e.g. "flac decoder lost sync" in a truncated
        # FLAC): FFmpeg skips the bad packets and keeps what it can.
        raise _UseAV() from None
    mono, warnings = collector.finish()
    # libsndfile quietly shortens a WAV data chunk that runs past the end of the file, so the
    # header's own claim is the only way to tell a truncated WAV from a short one.
    stated = frames / rate
    if wav is not None and wav[2] is not None:
        stated = max(stated, wav[2])
    truncated = _truncation_warning(collector.seconds, stated, tolerance=0.01)
    return Audio(mono, tuple(truncated + warnings), rate, channels)


def _decode_av(f: BinaryIO, name: str, max_seconds: Optional[float], warnings: list[str]) -> Audio:
    try:
        container = av.open(f, mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise AudioError(
            f"This is not audio (or it is badly damaged): could not decode {name} ({_reason(e)})"
        ) from None
    with container:
        if not container.streams.audio:
            found = " and ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise AudioError(
                f"This is not audio: {name} has no audio track "
                f"(it reads as {container.format.long_name}, with {found} only)"
            )
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # FFmpeg has no decoder for it (or the header is garbled)
            raise AudioError(
                f"This is not audio (or it is badly damaged): could not decode {name} "
                "(its audio track is in a format there is no decoder for)"
            )
        stated = _stated_seconds(container, stream)
        if stream.rate:
            _check_rate(stream.rate)
        if stated is not None:
            _check_seconds(stated, max_seconds)
        codec = stream.codec_context.name
        collector = _Collector(clip_is_damage=codec.startswith("pcm_"))
        skipped, stopped = 0, None
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:
                stopped = e
                break
            try:
                frames = packet.decode()  # the last packet is empty and flushes the decoder
            except av.error.InvalidDataError:
                skipped += 1  # one damaged packet; the rest may decode (as faster-whisper does)
                continue
            except av.FFmpegError as e:
                stopped = e
                break
            for frame in frames:
                collector.add(_frame_samples(frame), frame.sample_rate)
                _check_running(collector.seconds, max_seconds)
        decoded = collector.seconds
        if decoded == 0 and (skipped or stopped is not None):
            why = _reason(stopped) if stopped is not None else f"{skipped} damaged packet(s)"
            raise AudioError(
                f"The file is damaged or not audio: could not decode any audio from {name} ({why})"
            )
        if stopped is not None:
            warnings.append(
                f"The file is damaged: decoding stopped after {decoded:.1f} s "
                f"({_reason(stopped)}); used the {decoded:.1f} s before it"
            )
        if skipped:
            warnings.append(
                f"The file is damaged: skipped {skipped} packet(s) that could not be decoded; "
                f"used the {decoded:.1f} s that could"
            )
        if stated is not None:
            warnings += _truncation_warning(decoded, stated, tolerance=_TRUNCATION_TOLERANCE_S)
        mono, more = collector.finish()
        channels = stream.codec_context.layout.nb_channels or collector.channels
        return Audio(mono, tuple(warnings + more), stream.rate or collector.rate, channels)


def _frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as (frames, channels) float32."""
    a = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels), interleaved
    a = a.T if frame.format.is_planar else a.reshape(-1, frame.layout.nb_channels)
    return _to_float(a)


def _stated_seconds(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Optional[float]:
    """The length the container claims, if it claims one (browser webm recordings do not)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _wav_data_chunk(head: bytes) -> Optional[tuple[int, int, Optional[float]]]:
    """(data size, offset where the data starts, seconds that size means) from a RIFF/WAVE header.

    None when this is not a WAV or its data chunk is not within `head`. The seconds are None when
    the size is a placeholder (0 or 0xFFFFFFFF: "unknown, read to the end").
    """
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align, rate = 12, 0, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 22 <= len(head):
            rate = int.from_bytes(head[pos + 12 : pos + 16], "little")
            block_align = int.from_bytes(head[pos + 20 : pos + 22], "little")
        elif chunk == b"data":
            known = size not in (0, 0xFFFFFFFF) and block_align and rate
            return size, pos + 8, (size // block_align) / rate if known else None
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def _ogg_ends_cleanly(f: BinaryIO, size: int) -> bool:
    """Whether the last Ogg page is complete, ends the file and carries the end-of-stream flag."""
    start = max(0, size - 65_536)  # an Ogg page is at most 65,307 bytes
    f.seek(start)
    tail = f.read()
    at = tail.rfind(b"OggS")
    while at >= 0:
        if at + 27 <= len(tail) and tail[at + 4] == 0:  # stream structure version 0
            segments = tail[at + 27 : at + 27 + tail[at + 26]]
            length = 27 + tail[at + 26] + sum(segments)
            if len(segments) == tail[at + 26] and at + length == len(tail):
                return bool(tail[at + 5] & 0x04)  # header type flag 4: last page of the stream
            return False  # cut off, or followed by bytes that are not a page
        at = tail.rfind(b"OggS", 0, at)
    return False


def _truncation_warning(decoded: float, stated: float, *, tolerance: float) -> list[str]:
    if stated - decoded <= max(tolerance, 0.01 * stated):
        return []
    return [
        f"The file is truncated or damaged: decoded {decoded:.1f} s of the {stated:.1f} s "
        "its header declares"
    ]


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _file_size(path: Union[str, os.PathLike], name: str) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"File not found: {name}") from None
    except OSError as e:
        raise AudioError(f"Could not read {name} ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):  # a directory, FIFO or device would fail or never end
        raise AudioError(f"{name} is not a regular file")
    return st.st_size


# --- limits -------------------------------------------------------------------------------------


def _check_size(size: int, max_bytes: Optional[int]) -> None:
    if size == 0:
        raise AudioError("The file is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        got, limit = _distinct(size, max_bytes, _fmt_megabytes)
        raise AudioError(f"Upload is {got}; the limit is {limit} (MAX_UPLOAD_MB)")


def _check_seconds(seconds: float, max_seconds: Optional[float]) -> None:
    if max_seconds is not None and seconds > max_seconds + _LIMIT_SLACK_SECONDS:
        got, limit = _distinct(seconds, max_seconds, _fmt_seconds)
        raise AudioError(f"Audio is {got} long; the limit is {limit} (MAX_AUDIO_SECONDS)")


def _check_running(seconds: float, max_seconds: Optional[float]) -> None:
    """While decoding a file that did not state its length: stop as soon as it is too long."""
    if max_seconds is not None and seconds > max_seconds + _LIMIT_SLACK_SECONDS:
        limit = _fmt_seconds(max_seconds, 1)
        raise AudioError(f"Audio is longer than the limit of {limit} (MAX_AUDIO_SECONDS)")


def _fmt_seconds(seconds: float, digits: int) -> str:
    value, unit = (seconds / 60, "min") if seconds >= 60 else (seconds, "s")
    return f"{_trim(value, digits)} {unit}"


def _fmt_megabytes(size: float, digits: int) -> str:
    return f"{_trim(size / _MB, digits)} MB"


def _trim(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def _distinct(value: float, limit: float, fmt) -> tuple[str, str]:
    """Both formatted with as few digits as still show value > limit (not "30 min" vs "30 min")."""
    for digits in (1, 2, 3):
        a, b = fmt(value, digits), fmt(limit, digits)
        if a != b:
            break
    return a, b

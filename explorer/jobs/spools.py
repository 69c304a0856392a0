"""The audio spools: each job's normalised audio (16 kHz mono, 24-bit FLAC) kept under its id.

``Spool`` keeps it as files in a folder next to the SQLite store; the Redis store has its own
(``explorer.jobs.redis_store.RedisSpool``). Both share ``FlacSpool``: a spool supplies only how
bytes are put and got.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
import soundfile as sf

from explorer.types import SAMPLE_RATE


def flac_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono samples as 24-bit FLAC: within 6e-8 of the float samples that were transcribed,
    at a third of the size of float WAV."""
    out = io.BytesIO()
    sf.write(out, samples, SAMPLE_RATE, subtype="PCM_24", format="FLAC")
    return out.getvalue()


def from_flac(data: bytes) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(data), dtype="float32")
    return samples


class AudioSpool(Protocol):
    """Each job's normalised audio (16 kHz mono, 24-bit FLAC) by job id. Reading, exporting or
    copying the audio of a job that has none raises FileNotFoundError."""

    def write(self, job_id: str, samples: np.ndarray) -> None: ...
    def read(self, job_id: str) -> np.ndarray: ...
    def exists(self, job_id: str) -> bool: ...
    def export(self, job_id: str, folder: Path, name: str = "") -> Path: ...
    def copy(self, source_id: str, job_id: str) -> None: ...
    def delete(self, job_ids: Iterable[str]) -> None: ...
    def orphans(self, known: set[str], older_than: float) -> list[str]: ...


class FlacSpool:
    """What both spools share: a job's audio as the FLAC bytes of flac_bytes, kept under its id.
    A spool supplies put_bytes (store them) and get_bytes (them, or FileNotFoundError)."""

    suffix = ".flac"

    def put_bytes(self, job_id: str, data: bytes) -> None:
        raise NotImplementedError

    def get_bytes(self, job_id: str) -> bytes:
        raise NotImplementedError

    def write(self, job_id: str, samples: np.ndarray) -> None:
        self.put_bytes(job_id, flac_bytes(samples))

    def read(self, job_id: str) -> np.ndarray:
        return from_flac(self.get_bytes(job_id))

    def export(self, job_id: str, folder: Path, name: str = "") -> Path:
        """A copy of the audio as folder/<name or job id>.flac (for the UI to serve; the spool stays private)."""
        data = self.get_bytes(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name or job_id}{self.suffix}"
        target.write_bytes(data)
        return target

    def copy(self, source_id: str, job_id: str) -> None:
        self.put_bytes(job_id, self.get_bytes(source_id))


@dataclass
class Spool(FlacSpool):
    """The audio spool as a folder of FLAC files named by job id (next to the SQLite store)."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}{self.suffix}"

    def _partial(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.partial{self.suffix}"

    def put_bytes(self, job_id: str, data: bytes) -> None:
        self._partial(job_id).write_bytes(data)
        self._partial(job_id).replace(self.path(job_id))  # atomic: never a half-written file under a job's name

    def get_bytes(self, job_id: str) -> bytes:
        return self.path(job_id).read_bytes()

    def exists(self, job_id: str) -> bool:
        return self.path(job_id).is_file()

    def delete(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self.path(job_id).unlink(missing_ok=True)
            self._partial(job_id).unlink(missing_ok=True)

    def orphans(self, known: set[str], older_than: float) -> list[str]:
        """Ids of spooled audio with no job (a crash between writing the audio and adding the job, a
        job deleted while it ran), written before `older_than`: a file being submitted right now is
        written before its job exists and must not be taken for an orphan."""
        return sorted({
            p.name.split(".")[0] for p in self.folder.iterdir()
            if p.is_file() and p.name.split(".")[0] not in known and p.stat().st_mtime < older_than
        })  # fmt: skip

"""Job values as both stores keep them: options, results and warnings as JSON, a worker as a row of fields."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Optional, Sequence

from explorer.jobs.model import Running, WorkerInfo
from explorer.types import Metrics, RunEnvironment, Segment, TranscribeOptions, Transcription, Word


def options_json(options: TranscribeOptions) -> str:
    """Options as stored; equal options give equal text (a claim batches jobs whose text matches)."""
    return json.dumps(asdict(options), sort_keys=True)


def options_from_json(text: str) -> TranscribeOptions:
    return TranscribeOptions(**json.loads(text))


def warnings_json(warnings: Sequence[str]) -> str:
    return json.dumps(list(warnings), ensure_ascii=False)


def warnings_from_json(text: Optional[str]) -> tuple[str, ...]:
    """Stored warnings back as a tuple; none for none (a job stored before jobs kept them)."""
    return tuple(json.loads(text)) if text else ()


def result_json(result: Transcription) -> str:
    return json.dumps(result.to_dict())


def result_from_json(text: Optional[str]) -> Optional[Transcription]:
    """A stored result back as a Transcription; None for none (an empty or absent value)."""
    if not text:
        return None
    d = json.loads(text)
    segments = tuple(
        Segment(s["start"], s["end"], s["text"], tuple(Word(**w) for w in s.get("words", ()))) for s in d["segments"]
    )
    return Transcription(
        model=d["model"],
        text=d["text"],
        segments=segments,
        language=d["language"],
        options=TranscribeOptions(**d["options"]),
        metrics=Metrics(**d["metrics"]),
        warnings=tuple(d.get("warnings", ())),
        environment=RunEnvironment.from_dict(d["environment"]) if d.get("environment") else None,
    )


def running_json(current: Sequence[Running]) -> str:
    """What a worker runs as stored: [[model, [job id, ...]], ...]."""
    return json.dumps([[model, list(ids)] for model, ids in current])


def running_from_json(text: str) -> tuple[Running, ...]:
    """A stored WorkerInfo.current back as Running values. A store written before it was JSON
    holds text, "model: id1, id2; other: id3" (or "" when idle): read as such."""
    if text.startswith("["):
        return tuple(Running(model, tuple(ids)) for model, ids in json.loads(text))
    parts = (part.rpartition(": ") for part in text.split("; ") if part)
    return tuple(Running(model, tuple(ids.split(", "))) for model, _, ids in parts)


WORKER_FIELDS = ("id", "host", "pid", "models", "jobs_done", "started_at", "last_seen", "current")


def worker_values(info: WorkerInfo) -> tuple:
    """A WorkerInfo as stored: models as a JSON list and current as running_json, in WORKER_FIELDS order."""
    return (info.id, info.host, info.pid, json.dumps(list(info.models)), info.jobs_done, info.started_at,
            info.last_seen, running_json(info.current))  # fmt: skip


def worker_from_values(values: Sequence) -> WorkerInfo:
    """A stored worker (values in WORKER_FIELDS order, as numbers or as text) back as a WorkerInfo."""
    id_, host, pid, models, done, started, seen, current = values
    return WorkerInfo(id_, host, int(pid), tuple(json.loads(models)), int(done), float(started), float(seen),
                      running_from_json(current))  # fmt: skip

"""Transcript downloads: TXT, SRT, WebVTT and JSON, as pure functions of a Transcription."""

from __future__ import annotations

import json

from explorer.types import Transcription


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_txt(t: Transcription) -> str:
    return t.text.strip() + "\n"


def to_srt(t: Transcription) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(t.segments, 1)
    ]
    return "\n".join(blocks)


def to_vtt(t: Transcription) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in t.segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_json(t: Transcription) -> str:
    return json.dumps(t.to_dict(), indent=2, ensure_ascii=False)


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json}

import json

from explorer import formats
from explorer.metrics import compute
from explorer.types import Segment, TranscribeOptions, Transcription


def sample() -> Transcription:
    segs = (Segment(0.0, 2.5, " Hello there."), Segment(2.5, 3661.0042, " General Kenobi."))
    return Transcription(
        model="faster-whisper/tiny.en",
        text="Hello there. General Kenobi.",
        segments=segs,
        language="en",
        options=TranscribeOptions(),
        metrics=compute([0.1, 0.2], "segment", 3661.0, 1.0),
        warnings=("a warning",),
    )


def test_srt():
    assert formats.to_srt(sample()) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
        "2\n00:00:02,500 --> 01:01:01,004\nGeneral Kenobi.\n"
    )


def test_vtt():
    out = formats.to_vtt(sample())
    assert out.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n")
    assert "00:00:02.500 --> 01:01:01.004\nGeneral Kenobi." in out


def test_txt_and_json_round_trip():
    t = sample()
    assert formats.to_txt(t) == "Hello there. General Kenobi.\n"
    data = json.loads(formats.to_json(t))
    assert data["segments"][1]["end"] == 3661.0042
    assert data["metrics"]["rtfx"] == 3661.0
    assert data["warnings"] == ["a warning"]

"""Open-ASR Model Explorer: run open speech recognition models on audio and measure them.

The entry class is ``explorer.service.ModelService``; ``explorer.audio.load_audio`` turns any
input into what it takes. Importing the package stays cheap: engines load their libraries lazily.
"""

from explorer.config import Settings
from explorer.types import Metrics, Segment, Token, TranscribeOptions, Transcription, Word

__all__ = ["Metrics", "Segment", "Settings", "Token", "TranscribeOptions", "Transcription", "Word"]

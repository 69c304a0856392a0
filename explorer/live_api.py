"""Live streaming over HTTP, on the app's /v1 routes (same API key and body limit as the
OpenAI-compatible ones): open a stream, post audio chunks as they are captured, close it.

    POST /v1/live?model=KEY&language=en&min_chunk=1        -> {"stream_id": ..., ...}
    POST /v1/live/{stream_id}/audio[?sample_rate=16000]     body: raw PCM s16le mono -> update
    GET  /v1/live/{stream_id}                               -> the latest update
    POST /v1/live/{stream_id}/close[?align=true]            -> the final update, with the latency

Each update is ``LiveUpdate.to_dict()``: ``committed`` (only grows), ``unconfirmed`` (may change),
``audio_seconds``, ``passes``; the final one has ``latency`` (explorer.latency's StreamLatency).
A stream belongs to the address that opened it; one left without audio for
LIVE_STREAM_IDLE_SECONDS is closed (the client left).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer

from explorer import catalog
from explorer.audio import AudioError
from explorer.config import Settings
from explorer.live import LiveStreamError, LiveStreams, NoSuchStream, TooManyStreams, as_16k
from explorer.openai_api import ApiError, model_not_found, model_unavailable, route_class
from explorer.service import ModelError
from explorer.types import TranscribeOptions

MAX_CHUNK_SECONDS = 30  # one POST of audio at most


def _owner(request: Request) -> str:
    return f"api:{request.client.host if request.client else '?'}"


def _refused(exc: Exception) -> ApiError:
    if isinstance(exc, TooManyStreams):
        return ApiError(429, str(exc), code="too_many_streams")
    if isinstance(exc, NoSuchStream):
        return ApiError(404, str(exc), code="stream_not_found")
    if isinstance(exc, ModelError):
        return model_unavailable(exc)
    return ApiError(400, str(exc).strip("'\""), code="invalid_value")


def build_live_router(streams: LiveStreams, settings: Settings) -> APIRouter:
    auth = [Depends(HTTPBearer(auto_error=False))] if settings.api_key else []
    router = APIRouter(prefix="/v1/live", tags=["Live streaming"], route_class=route_class(settings), dependencies=auth)

    @router.post("", summary="Open a live stream")
    def open_stream(request: Request, model: str, language: Optional[str] = "en", min_chunk: float = 1.0) -> dict:
        if model not in catalog.BY_KEY:
            raise model_not_found(model)  # as /v1/audio/* answers it
        try:
            stream = streams.open(_owner(request), model, TranscribeOptions(language=language or None), min_chunk)
        except (LiveStreamError, ModelError, ValueError) as exc:
            raise _refused(exc) from exc
        return {**stream.update().to_dict(), "model": stream.key, "min_chunk": min_chunk,
                "max_seconds": settings.live_stream_max_seconds, "idle_seconds": settings.live_stream_idle_seconds}  # fmt: skip

    @router.post("/{stream_id}/audio", summary="Send audio: raw PCM s16le mono, at sample_rate")
    async def push(stream_id: str, request: Request, sample_rate: int = 16000) -> dict:
        try:
            stream = streams.get(stream_id, _owner(request))
            body = await request.body()
            if len(body) % 2:
                raise AudioError("PCM s16le audio has an even number of bytes")
            if not 8000 <= sample_rate <= 192000:
                raise AudioError("sample_rate must be between 8000 and 192000")
            if len(body) // 2 > MAX_CHUNK_SECONDS * sample_rate:
                raise AudioError(f"send at most {MAX_CHUNK_SECONDS} s of audio per request")
            samples = as_16k(sample_rate, np.frombuffer(body, dtype="<i2"))
            return (await run_in_threadpool(stream.push, samples)).to_dict()
        except (LiveStreamError, ModelError, AudioError, ValueError) as exc:
            raise _refused(exc) from exc

    @router.get("/{stream_id}", summary="The latest update of a live stream")
    def state(stream_id: str, request: Request) -> dict:
        try:
            return streams.get(stream_id, _owner(request)).update().to_dict()
        except LiveStreamError as exc:
            raise _refused(exc) from exc

    @router.post("/{stream_id}/close", summary="Close a live stream: the tail made final, the latency")
    def close(stream_id: str, request: Request, align: bool = False) -> dict:
        try:
            return streams.close(stream_id, _owner(request), align=align).to_dict()
        except (LiveStreamError, ModelError, ValueError) as exc:
            raise _refused(exc) from exc

    return router

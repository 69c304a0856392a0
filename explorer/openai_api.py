"""OpenAI-compatible speech-to-text routes on the app's own server: `/v1/audio/transcriptions`,
`/v1/audio/translations` and `/v1/models`, answered by the same ModelService as the Gradio UI
(same models, same device slots, same queue bound), so a script holding the `openai` client or
curl can use any catalog model and gets the explorer's metrics in `x_explorer`.

`build_openai_router` returns a FastAPI router; app.py hands its routes to Gradio's FastAPI app.
Answers are pure functions of a Transcription (`transcription_json`, `verbose_json`, `render`);
the router does the edges: the upload, the queue bound, threads, errors in OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import shutil
import tempfile
import threading
import time
import weakref
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Annotated, AsyncIterator, Iterator, Literal, Optional

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from explorer import catalog, formats, metrics
from explorer.audio import Audio, AudioError
from explorer.config import MB, Settings
from explorer.service import ModelError, ModelService, Update
from explorer.types import Segment, TranscribeOptions, Transcription

WHISPER_1 = "whisper-1"  # OpenAI's model name: served by WHISPER_MODEL
ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["segment", "word"]
# The multipart framing and the small form fields around the file, over MAX_UPLOAD_MB.
FORM_SLACK_BYTES = 64 * 1024
MEDIA_TYPES = {"text": "text/plain; charset=utf-8", "srt": "application/x-subrip", "vtt": "text/vtt; charset=utf-8"}
ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error", 503: "service_unavailable"}


class ApiError(HTTPException):
    """An answer in OpenAI's error shape, {"error": {"message", "type", "param", "code"}}. An
    HTTPException, so that FastAPI lets it through while it parses the form (the upload limit)."""

    def __init__(self, status: int, message: str, *, param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None):  # fmt: skip
        super().__init__(status, message, headers)
        self.message, self.param, self.code = message, param, code

    def body(self) -> dict:
        kind = ERROR_TYPES.get(self.status_code, "invalid_request_error" if self.status_code < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


def validation_error(exc: RequestValidationError) -> ApiError:
    """FastAPI's 422 as OpenAI's 400, naming the first bad parameter."""
    first = exc.errors()[0] if exc.errors() else {}
    param = str(first.get("loc", ("", "?"))[-1])
    return ApiError(400, f"{param}: {first.get('msg', 'invalid value')}", param=param, code="invalid_value")


# -- the answers: pure functions of a Transcription -------------------------------------------------
def compression_ratio(text: str) -> float:
    """Whisper's definition: UTF-8 bytes / zlib-compressed bytes (high = repetitive text)."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def segment_json(index: int, segment: Segment, temperature: float) -> dict:
    """OpenAI's segment fields. The engines report no token ids or probabilities: those are
    [] and null rather than made-up numbers; `seek` is the segment's start in 10 ms frames."""
    return {
        "id": index,
        "seek": round(segment.start * 100),
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": [],
        "temperature": temperature,
        "avg_logprob": None,
        "compression_ratio": compression_ratio(segment.text),
        "no_speech_prob": None,
    }


def explorer_fields(t: Transcription, extra_warnings: tuple[str, ...] = (), price_per_hour: Optional[float] = None) -> dict:
    """What the explorer adds, under one key a strict client ignores: metrics, warnings, how it ran."""
    fields = {
        "model": t.model,
        "options": asdict(t.options),
        "metrics": asdict(t.metrics),
        "warnings": [*t.warnings, *extra_warnings],
        "environment": asdict(t.environment) if t.environment else None,
    }
    cost = metrics.cost_per_audio_hour(price_per_hour, t.metrics.rtfx)
    if cost is not None:
        fields["cost_per_audio_hour"] = cost
    return fields


def usage(t: Transcription) -> dict:
    return {"type": "duration", "seconds": round(t.metrics.audio_seconds, 3)}


def transcription_json(t: Transcription, explorer: dict) -> dict:
    return {"text": t.text, "usage": usage(t), "x_explorer": explorer}


def verbose_json(t: Transcription, granularities: tuple[str, ...], temperature: float, explorer: dict) -> dict:
    answer = {
        "task": t.options.task,
        "language": t.language,
        "duration": round(t.metrics.audio_seconds, 3),
        "text": t.text,
        "segments": [segment_json(i, s, temperature) for i, s in enumerate(t.segments)],
        "usage": usage(t),
    }
    if "word" in granularities:
        answer["words"] = [
            {"word": w.text.strip(), "start": round(w.start, 3), "end": round(w.end, 3)} for s in t.segments for w in s.words
        ]
    answer["x_explorer"] = explorer
    return answer


def render(t: Transcription, response_format: str, granularities: tuple[str, ...], temperature: float,
           explorer: dict) -> Response:  # fmt: skip
    if response_format == "json":
        return JSONResponse(transcription_json(t, explorer))
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(t, granularities, temperature, explorer))
    writer = {"text": formats.to_txt, "srt": formats.to_srt, "vtt": formats.to_vtt}[response_format]
    return Response(writer(t), media_type=MEDIA_TYPES[response_format])


def text_delta(sent: str, text: str) -> str:
    """What `text` (the transcript so far) adds to what was already sent; nothing if it no longer
    extends it (a delta cannot take text back: the done event carries the final text)."""
    return text[len(sent) :] if text.startswith(sent) else ""


def sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


# -- the queue bound ---------------------------------------------------------------------------------
class SharedQueueBound:
    """QUEUE_MAX_SIZE bounds the requests waiting for a model, the Gradio queue's and this API's
    together. Gradio counts its own waiting events against its queue's max_size; an API request
    counts as waiting while more API requests are in flight than there are device slots
    (NUM_WORKERS). Each side sees the other: an API request is admitted only while Gradio's
    waiting events plus the API's waiting requests stay within the bound, and Gradio's max_size
    is lowered by the API's waiting requests. (While the UI holds a slot, an API request that
    waits for it counts as running: the bound can be passed by at most NUM_WORKERS.)"""

    def __init__(self, max_waiting: int, slots: int, gradio_queue=None):
        self.max_waiting, self.slots = max_waiting, slots
        self._gradio_queue = gradio_queue  # anything with len() and a max_size (gradio's Queue)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._mean_seconds: Optional[float] = None

    @property
    def waiting(self) -> int:
        return max(0, self._in_flight - self.slots)

    def _gradio_waiting(self) -> int:
        return len(self._gradio_queue) if self._gradio_queue is not None else 0

    def _share(self) -> None:
        if self._gradio_queue is not None:
            self._gradio_queue.max_size = max(0, self.max_waiting - self.waiting)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the waiting requests' mean run, over the slots."""
        mean = self._mean_seconds or 1.0
        return min(3600, max(1, math.ceil(mean * (self.waiting + 1) / self.slots)))

    def admit(self) -> None:
        """Take a place or raise 429. Call on the event loop's thread (it reads Gradio's queue)."""
        gradio_waiting = self._gradio_waiting()
        with self._lock:
            if gradio_waiting + max(0, self._in_flight + 1 - self.slots) > self.max_waiting:
                raise ApiError(
                    429,
                    f"The queue is full ({self.max_waiting} requests waiting, QUEUE_MAX_SIZE): try again later",
                    code="queue_full",
                    headers={"Retry-After": str(self.retry_after())},
                )
            self._in_flight += 1
            self._share()

    def release(self, seconds: Optional[float] = None) -> None:
        with self._lock:
            self._in_flight -= 1
            if seconds is not None:  # a moving mean of the run times, for Retry-After
                self._mean_seconds = seconds if self._mean_seconds is None else 0.8 * self._mean_seconds + 0.2 * seconds
            self._share()


# -- the edges: authorisation, the upload limit, errors ---------------------------------------------
def _authorize(request: Request, api_key: Optional[str]) -> None:
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        raise ApiError(401, "Missing or wrong API key: send `Authorization: Bearer <API_KEY>`", code="invalid_api_key")


def _too_large(settings: Settings) -> ApiError:
    return ApiError(413, f"The upload is over the limit of {settings.max_upload_mb:g} MB (MAX_UPLOAD_MB)",
                    param="file", code="file_too_large")  # fmt: skip


def _limit_body(request: Request, settings: Settings) -> Request:
    """The request with its body counted as it arrives: over the limit, 413 before the rest is
    read (a declared Content-Length over it is refused before anything is read)."""
    limit = settings.max_upload_bytes + FORM_SLACK_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(settings)
    seen = 0

    async def receive():
        nonlocal seen
        message = await request.receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(settings)
        return message

    return Request(request.scope, receive)


def route_class(settings: Settings) -> type[APIRoute]:
    class OpenAIRoute(APIRoute):
        """Checks the key and bounds the body before the form is parsed; every error in OpenAI's shape."""

        def get_route_handler(self):
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                try:
                    _authorize(request, settings.api_key)
                    return await handler(_limit_body(request, settings))
                except ApiError as exc:
                    return exc.response()
                except RequestValidationError as exc:
                    return validation_error(exc).response()
                except HTTPException as exc:
                    return ApiError(exc.status_code, str(exc.detail)).response()

            return answer

    return OpenAIRoute


def _save_upload(upload: UploadFile, settings: Settings) -> str:
    """The upload (spooled to disk by Starlette past 1 MB) copied in chunks to a file of its own
    name in a folder of its own, for the decoder and its messages; 413 past MAX_UPLOAD_MB. The
    caller removes it with `_remove_upload`."""
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise _too_large(settings)
    name = os.path.basename(upload.filename or "").strip()[-100:] or "upload"
    path = os.path.join(tempfile.mkdtemp(prefix="openai-upload-"), name)
    with open(path, "wb") as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, MB)
    return path


def _remove_upload(path: str) -> None:
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def model_not_found(model: str) -> ApiError:
    """404 for a name the catalog does not know (every /v1 route answers it alike)."""
    return ApiError(404, f"The model {model!r} does not exist; GET /v1/models lists them", param="model", code="model_not_found")


def model_unavailable(exc: ModelError) -> ApiError:
    """503 for a catalog model that cannot run here, and why."""
    return ApiError(503, str(exc), param="model", code="model_unavailable")


# -- the router --------------------------------------------------------------------------------------
def build_openai_router(service: ModelService, settings: Settings, gradio_queue=None) -> APIRouter:
    """The /v1 routes. gradio_queue: the Gradio app's queue (`demo._queue`), whose bound they share."""
    bound = SharedQueueBound(settings.queue_max_size, settings.num_workers, gradio_queue)
    # Admitted requests never wait for a thread: at most max_waiting + slots are in flight. Their
    # own pool, so that waiting API requests never hold the threads Gradio's handlers run on.
    pool = ThreadPoolExecutor(settings.queue_max_size + settings.num_workers, thread_name_prefix="openai-api")
    auth = [Depends(HTTPBearer(auto_error=False))] if settings.api_key else []  # shown in /docs; checked in OpenAIRoute
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], route_class=route_class(settings), dependencies=auth)

    def model_key(model: str) -> str:
        key = settings.default_model if model == WHISPER_1 else model
        if key not in catalog.BY_KEY:
            raise model_not_found(model)
        return key

    def check(key: str, options: TranscribeOptions) -> None:
        try:
            service.check(key, options)
        except ModelError as exc:
            raise model_unavailable(exc) from None
        except ValueError as exc:
            raise ApiError(400, str(exc), param="language", code="unsupported_language") from None

    def decode(path: str) -> Audio:
        try:
            return service.decode(path)
        except AudioError as exc:
            raise ApiError(400, str(exc), param="file", code="invalid_audio") from None

    async def respond(file: UploadFile, model: str, options: TranscribeOptions, response_format: str,
                     granularities: Optional[list[str]], temperature: float, stream: bool) -> Response:  # fmt: skip
        granularities = tuple(granularities or ())
        if granularities and response_format != "verbose_json" and not stream:
            raise ApiError(400, "timestamp_granularities[] needs response_format=verbose_json",
                           param="timestamp_granularities[]", code="invalid_value")  # fmt: skip
        key = model_key(model)
        options = TranscribeOptions(**{**asdict(options), "word_timestamps": "word" in granularities})
        check(key, options)  # a request that cannot run fails before its upload is copied
        extra = (f"temperature {temperature:g} ignored: decoding here is deterministic",) if temperature else ()
        path = await run_in_threadpool(_save_upload, file, settings)
        loop = asyncio.get_running_loop()
        try:
            bound.admit()
        except ApiError:
            _remove_upload(path)
            raise
        start = time.perf_counter()

        def release() -> None:
            _remove_upload(path)
            bound.release(time.perf_counter() - start)

        if not stream:

            def run() -> Transcription:
                try:
                    return service.transcribe(key, decode(path), options)
                except ModelError as exc:  # a load that failed
                    raise ApiError(503, str(exc), param="model", code="model_unavailable") from None
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from None
                finally:
                    release()

            t = await loop.run_in_executor(pool, run)
            explorer = explorer_fields(t, extra, settings.device_price_per_hour)
            return render(t, response_format, granularities, temperature, explorer)
        try:
            audio = await loop.run_in_executor(pool, decode, path)
        except ApiError:
            release()
            raise
        updates = service.stream(key, audio, options)
        return StreamingResponse(sse_stream(updates, extra, release), media_type="text/event-stream")

    def sse_stream(updates: Iterator[Update], extra: tuple[str, ...], release) -> AsyncIterator[str]:
        """The events, and their clean-up once: when they end, or when the response drops them
        unstarted (a client gone before the first event), so the queue place is always given back."""
        turn = threading.Lock()  # one step of the generator at a time, its close included
        done = threading.Event()

        def close() -> None:
            with turn:  # after a step still running for a reader that went away
                updates.close()
            if not done.is_set():
                done.set()
                release()

        def start_close() -> None:  # not awaited: a cancelled stream (the client left) may not await any more
            threading.Thread(target=close, name="openai-api-close", daemon=True).start()

        stream = events(updates, extra, turn, start_close)
        weakref.finalize(stream, start_close)
        return stream

    async def events(updates: Iterator[Update], extra: tuple[str, ...], turn: threading.Lock, start_close) -> AsyncIterator[str]:
        """OpenAI's transcript.text.delta events as the engine emits, then transcript.text.done."""
        loop = asyncio.get_running_loop()
        end = object()

        def step():
            with turn:
                return next(updates, end)

        sent = ""
        try:
            while (update := await loop.run_in_executor(pool, step)) is not end:
                if update.result is None:
                    delta = text_delta(sent, update.text)
                    if delta:
                        sent += delta
                        yield sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None})
                else:
                    t = update.result
                    explorer = explorer_fields(t, extra, settings.device_price_per_hour)
                    yield sse({"type": "transcript.text.done", "text": t.text, "logprobs": None, "x_explorer": explorer})
        except (ModelError, ValueError) as exc:  # after the 200: an error event, as OpenAI streams them
            yield sse(ApiError(503 if isinstance(exc, ModelError) else 400, str(exc)).body())
        finally:
            start_close()

    @router.post("/audio/transcriptions", response_model=None, summary="Transcribe audio (OpenAI's create transcription)")
    async def transcriptions(
        file: Annotated[UploadFile, File(description="audio: wav, flac, mp3, ogg/opus, webm, m4a")],
        model: Annotated[str, Form(description="a catalog key (GET /v1/models); whisper-1 means WHISPER_MODEL")],
        language: Annotated[Optional[str], Form(description="ISO-639-1 code; empty: detect")] = None,
        prompt: Annotated[Optional[str], Form(description="text the decoder is conditioned on")] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0, le=1, description="accepted; decoding is deterministic")] = 0.0,
        timestamp_granularities: Annotated[Optional[list[Granularity]], Form(alias="timestamp_granularities[]")] = None,
        stream: Annotated[bool, Form(description="server-sent transcript.text.delta / .done events")] = False,
        beam_size: Annotated[int, Form(ge=1, le=16, description="explorer extension: beam width (1: greedy)")] = 1,
        vad_filter: Annotated[bool, Form(description="explorer extension: skip non-speech (Silero VAD)")] = True,
    ) -> Response:
        options = TranscribeOptions(language=language or None, prompt=prompt or None, beam_size=beam_size, vad_filter=vad_filter)
        return await respond(file, model, options, response_format, timestamp_granularities, temperature, stream)

    @router.post("/audio/translations", response_model=None, summary="Translate audio into English text")
    async def translations(
        file: Annotated[UploadFile, File(description="audio: wav, flac, mp3, ogg/opus, webm, m4a")],
        model: Annotated[str, Form(description="a catalog key (GET /v1/models); whisper-1 means WHISPER_MODEL")],
        prompt: Annotated[Optional[str], Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
        beam_size: Annotated[int, Form(ge=1, le=16, description="explorer extension: beam width (1: greedy)")] = 1,
        vad_filter: Annotated[bool, Form(description="explorer extension: skip non-speech (Silero VAD)")] = True,
    ) -> Response:
        options = TranscribeOptions(task="translate", prompt=prompt or None, beam_size=beam_size, vad_filter=vad_filter)
        return await respond(file, model, options, response_format, None, temperature, False)

    def model_card(key: str) -> dict:
        spec = catalog.BY_KEY[key]
        return {"id": key, "object": "model", "created": 0, "owned_by": (spec.hub_repo or "open-asr-explorer").split("/")[0]}

    @router.get("/models", summary="The catalog's models that are ready here")
    def models() -> dict:
        return {"object": "list", "data": [model_card(m["key"]) for m in service.models() if m["status"] == "ready"]}

    @router.get("/models/{model:path}", summary="One model")
    def model(model: str) -> dict:
        return model_card(model_key(model))

    return router


def build_unknown_url_router(settings: Settings) -> APIRouter:
    """Any other /v1 path or method, answered as OpenAI does ("Invalid URL (GET /v1/...)", 404, in
    its error shape) rather than as FastAPI's {"detail": "Not Found"}. Its routes go
    after every other /v1 route: they match everything under /v1."""
    router = APIRouter(prefix="/v1", route_class=route_class(settings))  # the key is checked first, as on every /v1 route

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown_url(request: Request) -> Response:
        raise ApiError(404, f"Invalid URL ({request.method} {request.url.path})")

    return router

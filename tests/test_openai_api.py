"""The OpenAI-compatible routes of the running app (`python app.py`, offline), through the real
clients people hold: the official `openai` package and curl. Nothing is mocked: real tiny.en and
base weights, real LibriVox speech; accuracy is a WER bound, never exact strings."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from gradio_client import handle_file

from explorer.openai_api import SharedQueueBound, text_delta
from explorer.scoring import corpus_wer
from tests.running_app import RunningApp
from tests.test_app import _bad_inputs

ROOT = Path(__file__).resolve().parent.parent
TINY = "faster-whisper/tiny.en"
BASE = "faster-whisper/base"


def client_for(app, api_key: str = "unused", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url + "v1", api_key=api_key, **kwargs)


def transcribe(client, path: Path, **kwargs):
    with open(path, "rb") as audio:
        return client.audio.transcriptions.create(file=audio, **{"model": TINY, **kwargs})


def wer(reference: str, hypothesis: str) -> float:
    return corpus_wer([reference], [hypothesis]).wer


@pytest.fixture(scope="module")
def curl() -> str:
    found = shutil.which("curl")
    if not found:
        pytest.fail("curl is not installed (Debian package curl)")
    return found


def test_json_through_the_openai_client_is_under_10_percent_wer(app, clips):
    client = client_for(app)
    results = [transcribe(client, c.path, extra_body={"beam_size": 5}) for c in clips]
    score = corpus_wer([c.reference for c in clips], [r.text for r in results])
    assert score.wer <= 0.10, (score, [r.text for r in results])
    explorer = results[0].x_explorer  # the explorer's own fields ride along; the client keeps them
    assert explorer["model"] == TINY and explorer["options"]["beam_size"] == 5
    assert explorer["metrics"]["rtfx"] > 0 and explorer["environment"]["engine"] == "faster-whisper"
    assert results[0].usage.type == "duration" and results[0].usage.seconds > 5


def test_text_srt_vtt_and_verbose_json(app, clips):
    client = client_for(app)
    clip = clips[0]
    text = transcribe(client, clip.path, response_format="text")
    assert isinstance(text, str) and wer(clip.reference, text) <= 0.25, text
    srt = transcribe(client, clip.path, response_format="srt")
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S", srt), srt
    vtt = transcribe(client, clip.path, response_format="vtt")
    assert re.match(r"WEBVTT\n\n00:00:\d\d\.\d{3} --> 00:00:\d\d\.\d{3}\n\S", vtt), vtt
    verbose = transcribe(client, clip.path, response_format="verbose_json")
    assert verbose.language == "en" and verbose.task == "transcribe"
    assert verbose.duration == pytest.approx(sf.info(clip.path).duration, abs=0.01)
    assert wer(clip.reference, verbose.text) <= 0.25, verbose.text
    assert verbose.segments and all(s.start < s.end <= verbose.duration + 0.5 for s in verbose.segments)
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))
    assert "".join(s.text for s in verbose.segments).strip() == verbose.text
    assert verbose.words is None  # only when asked for
    assert verbose.x_explorer["metrics"]["processing_seconds"] > 0


def test_word_and_segment_timestamps(app, clips):
    clip = clips[0]
    verbose = transcribe(client_for(app), clip.path, response_format="verbose_json",
                         timestamp_granularities=["word", "segment"])  # fmt: skip
    assert verbose.segments and all(s.start < s.end for s in verbose.segments)
    words = verbose.words
    assert len(words) >= 10
    assert all(w.start <= w.end for w in words) and all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert words[-1].end <= verbose.duration + 0.5
    assert wer(clip.reference, " ".join(w.word for w in words)) <= 0.25
    assert verbose.x_explorer["options"]["word_timestamps"] is True


def test_stream_sends_deltas_as_the_engine_emits_then_done(app, long_speech, clips, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.concatenate([long_speech, long_speech]), 16000)  # ~54 s: two decoder windows, emitted apart
    events, arrivals = [], []
    for event in transcribe(client_for(app), path, stream=True):  # the client yields each event as it arrives
        events.append(event)
        arrivals.append(time.perf_counter())
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 3 and events[-1].type == "transcript.text.done" and events[:-1] == deltas
    done = events[-1]
    assert "".join(d.delta for d in deltas) == done.text
    assert corpus_wer([" ".join([c.reference for c in clips] * 2)], [done.text]).wer <= 0.15, done.text
    m = done.x_explorer["metrics"]
    assert m["emissions"] >= 3 and m["ttft_seconds"] < m["processing_seconds"]
    # Sent as emitted, not held to the end: the client saw the first delta about as long before
    # the done event as the engine emitted its first segment before its last.
    engine_gap, client_gap = m["processing_seconds"] - m["ttft_seconds"], arrivals[-1] - arrivals[0]
    assert engine_gap >= 0.2 and client_gap >= 0.5 * engine_gap, (engine_gap, client_gap)


def test_translations(app, clips):
    client = client_for(app)
    clip = clips[2]
    with open(clip.path, "rb") as audio:
        verbose = client.audio.translations.create(model=BASE, file=audio, response_format="verbose_json")
    assert verbose.x_explorer["options"]["task"] == "translate" and not verbose.x_explorer["warnings"]
    assert wer(clip.reference, verbose.text) <= 0.25, verbose.text  # English speech, English text
    with open(clip.path, "rb") as audio:  # an English-only model says it cannot translate, and transcribes
        plain = client.audio.translations.create(model=TINY, file=audio, response_format="verbose_json")
    assert any("does not translate" in w for w in plain.x_explorer["warnings"])
    assert wer(clip.reference, plain.text) <= 0.25, plain.text


def test_models_list_the_ready_catalog(app):
    client = client_for(app)
    ids = [m.id for m in client.models.list()]
    assert TINY in ids and BASE in ids and "faster-whisper/large-v3" not in ids  # offline: not ready
    assert client.models.retrieve(TINY).id == TINY
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no/such-model")


def test_unknown_urls_and_methods_get_openai_404s_and_known_routes_still_answer(app):
    """What this server does not implement answers as OpenAI does: 404, "Invalid URL (METHOD
    path)", in the error shape its clients parse."""
    client = client_for(app)
    with pytest.raises(openai.NotFoundError) as info:
        client.audio.speech.create(model=TINY, voice="alloy", input="text to speech is not served here")
    assert info.value.body["message"] == "Invalid URL (POST /v1/audio/speech)" and info.value.body["type"] == "invalid_request_error"
    for method, path in [("GET", "/v1/audio/transcriptions"), ("DELETE", "/v1/models/x"), ("POST", "/v1/chat/completions"), ("GET", "/v1/")]:
        r = httpx.request(method, app.url.rstrip("/") + path, timeout=30)
        assert r.status_code == 404 and r.json()["error"]["message"] == f"Invalid URL ({method} {path})", (method, path, r.text)
    assert TINY in [m.id for m in client.models.list()]
    assert httpx.get(app.url + "config", timeout=30).status_code == 200  # Gradio's own routes are untouched


def test_whisper_1_means_the_default_model(app, clips):
    result = transcribe(client_for(app), clips[0].path, model="whisper-1")
    assert result.x_explorer["model"] == TINY


def test_curl_multipart_and_sse(app, clips, curl):
    clip = clips[3]
    url = app.url + "v1/audio/transcriptions"
    out = subprocess.run([curl, "-sS", "--fail-with-body", url, "-F", f"file=@{clip.path}", "-F", f"model={TINY}",
                          "-F", "response_format=verbose_json", "-F", "timestamp_granularities[]=word"],
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    verbose = json.loads(out.stdout)
    assert wer(clip.reference, verbose["text"]) <= 0.25 and verbose["words"] and verbose["segments"]
    out = subprocess.run([curl, "-sSN", "--fail-with-body", url, "-F", f"file=@{clip.path}", "-F", f"model={TINY}",
                          "-F", "stream=true"], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    events = [json.loads(line[len("data: ") :]) for line in out.stdout.splitlines() if line.startswith("data: ")]
    assert events and events[-1]["type"] == "transcript.text.done"
    assert all(e["type"] == "transcript.text.delta" for e in events[:-1])
    assert "".join(e["delta"] for e in events[:-1]) == events[-1]["text"]
    assert wer(clip.reference, events[-1]["text"]) <= 0.25


BAD_INPUT_STATUS = {"big.wav": 413}  # the rest of the Transcribe tab's bad inputs: 400


def test_bad_inputs_get_openai_errors_with_their_status_and_the_server_keeps_serving(app, clips, tmp_path, curl):
    client = client_for(app)
    for name, path, pattern in _bad_inputs(tmp_path, clips[0].path):
        with pytest.raises(openai.APIStatusError) as info:
            transcribe(client, path)
        assert info.value.status_code == BAD_INPUT_STATUS.get(name, 400), (name, info.value)
        error = info.value.body  # OpenAI's error shape: the client found the message in it
        assert re.search(pattern, error["message"], re.IGNORECASE) and error["param"] == "file", (name, error)
    for kwargs, status, pattern in [
        ({"model": "no/such-model"}, 404, r"does not exist"),
        ({"model": "faster-whisper/large-v3"}, 503, r"unavailable"),
        ({"model": BASE, "language": "xx"}, 400, r"does not support language"),
        ({"response_format": "xml"}, 400, r"response_format"),
        ({"temperature": 2}, 400, r"temperature"),
        ({"response_format": "json", "timestamp_granularities": ["word"]}, 400, r"verbose_json"),
    ]:
        with pytest.raises(openai.APIStatusError) as info:
            transcribe(client, clips[1].path, **kwargs)
        assert info.value.status_code == status and re.search(pattern, info.value.body["message"]), (kwargs, info.value)
    # A huge upload with curl, chunked (no length to refuse it by): 413 once the limit is passed.
    huge = tmp_path / "huge.wav"
    huge.write_bytes(np.random.default_rng(2).bytes(12 << 20))
    out = subprocess.run([curl, "-sS", "-H", "Transfer-Encoding: chunked", "-w", "\n%{http_code}", app.url + "v1/audio/transcriptions",
                          "-F", f"file=@{huge}", "-F", f"model={TINY}"], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.stdout.endswith("\n413") and "MAX_UPLOAD_MB" in out.stdout, (out.stdout, out.stderr)
    no_file = httpx.post(app.url + "v1/audio/transcriptions", data={"model": TINY}, timeout=30)
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    # Damaged audio that partly decodes: transcribed, with the Transcribe tab's warning in x_explorer.
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(clips[0].path.read_bytes()[: clips[0].path.stat().st_size // 2])
    damaged = transcribe(client, truncated)
    assert damaged.text and damaged.x_explorer["warnings"], damaged
    ok = transcribe(client, clips[1].path)
    assert wer(clips[1].reference, ok.text) <= 0.25, ok.text


def test_a_huge_upload_is_refused_while_it_arrives(app):
    """413 once MAX_UPLOAD_MB (5 here) is passed, before the rest is read: a chunked body (no
    length to refuse it by) of 1 GiB gets its answer after little more than the limit was sent."""
    boundary = "explorer-test-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{TINY}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n").encode()  # fmt: skip
    chunk = np.random.default_rng(3).bytes(64 << 10)
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", app.port), timeout=60) as sock:
        sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode())  # fmt: skip
        for data in itertools.chain([head], itertools.repeat(chunk, (1 << 30) // len(chunk))):
            if select.select([sock], [], [], 0)[0]:  # the answer came: stop sending
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            except (BrokenPipeError, ConnectionResetError, TimeoutError):  # the server closed or stopped reading
                break
            sent += len(data)
        sock.settimeout(30)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while not answer.endswith(b"}}") and (part := sock.recv(65536)):  # the error JSON ends with }}
                answer += part
    assert answer.startswith(b"HTTP/1.1 413"), (sent, answer[:300])
    assert b"MAX_UPLOAD_MB" in answer and b'"file_too_large"' in answer, answer
    assert sent < (5 << 20) + (32 << 20), sent  # the limit and what the socket buffers hold; not the 1 GiB


def test_the_routes_are_in_the_api_docs(app):
    spec = httpx.get(app.url + "openapi.json", timeout=30).json()
    paths = ["/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models", "/v1/models/{model}",
             "/v1/live", "/v1/live/{stream_id}", "/v1/live/{stream_id}/audio", "/v1/live/{stream_id}/close"]  # fmt: skip
    for path in paths:
        assert path in spec["paths"], (path, sorted(spec["paths"]))
    form = spec["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    fields = spec["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]["properties"]
    for field in ("file", "model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]", "stream"):
        assert field in fields, (field, sorted(fields))
    docs = httpx.get(app.url + "docs", timeout=30)  # Swagger UI's page, reading the spec above
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text


def readme_block(language: str, needle: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return next(b for b in re.findall(rf"```{language}\n(.*?)```", readme, re.DOTALL) if needle in b)


def as_here(example: str, app) -> str:
    sample = ROOT / "explorer" / "samples" / "librivox-austen-0870.wav"
    return example.replace("http://127.0.0.1:7860/", app.url).replace("speech.wav", str(sample))


def test_readme_openai_example_runs(app):
    example = as_here(readme_block("python", "from openai import OpenAI"), app)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(example)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "dashwood" in out.stdout.lower()


def test_readme_curl_example_runs(app, curl):
    example = as_here(readme_block("bash", "/v1/audio/transcriptions"), app)
    out = subprocess.run(["bash", "-euc", example], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "dashwood" in out.stdout.lower() and "transcript.text.done" in out.stdout


def test_text_delta_never_takes_text_back():
    assert text_delta("", "And") == "And"
    assert text_delta("And", "And Mr.") == " Mr."
    assert text_delta("And Mr.", "And Mr") == ""  # no longer an extension: nothing to add


def test_shared_bound_counts_both_queues():
    class GradioQueue:  # the two things the bound reads and writes on Gradio's queue
        def __init__(self):
            self.waiting, self.max_size = 0, 2

        def __len__(self):
            return self.waiting

    gradio = GradioQueue()
    bound = SharedQueueBound(max_waiting=2, slots=1, gradio_queue=gradio)
    bound.admit()  # runs
    bound.admit()  # waits
    assert bound.waiting == 1 and gradio.max_size == 1  # Gradio sees one place taken
    gradio.waiting = 1
    with pytest.raises(Exception) as info:
        bound.admit()
    assert info.value.status_code == 429 and int(info.value.headers["Retry-After"]) >= 1
    bound.release(3.0)
    assert bound.waiting == 0 and gradio.max_size == 2


@pytest.fixture(scope="module")
def small_app(models_dir, tmp_path_factory):
    """One device slot, one waiting place, and a key."""
    folder = tmp_path_factory.mktemp("small")
    running = RunningApp(models_dir, folder / "app.log", DATA_DIR=folder / "data", QUEUE_MAX_SIZE=1, NUM_WORKERS=1,
                         API_KEY="s3cret")  # fmt: skip
    yield running
    running.stop()


def test_api_key_is_required_when_set(small_app, clips, curl):
    for key in ("unused", "s3cret-not"):
        with pytest.raises(openai.AuthenticationError) as info:
            client_for(small_app, key).models.list()
        assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    out = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", small_app.url + "v1/audio/transcriptions",
                          "-F", f"file=@{clips[0].path}", "-F", f"model={TINY}"], capture_output=True, text=True, check=False)  # fmt: skip
    assert out.stdout == "401"
    unknown = httpx.get(small_app.url + "v1/no-such-route", timeout=30)
    assert unknown.status_code == 401  # the key first, as on every /v1 route: no route map for strangers
    assert TINY in [m.id for m in client_for(small_app, "s3cret").models.list()]


def test_live_routes_need_the_key_too(small_app, clips):
    """API_KEY guards every /v1 route: /v1/live's as the OpenAI-compatible ones (and the docs say so)."""
    key = {"Authorization": "Bearer s3cret"}
    pcm = (np.clip(clips[3].samples[: 2 * 16000], -1, 1) * 32767).astype("<i2").tobytes()
    with httpx.Client(base_url=small_app.url, timeout=120) as http:
        for wrong in ({}, {"Authorization": "Bearer s3cret-not"}, {"Authorization": "s3cret"}):
            refused = http.post("/v1/live", params={"model": TINY}, headers=wrong)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key", refused.text
        opened = http.post("/v1/live", params={"model": TINY, "language": "en"}, headers=key)
        assert opened.status_code == 200, opened.text
        stream = f"/v1/live/{opened.json()['stream_id']}"
        for method, path in (("POST", "/audio"), ("GET", ""), ("POST", "/close")):  # the stream is not reached without it
            assert http.request(method, stream + path, content=pcm if path else None).status_code == 401
        assert http.post(stream + "/audio", content=pcm, headers=key).status_code == 200
        assert http.post(stream + "/close", headers=key).status_code == 200
        spec = http.get("/openapi.json").json()  # the docs page shows the key is needed
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert {"HTTPBearer": []} in spec["paths"]["/v1/live"]["post"]["security"]
        assert {"HTTPBearer": []} in spec["paths"]["/v1/audio/transcriptions"]["post"]["security"]


def test_over_the_queue_bound_gets_429_and_the_gradio_queue_counts_api_requests(small_app, long_speech, clips, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.concatenate([long_speech, long_speech]), 16000)  # ~54 s: each request runs for seconds
    client = client_for(small_app, "s3cret", max_retries=0)  # the client would retry a 429 by itself
    outcomes: list = [None] * 5

    def request(i: int) -> None:
        try:
            outcomes[i] = transcribe(client, path, language="en").text
        except openai.APIStatusError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=request, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    done = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(done) >= 2 and all(d == done[0] for d in done), outcomes  # one ran, one waited its turn
    assert refused and all(e.status_code == 429 and int(e.response.headers["retry-after"]) >= 1 for e in refused), refused
    assert all(e.body["code"] == "queue_full" for e in refused)

    # Two API requests in flight (one running, one waiting) fill the one place Gradio's queue has too.
    gradio = small_app.client()
    in_flight = [threading.Thread(target=request, args=(i,)) for i in range(2)]
    for t in in_flight:
        t.start()
    # Both admitted: one runs and one waits for the model (as /health counts them); each runs for seconds.
    # (A direct POST: gradio_client sends even queue=False calls through the queue, full by then.)
    def health() -> dict:
        return httpx.post(small_app.url + "gradio_api/run/health", json={"data": [""]}, timeout=30).json()["data"][0]

    deadline = time.monotonic() + 120
    while (now := health())["requests_waiting"] < 1 or now["models_running"] < 1:
        assert time.monotonic() < deadline and all(t.is_alive() for t in in_flight), now
        time.sleep(0.2)
    job = gradio.submit(handle_file(str(clips[0].path)), TINY, "en", "transcribe", 1, False, True, api_name="/transcribe")
    with pytest.raises(Exception, match=r"(?i)queue is full"):
        job.result(timeout=120)
    assert all(t.is_alive() for t in in_flight), "the API requests ended before Gradio's request was refused"
    for t in in_flight:
        t.join(300)
    assert gradio.predict(handle_file(str(clips[0].path)), TINY, "en", "transcribe", 1, False, True,
                          api_name="/transcribe")["text"]  # fmt: skip
    assert transcribe(client, clips[0].path).text  # and the API serves again


def test_a_client_that_leaves_a_stream_gives_its_place_back(small_app, long_speech, clips, tmp_path):
    """Streams dropped after their first event or before any: with one slot and one waiting
    place, a place that were not given back would turn the next requests away with 429."""
    path = tmp_path / "long.wav"
    sf.write(path, long_speech, 16000)
    # Retries wait out a place still held while a dropped stream's engine stops (at its next
    # emission); a place never given back would stay taken through all of them.
    client = client_for(small_app, "s3cret", max_retries=10)
    for read_one_event in (True, False, True):
        stream = transcribe(client, path, stream=True)
        if read_one_event:
            assert next(iter(stream)).type == "transcript.text.delta"
        stream.close()
    results = [transcribe(client, clips[i].path).text for i in (0, 1)]
    assert all(wer(c.reference, r) <= 0.25 for c, r in zip(clips, results)), results

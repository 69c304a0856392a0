"""Interactive requests before batch work: the device slot goes to a waiting interactive request
between the steps of a batched call, and the steps change no word of the batch's results.
Real tiny.en on real LibriVox speech; the scheduling tests use plain threads (no model, no clock)."""

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from explorer.audio import Audio
from explorer.scoring import corpus_wer
from explorer.service import DeviceSlots, ModelService, step_sizes
from explorer.types import TranscribeOptions

TINY = "faster-whisper/tiny.en"
OPTIONS = TranscribeOptions(language="en", beam_size=1, word_timestamps=True)


def audio(samples: np.ndarray) -> Audio:
    return Audio(samples.astype(np.float32), (), 16000, 1)


def until(condition, what: str, limit: float = 30.0) -> None:
    """Wait for another thread to reach a state (bounded, so a bug fails instead of hanging)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def test_step_sizes_are_the_decoder_batch_each_file_was_in():
    assert step_sizes(5, 2) == [2, 2, 2, 2, 1]
    assert step_sizes(8, 4) == [4] * 8
    assert step_sizes(3, 0) == [3, 3, 3]  # 0: one step for the whole call
    assert step_sizes(3, 8) == [3, 3, 3]


def test_a_waiting_interactive_request_gets_the_slot_before_the_next_batch_step():
    slots = DeviceSlots(1)
    order: list[str] = []

    def interactive() -> None:
        with slots.hold(interactive=True):
            order.append("interactive")

    with slots.hold(interactive=False):  # a batch call, between two of its steps
        assert slots.hand_over() == 0.0  # nobody waits: the batch keeps the slot
        order.append("batch step 1")
        thread = threading.Thread(target=interactive)
        thread.start()
        until(lambda: slots.interactive_waiting == 1, "the interactive request waits for the slot")
        assert slots.hand_over() > 0.0
        order.append("batch step 2")
    thread.join(30)
    assert order == ["batch step 1", "interactive", "batch step 2"]


def test_a_request_still_decoding_its_audio_already_holds_back_the_next_batch_step():
    """ModelService.decode counts as on the way to a slot (DeviceSlots.expected): the batch hands
    its slot over at the next step and starts no new one until the request has run."""
    slots = DeviceSlots(1)
    order: list[str] = []
    decoding, decoded = threading.Event(), threading.Event()

    def request() -> None:
        with slots.expected():  # decoding its audio
            decoding.set()
            decoded.wait(30)
        with slots.hold(interactive=True):
            order.append("interactive")

    thread = threading.Thread(target=request)
    with slots.hold(interactive=False):  # a batch call, between two of its steps
        thread.start()
        decoding.wait(30)
        waiter = threading.Timer(0.2, decoded.set)  # the decode ends while the batch waits
        waiter.start()
        slots.hand_over()  # returns only once the request has had the slot
        order.append("batch step 2")
    thread.join(30)
    assert order == ["interactive", "batch step 2"]


def test_hand_over_lets_every_waiting_interactive_request_go_before_any_batch_work():
    slots = DeviceSlots(1)
    order: list[str] = []
    go = threading.Event()

    def request(name: str, interactive: bool) -> None:
        with slots.hold(interactive=interactive):
            order.append(name)
            if interactive:
                go.wait(30)  # both interactive requests queue up behind the first

    with slots.hold(interactive=False):
        other_batch = threading.Thread(target=request, args=("other batch", False))
        other_batch.start()
        first = threading.Thread(target=request, args=("interactive 1", True))
        second = threading.Thread(target=request, args=("interactive 2", True))
        first.start()
        second.start()
        until(lambda: slots.interactive_waiting == 2, "two interactive requests wait")
        go.set()
        slots.hand_over()  # returns once neither waits any more, the slot held again
        order.append("batch step 2")
    for thread in (first, second, other_batch):
        thread.join(30)
    # Batch work (this call's next step, another batch worker's call) only after both, in either order.
    assert sorted(order[:2]) == ["interactive 1", "interactive 2"]
    assert sorted(order[2:]) == ["batch step 2", "other batch"]


@pytest.fixture(scope="module")
def files(clips) -> list[np.ndarray]:
    """Five files of 8-14 s, each two LibriVox clips back to back."""
    pause = np.zeros(8000, dtype=np.float32)
    return [np.concatenate([clips[i].samples, pause, clips[(i + 1) % 5].samples]) for i in range(5)]


def test_a_stepped_batch_call_gives_the_words_of_the_one_call_batch(service, files):
    with service.checkout(TINY) as (model, _):
        one_call = model.engine.transcribe_batch(files, OPTIONS)
        steps: list[int] = []
        stepped = model.engine.transcribe_batch(files, OPTIONS, 2, lambda: steps.append(1))
    assert len(steps) == len(files) + 3  # on CPU each file's encoding is a step, and each group's decoding
    assert stepped == one_call  # texts, segment times and word timings alike
    assert all(segments for segments in one_call)


def test_an_interactive_request_mid_batch_is_served_before_the_batch_ends(offline_settings, clips, files):
    svc = ModelService(replace(offline_settings, batch_step_files=2), online=False)
    order: list[str] = []
    interactive_result = []
    real_hand_over = svc.slots.hand_over
    calls = [0]

    def interactive() -> None:
        interactive_result.append(svc.transcribe(TINY, audio(clips[1].samples)))
        order.append("interactive")

    def hand_over_with_a_request_arriving() -> float:
        calls[0] += 1
        if calls[0] == 2:  # after the batch's first step: a request arrives and waits
            threading.Thread(target=interactive).start()
            until(lambda: svc.slots.interactive_waiting == 1, "the interactive request waits")
        return real_hand_over()

    svc.slots.hand_over = hand_over_with_a_request_arriving
    results = svc.transcribe_batch(TINY, [audio(f) for f in files], OPTIONS)
    order.append("batch")
    until(lambda: len(order) == 2, "both finished")
    assert order == ["interactive", "batch"]
    assert interactive_result[0].text
    assert [r.metrics.batch_size for r in results] == [2, 2, 2, 2, 1]  # the decoder batches that ran
    references = [f"{clips[i].reference} {clips[(i + 1) % 5].reference}" for i in range(5)]
    assert corpus_wer(references, [r.text for r in results]).wer <= 0.10

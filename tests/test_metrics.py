import time

import pytest

from explorer import metrics
from explorer.metrics import compute, cost_per_audio_hour


@pytest.mark.parametrize(
    "times, ttft, itl",
    [
        ([], None, None),
        ([0.5], 0.5, None),
        ([0.5, 0.7], 0.5, pytest.approx(0.2)),
        ([1.0, 1.1, 1.5, 1.6], 1.0, pytest.approx(0.2)),  # gaps 0.1, 0.4, 0.1
    ],
)
def test_ttft_and_itl(times, ttft, itl):
    assert metrics.ttft(times) == ttft
    assert metrics.itl(times) == itl


@pytest.mark.parametrize("audio, proc, expected", [(10.0, 2.0, 5.0), (3.0, 6.0, 0.5), (10.0, 0.0, None)])
def test_rtfx_is_audio_over_processing(audio, proc, expected):
    assert metrics.rtfx(audio, proc) == expected


def test_compute_keeps_load_time_apart():
    m = metrics.compute([0.2, 0.3, 0.6], "token", audio_seconds=12.0, processing_seconds=1.5, load_seconds=4.0)
    assert m.ttft_seconds == 0.2
    assert m.itl_seconds == pytest.approx(0.2)
    assert m.rtfx == pytest.approx(8.0)  # 12 / 1.5: load time is not in it
    assert m.load_seconds == 4.0
    assert (m.emissions, m.itl_unit) == (3, "token")


def test_unstreamed_runs_have_no_ttft_or_itl():
    m = compute([0.9, 0.95, 1.0], "token", audio_seconds=10, processing_seconds=1.0, streamed=False)
    assert (m.ttft_seconds, m.itl_seconds, m.streamed, m.emissions, m.rtfx) == (None, None, False, 3, 10.0)


@pytest.mark.parametrize(
    "price, rtfx, expected",
    [(1.0, 10.0, 0.1), (0.4, 200.0, 0.002), (None, 10.0, None), (1.0, None, None), (1.0, 0.0, None), (0.0, 5.0, 0.0)],
)
def test_cost_per_audio_hour_is_price_over_rtfx(price, rtfx, expected):
    assert cost_per_audio_hour(price, rtfx) == (pytest.approx(expected) if expected is not None else None)


def test_timed_run_stamps_items_when_produced_not_when_read():
    """A producer that yields every 50 ms, read by a reader that takes 150 ms per item: the
    stamps follow the producer, and the end is when the producer finished."""
    from explorer.service import TimedRun

    def produce():
        for i in range(4):
            time.sleep(0.05)
            yield i

    start = time.perf_counter()
    with TimedRun(produce()) as run:
        seen = []
        for item, stamp in run:
            seen.append((item, stamp - start))
            time.sleep(0.15)
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    assert seen[-1][1] < 0.35  # produced by ~0.2 s; read at ~0.45 s
    assert run.ended - start < 0.35 and time.perf_counter() - start > 0.6


def test_timed_run_reraises_and_stops_the_producer_when_the_reader_leaves():
    from explorer.service import TimedRun

    def failing():
        yield 1
        raise ValueError("engine broke")

    with pytest.raises(ValueError, match="engine broke"), TimedRun(failing()) as run:
        list(run)

    closed = []

    def endless():
        try:
            while True:
                time.sleep(0.01)
                yield 0
        finally:
            closed.append(True)

    with TimedRun(endless()) as run:
        next(iter(run))
    assert closed == [True]  # closed in its own thread before the with block returned


def test_commit_lag_summarises_a_streams_events_by_quarter_of_its_words():
    from explorer.metrics import commit_lag

    # [emission s, word end s, word]: eight words, listed out of order; lags 1,1,2,2,3,3,4,4
    events = [[5.0, 3.0, "c"], [2.0, 1.0, "a"], [3.0, 2.0, "b"], [6.0, 4.0, "d"], [8.0, 5.0, "e"],
              [9.0, 6.0, "f"], [11.0, 7.0, "g"], [12.0, 8.0, "h"]]  # fmt: skip
    lag = commit_lag(events)
    assert lag.words == 8 and lag.first_commit_seconds == 2.0
    assert lag.mean_lag_seconds == pytest.approx(2.5)
    assert lag.quarter_lags == pytest.approx((1.0, 2.0, 3.0, 4.0))
    assert lag.last_to_first_quarter == pytest.approx(4.0)
    empty = commit_lag([])
    assert empty.words == 0 and empty.mean_lag_seconds is None and empty.last_to_first_quarter is None
    assert commit_lag([[1.0, 0.5, "one"]]).quarter_lags == (None, None, None, pytest.approx(0.5))

import pytest

from explorer import metrics


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

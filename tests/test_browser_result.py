"""What the server keeps of a browser result (explorer.ui.widgets.checked): pure, no browser."""

from explorer.ui.widgets import checked


def test_the_device_travels_inside_the_metrics():
    clean = checked({"run_id": "abc123", "mode": "stream", "device": "webgpu", "metrics": {"rtfx": 2.0, "device": "evil"}})
    assert clean["device"] == "webgpu" and clean["metrics"] == {"rtfx": 2.0, "device": "webgpu"}
    assert checked({"run_id": "x1", "device": "cuda?"})["metrics"]["device"] == "wasm"  # only the two it can be

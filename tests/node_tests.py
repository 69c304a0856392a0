"""The browser component's JS tests (node --test), run from the Python tests that share their vectors."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.running_app import ROOT


def run_node_tests(path: str) -> str:
    """TAP output of `node --test path` (relative to the repository); fails the test unless all passed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js (>= 18) is missing: it runs the browser component's tests")
    run = subprocess.run([node, "--test", "--test-reporter=tap", path], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout
    return run.stdout

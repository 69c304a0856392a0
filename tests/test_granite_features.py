"""Granite's mel features without torchaudio (explorer/engines/granite_features.py) against
torchaudio's REAL output.

No torchaudio installs beside the project's torch, so the reference was computed once in a
scratch venv with torch 2.9.1 + torchaudio 2.9.1 (+cu128, run on the CPU) and transformers
4.57.6, by the command in tests/data/make_granite_mel_fixture.py's docstring:

    /tmp/ta/bin/python tests/data/make_granite_mel_fixture.py

which wrote tests/data/granite_mel_torchaudio.npz (20 KB): torchaudio's ``MelSpectrogram`` with
the extractor's parameters, and the real ``GraniteSpeechFeatureExtractor``'s ``input_features``,
for 0.2 s of LibriVox speech and a synthetic chirp/tone/clicks/silence signal (the signals are
rebuilt here by the same ``inputs()``). Measured when the fixture was made: mel power within
3.2e-5 relative of torchaudio's, features within 3.4e-6 absolute (torchaudio builds its filter
bank in float32, transformers' ``mel_filter_bank`` in float64: weights differ by <= 5.3e-6).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from explorer.engines import granite_features  # noqa: E402
from tests.data.make_granite_mel_fixture import FIXTURE, MEL_KWARGS, SPEECH, inputs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not SPEECH.is_file(), reason="needs Debian's pocketsphinx-testdata speech")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


@pytest.mark.parametrize("name", ["speech", "synthetic"])
def test_mel_spectrogram_matches_torchaudio(reference, name):
    signal = inputs()[name]
    ours = granite_features.MelSpectrogram(**MEL_KWARGS)(torch.from_numpy(signal)).numpy()
    expected = reference[f"{name}_mel"]
    assert ours.shape == expected.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["speech", "synthetic"])
def test_granite_feature_extractor_matches_its_torchaudio_output(reference, name):
    """The real transformers extractor, with whichever mel backend install() chose."""
    backend = granite_features.install()
    from transformers import GraniteSpeechFeatureExtractor

    extractor = GraniteSpeechFeatureExtractor()
    if not granite_features.torchaudio_works():
        assert backend == "torch" and isinstance(extractor.mel_filters, granite_features.MelSpectrogram)
    features = extractor(inputs()[name])["input_features"]
    expected = reference[f"{name}_features"]
    assert features.shape == (1,) + expected.shape
    np.testing.assert_allclose(features[0].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_batches_and_devices_like_torchaudio():
    melspec = granite_features.MelSpectrogram(**MEL_KWARGS)
    signals = inputs()
    speech = torch.from_numpy(signals["speech"])
    batch = torch.stack([speech, speech.flip(0)])
    out = melspec(batch)
    assert out.shape == (2, 80, 21)
    torch.testing.assert_close(out[0], melspec(speech))
    assert melspec.to("cpu") is melspec and {b.device.type for b in melspec.buffers()} == {"cpu"}
    if torch.cuda.is_available():  # what the extractor does with device="cuda" on a GPU Space
        on_gpu = granite_features.MelSpectrogram(**MEL_KWARGS).to("cuda")(batch.to("cuda"))
        torch.testing.assert_close(on_gpu.cpu(), out, rtol=1e-4, atol=1e-6)


def test_a_broken_torchaudio_is_set_aside(tmp_path):
    """The registry's torchaudio beside the CPU torch: installed, but its import fails
    (libc10_cuda.so). transformers still counts it as available, and the extractor's module
    would fail on its own ``import torchaudio``; install() says it is absent and uses ours."""
    fake = tmp_path / "site"
    (fake / "torchaudio").mkdir(parents=True)
    (fake / "torchaudio" / "__init__.py").write_text(
        'raise OSError("libc10_cuda.so: cannot open shared object file: No such file or directory")\n'
    )
    (fake / "torchaudio-2.11.0.dist-info").mkdir()
    (fake / "torchaudio-2.11.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.0\n")
    script = textwrap.dedent(
        """
        from transformers.utils import is_torchaudio_available
        assert is_torchaudio_available()  # what transformers believes before install()
        from explorer.engines import granite_features
        assert granite_features.install() == "torch"
        from transformers import GraniteSpeechFeatureExtractor
        from tests.data.make_granite_mel_fixture import inputs
        features = GraniteSpeechFeatureExtractor()(inputs()["speech"])["input_features"]
        print(tuple(features.shape))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "(1, 10, 160)"


@pytest.mark.skipif(importlib.util.find_spec("torchaudio") is not None, reason="torchaudio is installed")
def test_without_torchaudio_the_torch_backend_is_used():
    assert granite_features.install() == "torch"

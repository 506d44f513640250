"""A model that is missing or corrupt stops uvicorn at start-up with one clear line; it never serves."""

import shutil

import pytest

from testkit import free_port

from .conftest import start_uvicorn


def break_model(model_dir, tmp_path, how: str):
    if how == "missing":
        return tmp_path / "no-model-here"
    broken = shutil.copytree(model_dir, tmp_path / "model")
    if how == "corrupt-weights":
        (broken / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    elif how == "corrupt-manifest":
        (broken / "manifest.json").write_text('{"version": ')
    elif how == "no-encoder":
        (broken / "encoder.json").unlink()
    return broken


@pytest.mark.parametrize(("how", "reason"), [
    ("missing", "model file missing in {d}: {d}/manifest.json (build it with `make pipeline` or fetch it with `dvc pull`)"),
    ("no-encoder", "model file missing in {d}: {d}/encoder.json (build it with `make pipeline` or fetch it with `dvc pull`)"),
    ("corrupt-weights", "model files in {d} are unusable: "),
    ("corrupt-manifest", "model files in {d} are unusable: JSONDecodeError"),
], ids=["missing", "no-encoder", "corrupt-weights", "corrupt-manifest"])
def test_bad_model_files_stop_the_server_with_one_line(model_dir, tmp_path, how, reason):
    d = break_model(model_dir, tmp_path, how)
    proc = start_uvicorn(d, free_port())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in (out + err).splitlines() if "cannot serve" in ln]
    assert len(lines) == 1, out + err
    assert lines[0].startswith("ERROR:    census-income cannot serve: " + reason.format(d=d)), lines[0]
    assert "Traceback" not in out + err

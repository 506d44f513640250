"""Fault injection for the pin and the settings: the version the API serves comes from what deployed it.

The Procfile's web command runs `census_income.deploy`, which prints the version `dvc.lock` pins (DVC's md5 of
manifest.json, and through the manifest's digests, of every model file) into CENSUS_MODEL_VERSION; the API then
refuses any other model. A misspelt or senseless CENSUS_* setting stops the server with one line too.
"""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from census_income.network import MANIFEST
from census_income.predict import Predictor, model_version
from census_income.serving.settings import SettingsError, read_settings
from census_income.toy import toy_model_folder
from testkit import ROOT, free_port, tool_env
from tests.api.conftest import start_uvicorn, wait_ready
from tests.api.test_faults import one_line_exit


def web_prefix() -> str:
    "The Procfile's web command up to uvicorn: what runs before the server (the deploy step and the pin)."
    web = next(ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:"))
    return web.removeprefix("web:").strip().split("exec uvicorn")[0]


def checkout(tmp_path: Path) -> Path:
    "A checkout with params.yaml, a toy model in model/ and a dvc.lock recording its manifest's md5."
    root = tmp_path / "app"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root)
    folder = toy_model_folder(root / "model")
    md5 = hashlib.md5((folder / MANIFEST).read_bytes()).hexdigest()
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train": {"outs": [
        {"path": f"model/{MANIFEST}", "hash": "md5", "md5": md5, "size": 1}]}}}))
    return root


def run_web_prefix(root: Path) -> subprocess.CompletedProcess:
    "The Procfile's start-up step, as Heroku runs it (bash -c), then print what uvicorn would get as its pin."
    command = web_prefix() + 'exec python -c "import os; print(os.environ.get(\'CENSUS_MODEL_VERSION\'))"'
    return subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True, timeout=120,
                          env=tool_env(PYTHONPATH=str(ROOT)))


def test_the_procfile_pins_the_version_dvc_lock_records(tmp_path):
    root = checkout(tmp_path)
    proc = run_web_prefix(root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == Predictor.load(root / "model").version, proc.stdout + proc.stderr
    assert "pinned by dvc.lock" in proc.stderr


def test_the_procfile_never_starts_uvicorn_on_a_manifest_dvc_lock_does_not_record(tmp_path):
    root = checkout(tmp_path)
    manifest = json.loads((root / "model" / MANIFEST).read_text()) | {"threshold": 0.05}
    (root / "model" / MANIFEST).write_text(json.dumps(manifest | {"version": model_version(manifest)}))
    proc = run_web_prefix(root)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("census_income.deploy: cannot serve, the model's version cannot be "
                                                   f"pinned: model/{MANIFEST} has md5 "), proc.stderr


@pytest.mark.parametrize(("var", "value", "says"), [
    ("CENSUS_BODY_TIMEOUT", "1e-7", "CENSUS_BODY_TIMEOUT='1e-7' cannot be used: Input should be greater than or equal to 0.1"),
    ("CENSUS_BODY_TIMEOUT", "inf", "CENSUS_BODY_TIMEOUT='inf' cannot be used: Input should be a finite number"),
    ("CENSUS_BODY_TIMEOUT", "nan", "CENSUS_BODY_TIMEOUT='nan' cannot be used: Input should be a finite number"),
    ("CENSUS_THREADS", "100000", "CENSUS_THREADS='100000' cannot be used: Input should be less than or equal to 256"),
    ("CENSUS_MAX_BATCH", "9" * 3000, "CENSUS_MAX_BATCH='" + "9" * 59 + "... (3,002 characters) cannot be used: Input should be less"),
    ("CENSUS_" + "X" * 5000, "1", "CENSUS_" + "X" * 53 + "... (5,007 characters) is not a setting: the settings are"),
    ("CENSUS_MAX_BATCHES", "2", "CENSUS_MAX_BATCHES is not a setting: did you mean CENSUS_MAX_BATCH?"),
    ("CENSUS_MODELDIR", "/x", "CENSUS_MODELDIR is not a setting: did you mean CENSUS_MODEL_DIR?"),
    ("CENSUS_MODEL_VERSION", "latest", "CENSUS_MODEL_VERSION='latest' cannot be used: String should match pattern"),
])
def test_a_senseless_or_misspelt_setting_is_refused(monkeypatch, var, value, says):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        read_settings()
    assert str(err.value).startswith(says), err.value


def test_an_empty_pin_is_no_pin(monkeypatch):
    monkeypatch.setenv("CENSUS_MODEL_VERSION", "")  # what the Procfile exports where no dvc.lock pins the model
    assert read_settings().model_version is None


@pytest.mark.integration
def test_the_api_refuses_a_model_other_than_the_pinned_one(quick_model_dir, quick_predictor, tmp_path):
    expected = "0123456789abcdef0123456789abcdef"
    found = quick_predictor.version
    line = one_line_exit(start_uvicorn(quick_model_dir, free_port(), CENSUS_MODEL_VERSION=expected))
    assert f"expected model version {expected} but the files are version {found}" in line, line


@pytest.mark.integration
def test_the_api_serves_the_pinned_model(quick_model_dir, quick_predictor):
    version, port = quick_predictor.version, free_port()
    proc = start_uvicorn(quick_model_dir, port, CENSUS_MODEL_VERSION=version)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/ready").json()["model_version"] == version
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.integration
@pytest.mark.parametrize(("var", "value"), [("CENSUS_MAX_BATCHES", "2"), ("CENSUS_BODY_TIMEOUT", "1e-7")])
def test_the_api_does_not_start_on_a_bad_setting(quick_model_dir, var, value):
    line = one_line_exit(start_uvicorn(quick_model_dir, free_port(), **{var: value}))
    assert f"census-income cannot serve: {var}" in line, line

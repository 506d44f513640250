"""Heroku start-up, simulated: a slug without model/ and without .git, DYNO set, the Procfile's web command."""

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from census_income.schema import CLASSES
from testkit import ROOT, free_port, run, tool_env
from tests.pipeline.conftest import GIT, S3_ENV, use_endpoint, wait_for_port

RECORD = {
    "age": 44, "workclass": "Private", "fnlgt": 198282, "education": "Bachelors", "education-num": 13,
    "marital-status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Husband", "race": "White",
    "sex": "Male", "capital-gain": 15024, "capital-loss": 0, "hours-per-week": 60, "native-country": "United-States",
}


def web_command() -> str:
    "The Procfile's web command, bound to loopback instead of 0.0.0.0 (the tests talk to 127.0.0.1 only)."
    lines = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:")]
    assert len(lines) == 1, "the Procfile needs exactly one web process"
    cmd = lines[0].removeprefix("web:").strip()
    assert "--host 0.0.0.0" in cmd and "${PORT" in cmd and "census_income.api:app" in cmd
    return cmd.replace("--host 0.0.0.0", "--host 127.0.0.1")


def make_slug(source: Path, dest: Path, endpoint: str) -> Path:
    "What Heroku runs: a clone of the repo (no DVC outputs in it) without .git and without what .slugignore drops."
    run([*GIT, "clone", "-q", str(source), str(dest)], dest.parent)
    use_endpoint(dest, endpoint)
    shutil.rmtree(dest / ".git")
    for line in (ROOT / ".slugignore").read_text().splitlines():
        path = dest / line.strip().lstrip("/")
        if not line.strip() or line.startswith("#") or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    assert not (dest / "nbs").exists() and (dest / "census_income" / "deploy.py").exists()
    assert not (dest / "model" / "manifest.json").exists()
    return dest


def start_web(slug: Path, port: int, venv_bin: Path | None = None) -> subprocess.Popen:
    "Run the web command as Heroku does (bash -c, PORT and DYNO set), in its own process group."
    env = tool_env(DYNO="web.1", PORT=str(port), **S3_ENV)
    env.pop("CENSUS_MODEL_DIR", None)
    if venv_bin is not None:  # only that venv's programs, as on a dyno (plus bash and coreutils)
        env = {"PATH": f"{venv_bin}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": env.get("HOME", "/tmp"),
               "DYNO": "web.1", "PORT": str(port), **S3_ENV}
    return subprocess.Popen(["bash", "-c", web_command()], cwd=slug, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> str:
    "End the process group (if still running) and return everything it printed."
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="module")
def api_ready():
    if not (ROOT / "census_income" / "api.py").exists():
        pytest.fail("census_income/api.py is missing (exported from nbs/06_serve.ipynb)")


def test_dyno_pulls_the_model_then_serves(api_ready, pushed_repo, moto_endpoint, tmp_path):
    slug = make_slug(pushed_repo, tmp_path / "app", moto_endpoint)
    port = free_port()
    proc = start_web(slug, port)
    try:
        bound = wait_for_port(port, 60, proc)  # Heroku's boot timeout
        for name in ("manifest.json", "encoder.json", "reference.json", "weights.safetensors"):
            assert (slug / "model" / name).read_bytes() == (pushed_repo / "model" / name).read_bytes()
        status, answer = post(port, "/predict", RECORD)
    finally:
        out = stop(proc)
    assert status == 200 and answer["prediction"] in CLASSES and 0 <= answer["probability"] <= 1, answer
    manifest = json.loads((pushed_repo / "model" / "manifest.json").read_text())
    assert answer["model_version"] == manifest["version"]
    assert "census_income.deploy: pulled" in out, out
    assert f"census_income.deploy: model version {manifest['version']} pinned by dvc.lock" in out, out
    print(f"\n$PORT bound {bound:.1f} s after start (pull included); /predict → {answer}\n{out}")


def test_dyno_with_unreachable_remote_exits_with_one_line(api_ready, pushed_repo, tmp_path):
    slug = make_slug(pushed_repo, tmp_path / "app", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    port = free_port()
    proc = start_web(slug, port)
    try:
        code = proc.wait(90)
    finally:
        out = stop(proc)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert code != 0
    assert len(lines) == 1, out
    assert lines[0].startswith("census_income.deploy: cannot serve, the model was not pulled: dvc pull failed"), out
    assert "Could not connect to the endpoint URL" in lines[0], out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert not (slug / "model" / "manifest.json").exists()
    print(f"\nexit {code}: {lines[0]}")


def test_off_a_dyno_the_start_step_does_nothing(tmp_path):
    "Locally (no DYNO) the same Procfile line must not try to reach a remote."
    (tmp_path / ".dvc").mkdir()
    proc = subprocess.run(["python", "-m", "census_income.deploy", "--root", str(tmp_path)], cwd=ROOT,
                          env={k: v for k, v in tool_env().items() if k != "DYNO"}, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == "", proc


@pytest.mark.slow
def test_serving_requirements_alone_run_the_dyno(api_ready, pushed_repo, moto_endpoint, tmp_path):
    "A venv of requirements-serve.txt only (what Heroku installs): the start step pulls and the API answers."
    venv = tmp_path / "serve-venv"
    run(["python3", "-m", "venv", str(venv)], tmp_path)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
        ROOT, timeout=900)
    slug = make_slug(pushed_repo, tmp_path / "app", moto_endpoint)
    port = free_port()
    proc = start_web(slug, port, venv_bin=venv / "bin")
    try:
        wait_for_port(port, 60, proc)
        status, answer = post(port, "/predict", RECORD)
    finally:
        out = stop(proc)
    assert status == 200 and answer["prediction"] in CLASSES, (answer, out)
    assert "census_income.deploy: pulled" in out, out
    heavy = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True)
    assert heavy.returncode != 0, "torch must not be in the serving requirements"

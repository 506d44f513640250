"""Shared fixtures: the real data, and a full pipeline run in a scratch copy of the repo."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from census_income.cpu import pinned_environ

ROOT = Path(__file__).resolve().parents[1]
# The pipeline's CPU kernels (census_income.cpu) for every process a test starts, the notebooks' kernels included,
# and one BLAS/OpenMP thread per process: pytest-xdist workers and the notebooks' kernels run side by side on the
# 2 cores, and oversubscribed threads made the notebooks run three times slower (96 s against 30 s, measured).
os.environ.update(pinned_environ(os.environ)[0])
VENV_BIN = Path(sys.executable).parent
CENSUS_SHA256 = "7f758a82ba6135555fdf24d27bdd807927e31b55dfc149f7e223790284e84252"


def tool_env(**extra: str) -> dict:
    "The environment for the project's command-line tools: the venv first on PATH."
    env = os.environ.copy()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 900, status: int = 0, **env: str) -> subprocess.CompletedProcess:
    "Run a command that must end with `status` (0: success); otherwise show its output in the assertion message."
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(**env), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == status, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def exit_report(proc: subprocess.Popen, what: str = "process", tail: int = 30) -> str:
    "For a process that ended early: its exit code and the last lines it printed (stderr, then stdout, if piped)."
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        out = err = None
    text = "".join(part if isinstance(part, str) else part.decode(errors="replace")
                   for part in (err, out) if part)
    lines = text.rstrip().splitlines()[-tail:]
    shown = "\n".join(f"  | {ln}" for ln in lines) if lines else "  (it printed nothing)"
    return f"{what} exited ({proc.returncode}); the last {len(lines)} lines it printed:\n{shown}"


def assert_same_answers(got, want, threshold: float, got_labels=None, want_labels=None, what: str = "") -> None:
    """The guarantee of `census_income.network.Network.forward`, and no more: probabilities within `TOLERANCE` wherever a
    record is scored, and the same label unless the probability lies within `TOLERANCE` of the threshold."""
    from census_income.network import TOLERANCE

    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape, what)
    gap = np.abs(got - want)
    assert gap.max(initial=0) <= TOLERANCE, f"{what}: |Δp| up to {gap.max():.3g} at row {gap.argmax()}"
    if got_labels is not None:
        flipped = np.asarray(got_labels) != np.asarray(want_labels)
        near = np.abs(want - threshold) <= TOLERANCE
        assert not (flipped & ~near).any(), f"{what}: labels differ at rows {np.flatnonzero(flipped & ~near)[:10]}"


def openblas_kernel() -> str:
    "The OpenBLAS kernel numpy runs in this process (after `OPENBLAS_CORETYPE`, or the CPU, chose it)."
    from threadpoolctl import threadpool_info

    return next(i["architecture"] for i in threadpool_info() if i["internal_api"] == "openblas")


def copy_repo(dest: Path) -> Path:
    "Copy the files git knows or would add (what a clone has, plus uncommitted work) to dest, as a new git repo."
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], dest)
    return dest


def set_params(repo: Path, **sections: dict) -> None:
    "Overwrite values in repo/params.yaml, e.g. set_params(repo, tune={'enabled': False})."
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


PIPELINE_FIXTURES = {"pipeline_repo", "artifacts"}  # a full `dvc repro` in a scratch copy (or CENSUS_TEST_ARTIFACTS)


def pytest_collection_modifyitems(config, items):
    "Mark every test that needs a full pipeline run `pipeline`: `make test-fast` leaves them out."
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pipeline)


@pytest.fixture(scope="session")
def census_path() -> Path:
    path = ROOT / "data" / "census.csv"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CENSUS_SHA256, "data/census.csv differs from the UCI file"
    return path


@pytest.fixture(scope="session")
def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _repo_outputs() -> dict:
    return {p: p.stat().st_mtime_ns for d in ("data", "model", "metrics", "reports") if (ROOT / d).is_dir()
            for p in (ROOT / d).iterdir()}


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> tuple[dict, dict]:
    "Every stage, in order, on params.yaml's quick sample, in a temporary folder: the params and what each stage returned."
    from census_income.pipeline import STAGES, load_params, stage_function

    before = _repo_outputs()
    params = load_params(ROOT / "params.yaml", quick=True, workdir=tmp_path_factory.mktemp("quick"))
    results = {stage: stage_function(stage)(params) for stage in STAGES}
    assert _repo_outputs() == before, "a quick run wrote into the repository's data/, model/, metrics/ or reports/"
    return params, results


@pytest.fixture(scope="session")
def quick_model(quick_run) -> Path:
    "A small real model, trained in seconds by the quick run: its folder."
    return Path(quick_run[0]["paths"]["model_dir"])


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory) -> Path:
    "A scratch copy of the repo after a full `dvc repro` (tuning switched off: the stored best params are used)."
    repo = copy_repo(tmp_path_factory.mktemp("pipeline"))
    set_params(repo, tune={"enabled": False})
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "skip tuning"], repo)
    proc = run(["dvc", "repro"], repo, timeout=1800)
    (repo / "repro.log").write_text(proc.stdout + proc.stderr)
    return repo


@pytest.fixture
def own_pipeline_repo(pipeline_repo, tmp_path) -> Path:
    "A copy of the pipeline run for this test alone (git history, DVC cache, outputs): a test that changes a repo"
    " changes this one, so the shared `pipeline_repo` stays as `dvc repro` left it, whatever order the tests run in."
    dest = tmp_path / "repo"
    shutil.copytree(pipeline_repo, dest, symlinks=True)
    return dest

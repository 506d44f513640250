"""Shared fixtures: the real data, and a full pipeline run in a scratch copy of the repo."""

import hashlib
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from census_income.cpu import pinned_environ
from testkit import ROOT, copy_repo, run, set_params

# The pipeline's CPU kernels (census_income.cpu) for every process a test starts, the notebooks' kernels included,
# and one BLAS/OpenMP thread per process: pytest-xdist workers and the notebooks' kernels run side by side on the
# 2 cores, and oversubscribed threads made the notebooks run three times slower (96 s against 30 s, measured).
os.environ.update(pinned_environ(os.environ)[0])
CENSUS_SHA256 = "7f758a82ba6135555fdf24d27bdd807927e31b55dfc149f7e223790284e84252"


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


def assert_same_probabilities(got, want, what: str = "") -> None:
    "The first half of `census_income.network.Network.forward`'s guarantee: probabilities within `TOLERANCE` wherever scored."
    from census_income.network import TOLERANCE

    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape, what)
    gap = np.abs(got - want)
    assert gap.max(initial=0) <= TOLERANCE, f"{what}: |Δp| up to {gap.max():.3g} at row {gap.argmax()}"


def assert_same_answers(got, want, threshold: float, got_labels, want_labels, what: str = "") -> None:
    """The guarantee of `census_income.network.Network.forward`, and no more: probabilities within `TOLERANCE` wherever a
    record is scored, and the same label unless the probability lies within `TOLERANCE` of the threshold."""
    from census_income.network import TOLERANCE

    assert_same_probabilities(got, want, what)
    want = np.asarray(want, np.float64)
    flipped = np.asarray(got_labels) != np.asarray(want_labels)
    near = np.abs(want - threshold) <= TOLERANCE
    assert not (flipped & ~near).any(), f"{what}: labels differ at rows {np.flatnonzero(flipped & ~near)[:10]}"


def openblas_kernel() -> str:
    "The OpenBLAS kernel numpy runs in this process (after `OPENBLAS_CORETYPE`, or the CPU, chose it)."
    from threadpoolctl import threadpool_info

    return next(i["architecture"] for i in threadpool_info() if i["internal_api"] == "openblas")


PIPELINE_FIXTURES = {"pipeline_repo", "artifacts"}  # a full `dvc repro` in a scratch copy (or CENSUS_TEST_ARTIFACTS)


def _needs_pipeline_run(item) -> bool:
    return bool(PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config, items):
    "Mark every test that needs a full pipeline run `pipeline`: `make test-fast` leaves them out."
    for item in items:
        if _needs_pipeline_run(item):
            item.add_marker(pytest.mark.pipeline)


class FilesThatWaitLast:
    """Put the test files none of whose tests waits for `pipeline_repo`'s `dvc repro` first, each group in the order
    it had (pytest-randomly's): under `--dist loadfile --no-loadscope-reorder` (xdist otherwise sends the files with
    the most tests first) one worker runs them (the queued experiments, about as long as the repro) while another runs
    the repro, instead of both waiting for it."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        waits = {item.path for item in items if _needs_pipeline_run(item)}
        items.sort(key=lambda item: item.path in waits)  # a stable sort: the order within each group is kept


def pytest_configure(config):
    config.pluginmanager.register(FilesThatWaitLast(), "census-files-that-wait-last")


@pytest.fixture(scope="session")
def census_path() -> Path:
    path = ROOT / "data" / "census.csv"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CENSUS_SHA256, "data/census.csv differs from the UCI file"
    return path


@pytest.fixture(scope="session")
def params():
    "params.yaml as every stage reads it (`census_income.config.load_params`): typed, every path absolute."
    from census_income.config import load_params

    return load_params(ROOT / "params.yaml")


def _repo_outputs() -> dict:
    return {p: p.stat().st_mtime_ns for d in ("data", "model", "metrics", "reports") if (ROOT / d).is_dir()
            for p in (ROOT / d).iterdir()}


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> tuple:
    """Every stage, in order, on params.yaml's quick sample, in a temporary folder: the params and what each stage returned.
    One run per test session: under pytest-xdist the first worker to ask runs it (the others wait on a lock, then read
    what it returned), as `pipeline_repo` does; the folder is shared, so a test that changes a file copies it first."""
    from census_income.pipeline import STAGES, call_stage, load_params

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp() if worker is None else tmp_path_factory.getbasetemp().parent
    built, returned = shared / "quick-built", shared / "quick-built.pickle"  # a test's own pickle, in the session's folder
    with FileLock(shared / "quick-built.lock"):
        if not returned.is_file():
            shutil.rmtree(built, ignore_errors=True)
            before = _repo_outputs()
            params = load_params(ROOT / "params.yaml", quick=True, workdir=built)
            results = {stage: call_stage(stage, params) for stage in STAGES}
            assert _repo_outputs() == before, "a quick run wrote into the repository's data/, model/, metrics/ or reports/"
            (shared / "quick-built.pickle.tmp").write_bytes(pickle.dumps((params, results)))
            (shared / "quick-built.pickle.tmp").rename(returned)  # whole or not at all
    return pickle.loads(returned.read_bytes())


@pytest.fixture(scope="session")
def quick_model_dir(quick_run) -> Path:
    "A small real model, trained in seconds by the quick run: its folder."
    return Path(quick_run[0].paths.model_dir)


@pytest.fixture(scope="session")
def quick_predictor(quick_model_dir):
    "The quick run's model (`quick_model_dir`), loaded: a `Predictor` of a model this test session trained."
    from census_income.predict import Predictor

    return Predictor.load(quick_model_dir)


REPRO_LOG, REPRO_FAILED, REPRO_WHERE = "repro.log", "repro.failed", "repro.where"  # in the built copy (untracked)


def _build_pipeline_repo(dest: Path) -> None:
    "Copy the repo to dest and run `dvc repro` in it, tuning off; leave `REPRO_LOG` (or `REPRO_FAILED`) and `REPRO_WHERE`."
    repo = copy_repo(dest)
    set_params(repo, tune={"enabled": False})
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "skip tuning"], repo)
    (repo / REPRO_WHERE).write_text(str(repo))  # where the stages ran: the path no output may quote
    try:
        proc = run(["dvc", "repro"], repo, timeout=1800)
    except BaseException as err:  # the other workers fail at once with the same reason, not after a second repro
        (repo / REPRO_FAILED).write_text(str(err))
        raise
    (repo / REPRO_LOG).write_text(proc.stdout + proc.stderr)


# The batch fault tests' toy model (tests/test_batch_faults.py, tests/test_batch_adversarial.py): one per module.
def every_value():
    "42 rows holding every category and numbers across every range: what the toy model's profiles are fitted on."
    import pandas as pd

    from census_income.schema import CATEGORICAL, CATEGORIES, FEATURES, RANGES

    return pd.DataFrame({c: (list(CATEGORIES[c]) * 42)[:42] if c in CATEGORICAL else np.linspace(*RANGES[c], 42).round()
                         for c in FEATURES})


@pytest.fixture(scope="module")
def toy_model_dir(tmp_path_factory) -> Path:
    "A toy model folder shaped like the trained one (five members, embeddings) with a training profile beside it."
    from census_income.reference import fit_reference, save_reference
    from census_income.toy import toy_model_folder

    folder = toy_model_folder(tmp_path_factory.mktemp("model"), members=5, n_frequencies=8, d_embedding=8, hidden=16)
    save_reference(fit_reference(every_value()), folder / "reference.json")
    return folder


@pytest.fixture(scope="module")
def toy_predictor(toy_model_dir):
    "`toy_model_dir`, loaded: a `Predictor`."
    from census_income.predict import Predictor

    return Predictor.load(toy_model_dir)


@pytest.fixture(scope="module")
def thresholds():
    "params.yaml's drift thresholds for batch jobs (`DriftThresholds`)."
    from census_income.config import load_params

    return load_params(ROOT / "params.yaml").batch.drift


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory) -> Path:
    """A scratch copy of the repo after a full `dvc repro` (tuning switched off: the stored best params are used).
    One `dvc repro` per test session: under pytest-xdist the first worker to ask runs it (the others wait on a lock)
    and each worker then works in its own copy of the result, so no two workers run DVC in one repository."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp() if worker is None else tmp_path_factory.getbasetemp().parent
    built = shared / "pipeline-built"
    with FileLock(shared / "pipeline-built.lock"):
        if (built / REPRO_FAILED).is_file():
            pytest.fail(f"the session's `dvc repro` failed:\n{(built / REPRO_FAILED).read_text()}")
        if not (built / REPRO_LOG).is_file():
            shutil.rmtree(built, ignore_errors=True)
            built.mkdir()
            _build_pipeline_repo(built)
    if worker is None:
        return built
    own = tmp_path_factory.mktemp("pipeline") / "repo"
    shutil.copytree(built, own, symlinks=True)
    return own


@pytest.fixture(scope="session")
def artifacts(request) -> Path:
    "A folder with the pipeline's model/ and data/: the `pipeline_repo` run, or CENSUS_TEST_ARTIFACTS to reuse one."
    reuse = os.environ.get("CENSUS_TEST_ARTIFACTS")
    return Path(reuse) if reuse else request.getfixturevalue("pipeline_repo")


@pytest.fixture(scope="session")
def model_dir(artifacts) -> Path:
    "The pipeline's model folder (`artifacts`/model)."
    return artifacts / "model"


@pytest.fixture(scope="session")
def predictor(model_dir):
    "The pipeline's model (`model_dir`), loaded: a `Predictor`."
    from census_income.predict import Predictor

    return Predictor.load(model_dir)


@pytest.fixture
def own_pipeline_repo(pipeline_repo, tmp_path) -> Path:
    "A copy of the pipeline run for this test alone (git history, DVC cache, outputs): a test that changes a repo"
    " changes this one, so the shared `pipeline_repo` stays as `dvc repro` left it, whatever order the tests run in."
    dest = tmp_path / "repo"
    shutil.copytree(pipeline_repo, dest, symlinks=True)
    return dest

"""A stage run by `census-stage` (what dvc.yaml runs) checks the params file before any work and writes into a staging
folder: a stage that fails, however late, leaves the previous run's outputs whole; one that succeeds replaces them.
Real papermill runs of the clean stage (the cheapest) in a scratch folder, with the failure injected into its notebook."""

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from census_income.pipeline import MOVING, STAGING_DIR
from testkit import ROOT, VENV_BIN, tool_env

pytestmark = pytest.mark.integration  # three papermill runs: about half a minute


@pytest.fixture
def scratch(tmp_path) -> Path:
    "params.yaml, the clean stage's notebook and the raw data: all the clean stage reads, with a small sample."
    (tmp_path / "nbs").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "nbs" / "01_clean.ipynb", tmp_path / "nbs")
    shutil.copy(ROOT / "data" / "census.csv", tmp_path / "data")
    set_sample(tmp_path, 500)
    return tmp_path


def set_sample(root: Path, rows: int) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["clean"]["sample_rows"] = rows
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stage(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "census-stage"), "clean", *extra], cwd=root, env=tool_env(),
                          capture_output=True, text=True, timeout=300)


def outputs(root: Path) -> dict[str, bytes]:
    "The clean stage's outputs, by path."
    return {rel: (root / rel).read_bytes() for rel in ("data/census_clean.csv", "reports/01_clean.ipynb", "reports/01_clean.html")}


def inject_failure(root: Path, on: bool) -> None:
    "Append (or remove) a last cell that raises: the stage has written all its outputs when it runs."
    path = root / "nbs" / "01_clean.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"] = [c for c in nb["cells"] if c.get("id") != "injected"]
    if on:
        nb["cells"].append({"cell_type": "code", "id": "injected", "metadata": {}, "execution_count": None, "outputs": [],
                            "source": ["raise RuntimeError('injected after the outputs were written')"]})
    path.write_text(json.dumps(nb, indent=1))


def test_a_failing_stage_leaves_the_previous_outputs_whole(scratch):
    first = stage(scratch)
    assert first.returncode == 0, first.stderr[-3000:]
    before = outputs(scratch)
    assert not (scratch / STAGING_DIR).exists() or not any((scratch / STAGING_DIR).iterdir())
    assert before["data/census_clean.csv"].count(b"\n") == 501  # header and the sample

    set_sample(scratch, 400)
    inject_failure(scratch, on=True)
    failed = stage(scratch)
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert lines[-1].startswith("census-stage: clean failed in cell ") and "RuntimeError: injected after the outputs" in lines[-1]
    assert len(lines) == 2, lines  # "running ..." and the one line that says what failed; no traceback
    assert outputs(scratch) == before  # nothing of the failed run reached the outputs
    staged = scratch / STAGING_DIR / "clean"
    assert str(staged) in lines[-1]
    assert (staged / "data" / "census_clean.csv").read_bytes().count(b"\n") == 401  # it wrote, and was held back
    assert "RuntimeError" in (staged / "reports" / "01_clean.ipynb").read_text()  # the executed notebook, to read

    inject_failure(scratch, on=False)
    again = stage(scratch)
    assert again.returncode == 0, again.stderr[-3000:]
    after = outputs(scratch)
    assert after["data/census_clean.csv"].count(b"\n") == 401 and after["reports/01_clean.html"] != before["reports/01_clean.html"]
    assert not staged.exists()  # the failed run's folder is cleared by the next run, and the successful run's own removed


@pytest.mark.parametrize(("change", "named"), [
    ({"sample_rows": -1}, "clean.sample_rows: Input should be greater than or equal to 0 (got -1)"),
    ({"sample_rows": "500"}, "clean.sample_rows: Input should be a valid integer (got '500')"),
    ({"sampel_rows": 5}, "clean.sampel_rows: Extra inputs are not permitted (got 5)"),
])
def test_a_bad_param_stops_the_stage_before_any_work_in_one_line(scratch, change, named):
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    params["clean"] |= change
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = stage(scratch)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2 and lines[-1].startswith("census-stage: clean: "), proc.stderr[-3000:]
    assert named in lines[-1]
    assert not (scratch / "data" / "census_clean.csv").exists() and not (scratch / "reports").exists()
    assert not (scratch / STAGING_DIR).exists()


def test_leftovers_of_a_killed_run_are_cleared_by_the_next(scratch):
    "A run killed mid-stage leaves only its staging folder (outputs untouched); the next run starts from a fresh one."
    leftover = scratch / STAGING_DIR / "clean" / "data" / f"half-written-{uuid.uuid4().hex}.csv"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("partial")
    proc = stage(scratch)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not leftover.exists() and not (scratch / "data" / leftover.name).exists()


def test_a_run_killed_while_moving_its_outputs_is_finished_by_the_next(scratch):
    """A `kill -9` between a stage's renames left a new test.csv beside the old train.csv: the stage's next run first moves
    the rest of the killed run's files into place (its staging folder says the run had finished), then runs."""
    staging = scratch / STAGING_DIR / "clean"
    (staging / "data").mkdir(parents=True)
    (staging / "data" / "from-the-killed-run.csv").write_text("moved")
    (staging / MOVING).touch()
    proc = stage(scratch)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (scratch / "data" / "from-the-killed-run.csv").read_text() == "moved"
    assert "census-stage clean: moved the rest of a killed run's outputs into place first (1 files)" in proc.stderr
    assert not any((scratch / STAGING_DIR).iterdir())


def test_a_staging_folder_without_the_mark_is_not_moved(scratch):
    "A run killed before it finished (no mark): none of its files reach the workspace."
    staging = scratch / STAGING_DIR / "clean"
    (staging / "data").mkdir(parents=True)
    (staging / "data" / "half-written.csv").write_text("partial")
    proc = stage(scratch)
    assert proc.returncode == 0 and "moved the rest" not in proc.stderr, proc.stderr[-3000:]
    assert not (scratch / "data" / "half-written.csv").exists()


def set_paths(root: Path, **paths: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["paths"] |= paths
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize(("setup", "clean_csv", "says"), [
    (lambda r: None, "dvc.yaml", "paths: clean_csv: 'dvc.yaml' is among the repository's own files"),
    (lambda r: None, ".census-stage/clean/out.csv", "is among the repository's own files"),
    (lambda r: None, "nbs/01_clean.ipynb", "is among the repository's own files"),
    (lambda r: (r / "setup.py").write_text("# the package's setup\n"), "setup.py/census_clean.csv",
     "paths.clean_csv: {root}/setup.py is a file, not a folder: census_clean.csv cannot be written inside it"),
    (lambda r: (r / "outlink").symlink_to(r.parent / "elsewhere"), "outlink/census_clean.csv",
     "{root}/outlink/census_clean.csv leads to {root.parent}/elsewhere/census_clean.csv, outside {root}, through a link"),
    (lambda r: (r / "data2").symlink_to("data"), "data2/census.csv", "paths.clean_csv: {root}/data/census.csv is also raw_csv, through a link"),
])
def test_an_output_over_the_repositorys_files_or_through_a_link_is_refused_before_any_work(scratch, setup, clean_csv, says):
    """A file of the repository (dvc.yaml, the notebooks, the stages' own staging), a link out of it or onto the raw data, a
    file where a folder belongs: refused at load in one line, the raw data and every file untouched, nothing half moved."""
    (scratch.parent / "elsewhere").mkdir(exist_ok=True)
    setup(scratch)
    (scratch / "dvc.yaml").write_text("stages: {}\n")
    set_paths(scratch, clean_csv=clean_csv)
    before = {p: p.read_bytes() for p in scratch.rglob("*") if p.is_file()}
    proc = stage(scratch)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2 and lines[-1].startswith("census-stage: clean: "), proc.stderr[-3000:]
    assert says.format(root=scratch) in lines[-1], lines[-1]
    assert {p: p.read_bytes() for p in scratch.rglob("*") if p.is_file()} == before
    assert not (scratch / STAGING_DIR).exists() and not any((scratch.parent / "elsewhere").iterdir())


def test_a_killed_runs_move_that_cannot_finish_says_how_to_drop_that_run(scratch):
    "The rest of a killed run's moves meets a folder where its file goes: one line saying what stops it and how to drop the run."
    staging = scratch / STAGING_DIR / "clean"
    (staging / "reports").mkdir(parents=True)
    (staging / "reports" / "01_clean.ipynb").write_text("{}")
    (staging / MOVING).touch()
    (scratch / "reports" / "01_clean.ipynb").mkdir(parents=True)  # where the killed run's notebook goes
    proc = stage(scratch)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr[-3000:]
    assert f"a killed run's outputs in {staging} cannot be moved into place (Is a directory: " in lines[-1], lines[-1]
    assert lines[-1].endswith(f"fix that, or remove {staging} to drop that run")
    (scratch / "reports" / "01_clean.ipynb").rmdir()
    proc = stage(scratch)
    assert proc.returncode == 0 and "moved the rest of a killed run's outputs into place first" in proc.stderr, proc.stderr[-3000:]


def test_the_notebooks_may_lie_anywhere(scratch, tmp_path_factory):
    "nbs_dir is an input: named through another path to the same folder, or in a folder of its own, the stage runs."
    elsewhere = tmp_path_factory.mktemp("notebooks")
    shutil.copy(scratch / "nbs" / "01_clean.ipynb", elsewhere)
    for nbs_dir in (f"../{scratch.name}/nbs", str(elsewhere)):
        set_paths(scratch, nbs_dir=nbs_dir)
        proc = stage(scratch)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (scratch / "reports" / "01_clean.html").is_file() and (scratch / "data" / "census_clean.csv").is_file()

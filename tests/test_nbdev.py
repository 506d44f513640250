"""Notebooks are the source: the package, the stored notebooks and the lint gate agree."""

import json
import shutil
import subprocess

from testkit import ROOT, run, tool_env


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def scratch(tmp_path):
    for name in ("settings.ini", "pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "nbs", tmp_path / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "census_income", tmp_path / "census_income", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_nbdev_export_leaves_the_package_unchanged(tmp_path):
    work = scratch(tmp_path)
    before = snapshot(work / "census_income")
    run(["nbdev_export"], work)
    after = snapshot(work / "census_income")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"census_income/ is out of step with nbs/: {changed}. Run `make export` and commit."


def test_notebooks_are_stored_clean(tmp_path):
    work = scratch(tmp_path)
    before = snapshot(work / "nbs")
    run(["nbdev_clean"], work)
    changed = sorted(k for k, v in snapshot(work / "nbs").items() if before.get(k) != v)
    assert not changed, f"notebooks with outputs or stray metadata: {changed}. Run `make export` (nbdev_clean)."


def test_every_stage_notebook_keeps_its_parameters_tag_through_nbdev_clean(tmp_path):
    work = scratch(tmp_path)
    run(["nbdev_clean"], work)
    stages = (ROOT / "dvc.yaml").read_text()
    staged = [p for p in (ROOT / "nbs").glob("[0-9]*.ipynb") if f"nbs/{p.name}" in stages]
    assert len(staged) >= 6, "every pipeline stage runs a notebook"
    for nb in staged:
        cells = json.loads((work / "nbs" / nb.name).read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb.name}: papermill's parameters tag is lost"


def test_ruff_finds_nothing():
    targets = [t for t in ("census_income", "tests", "benchmarks", "tools", "api_requests.py", "testkit.py", "nbs/conftest.py",
                           "nbs/kernel_forks.py") if (ROOT / t).exists()]
    proc = subprocess.run(["ruff", "check", *targets], cwd=ROOT, capture_output=True, text=True, env=tool_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""`census-stage` runs the code of the repository copy it runs in (a queued DVC experiment's), not the venv's install."""

import os
import shutil
import subprocess

from census_income.pipeline import copy_environ
from testkit import ROOT, VENV_BIN, tool_env


def test_the_repository_itself_needs_nothing():
    assert copy_environ(ROOT) is None


def test_a_copy_runs_its_own_code(tmp_path):
    copy = tmp_path / "exps" / "tmp1"
    shutil.copytree(ROOT / "census_income", copy / "census_income", ignore=shutil.ignore_patterns("__pycache__"))
    env = copy_environ(copy)
    assert env is not None and env["PYTHONPATH"].split(os.pathsep)[0] == str(copy)
    # the copy's stage runner differs from the installed one (as an experiment's changed code would): it says whose it is
    with open(copy / "census_income" / "pipeline.py", "a") as f:
        f.write("\n\ndef main(argv=None):\n    import census_income\n    print('ran', census_income.__file__)\n    return 0\n")
    proc = subprocess.run([str(VENV_BIN / "census-stage"), "clean", "--params", str(copy / "params.yaml")], cwd=tmp_path,
                          env=tool_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ran {copy / 'census_income' / '__init__.py'}"

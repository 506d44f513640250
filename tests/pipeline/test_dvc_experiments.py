"""DVC experiments as the guide's "Experiments" section (docs/guide.md) runs them, in a fresh copy of the repository on the quick
params: one `dvc exp run -S ...`, a queued grid run by `dvc queue start -j 1` (one at a time: two kernels starting together on 2 busy cores once waited past papermill's 60-s kernel start-up), the comparison `dvc exp show --md`, and
`dvc exp apply` of one of them. Git's identity comes from the environment and HOME is empty, as on a new machine."""

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from testkit import ROOT, copy_repo, run, set_params, tool_env

# a comparison: every column dropped but the experiment's name, the params it varies and three headline metrics
KEEP = r"^(Experiment|train\.n_folds|train\.seed|roc_auc|f1|ece)$"
SHOW = ["dvc", "exp", "show", "--md", "--drop", ".*", "--keep", KEEP]
WIDTH = 120  # a terminal's columns


def make_recipe(target: str) -> list[str]:
    "The one command of a Makefile target (its home), as argv."
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{target}:"))
    return shlex.split(lines[start + 1].strip())
ONE = {"train.n_folds": 2, "train.seed": 42}  # `dvc exp run -S train.n_folds=2` (the quick params train 3 members)
GRID = {"grid-a": {"train.n_folds": 2, "train.seed": 7}, "grid-b": {"train.n_folds": 4, "train.seed": 7}}


def markdown_rows(table: str) -> dict[str, dict[str, str]]:
    "A `dvc exp show --md` table as {experiment name: {column: cell}} (the name in brackets, or the row's label)."
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    header, body = cells[0], cells[2:]
    rows = {}
    for row in body:
        m = re.search(r"\[([^\]]+)\]", row[0])
        rows[m.group(1) if m else row[0]] = dict(zip(header, row, strict=True))
    return rows


def quick_repo(dest: Path) -> Path:
    "A copy of the repo (what a clone has, plus uncommitted work) whose committed params.yaml is the quick run's, tuning off."
    repo = copy_repo(dest)
    quick = yaml.safe_load((repo / "params.yaml").read_text())["quick"]
    set_params(repo, **{**quick, "tune": {**quick["tune"], "enabled": False}})
    run(["git", "commit", "-qam", "quick params"], repo, **IDENTITY)
    return repo


IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sets(values: dict) -> list[str]:
    "`-S key=value` for each param."
    return [arg for key, value in values.items() for arg in ("-S", f"{key}={value}")]


def wait_for_queue(repo: Path, env: dict, timeout: float) -> str:
    "Poll `dvc queue status` until no task is queued or running; its last output."
    deadline = time.monotonic() + timeout
    while True:
        status = run(["dvc", "queue", "status"], repo, **env).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        assert time.monotonic() < deadline, f"the queue did not finish in {timeout} s:\n{status}"
        time.sleep(3)


@pytest.mark.pipeline
def test_one_experiment_and_a_queued_grid_compare_in_exp_show(tmp_path):
    t0 = time.perf_counter()
    repo = quick_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", **IDENTITY}

    run(["dvc", "exp", "run", "-n", "one", *sets(ONE)], repo, timeout=600, **env)
    t_one = time.perf_counter() - t0
    # `make exps`, the narrow table, after an experiment that changes one param: only what differs, within a terminal
    narrow = run(make_recipe("exps"), repo, **env).stdout
    (tmp_path / "exp_show_narrow.md").write_text(narrow)
    assert max(map(len, narrow.splitlines())) <= WIDTH, f"{max(map(len, narrow.splitlines()))} columns:\n{narrow}"
    assert "one" in markdown_rows(narrow) and "train.n_folds" in narrow.splitlines()[0], narrow
    for name, values in GRID.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, *sets(values)], repo, **env)
    run(["dvc", "queue", "start", "-j", "1"], repo, **env)
    try:
        status = wait_for_queue(repo, env, timeout=900)
    finally:  # workers leave when the queue is empty; on a failure, stop them and what they run
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, env=tool_env(**env), capture_output=True, timeout=120)
    t_grid = time.perf_counter() - t0 - t_one
    for name in GRID:
        assert re.search(rf"\b{name}\s+\S+ \S+\s+Success\b", status), status

    table = run(SHOW, repo, **env).stdout
    rows = markdown_rows(table)
    (tmp_path / "exp_show.md").write_text(table)
    expected = {"one": ONE, **GRID}
    assert set(expected) <= set(rows), f"experiments missing from dvc exp show:\n{table}"
    for name, values in expected.items():
        row = rows[name]
        for key, value in values.items():
            assert row[key] == str(value), f"{name}: {key} is {row[key]}, set to {value}\n{table}"
        auc, f1, ece = (float(row[m]) for m in ("roc_auc", "f1", "ece"))
        assert 0.75 < auc <= 1 and 0.3 < f1 < 1 and 0 <= ece < 0.2, f"{name}: not a trained model's numbers\n{table}"
    # different members and seeds train different models: no two experiments score the test split the same
    scores = {tuple(rows[n][m] for m in ("roc_auc", "f1", "ece")) for n in expected}
    assert len(scores) == len(expected), table

    # `dvc exp apply` puts an experiment's params and outputs in the workspace: its own metrics file, its own numbers
    run(["dvc", "exp", "apply", "grid-b"], repo, **env)
    applied = yaml.safe_load((repo / "metrics" / "headline.json").read_text())
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["n_folds"] == GRID["grid-b"]["train.n_folds"]
    assert abs(applied["roc_auc"] - float(rows["grid-b"]["roc_auc"])) < 1e-6
    # the param reached the stage: the ensemble the experiment trained has one network per fold
    comparison = json.loads((repo / "metrics" / "comparison.json").read_text())
    assert comparison["candidates"]["ensemble"]["networks"] == GRID["grid-b"]["train.n_folds"], comparison["candidates"]
    assert "pipelines are up to date" in run(["dvc", "status"], repo, **env).stdout.lower()
    (tmp_path / "timings.txt").write_text(f"one experiment {t_one:.0f} s, queued grid of {len(GRID)} {t_grid:.0f} s\n")
    print(f"one experiment {t_one:.0f} s, queued grid of {len(GRID)} with -j 1: {t_grid:.0f} s\n{table}")

"""Optuna's storage lets several processes share one study, and the best trial is read back from it."""

import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from census_income.config import HYPER_PARAMS
from census_income.tune import best_params, load_study
from testkit import ROOT, tool_env

pytestmark = pytest.mark.integration  # several real processes on one study: not in `make test-fast`

WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from census_income.config import load_params
    from census_income.tune import load_study, make_objective, run_study

    storage, barrier, n_trials = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    cfg = load_params(sys.argv[4]).tune.model_copy(update={"max_epochs": 3, "patience": 2, "seed": 0})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 6)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.float32)
    objective = make_objective(X[:1500], y[:1500], X[1500:], y[1500:], n_onehot=2, cfg=cfg)

    def tagged(trial):
        trial.set_user_attr("pid", os.getpid())
        return objective(trial)

    study = load_study(storage, "shared", seed=os.getpid(), pruner=cfg.pruner)
    (barrier / f"ready-{os.getpid()}").touch()
    deadline = time.time() + 120
    while len(list(barrier.glob("ready-*"))) < 2:  # start searching together
        if time.time() > deadline:
            sys.exit("the other worker never joined the study")
        time.sleep(0.05)
    run_study(study, tagged, n_trials=n_trials, timeout=120)
""")


def run_two_workers(storage: str, folder, n_trials: int) -> tuple[optuna.Study, set[int]]:
    "Two worker processes on one study (the second joins once the first has created it); the study and their pids."
    script = folder / "worker.py"
    script.write_text(WORKER)
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, str(script), storage, str(folder), str(n_trials),
                                       str(ROOT / "params.yaml")], env=tool_env(),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        while not list(folder.glob("ready-*")) and procs[0].poll() is None:
            time.sleep(0.05)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return load_study(storage, "shared", seed=0), {p.pid for p in procs}


def check_shared_study(study: optuna.Study, pids: set[int], n_trials: int) -> None:
    "Both processes added trials, together they kept to the budget, and the best trial reads back from the storage."
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    assert {t.user_attrs["pid"] for t in done} == pids, "both processes should have added trials"
    assert n_trials <= len(done) <= n_trials + 2  # the shared budget, give or take one trial in flight per process
    best = best_params(study)
    assert best["dev_auc"] == max(t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert set(best["params"]) == set(HYPER_PARAMS)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_processes_add_trials_to_one_study(tmp_path, kind):
    storage = f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else f"journal:{tmp_path}/study.log"
    study, pids = run_two_workers(storage, tmp_path, 8)
    check_shared_study(study, pids, 8)

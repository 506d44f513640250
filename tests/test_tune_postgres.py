"""Two processes share one Optuna study in a real PostgreSQL, as tuning machines would; the best trial is read back.

The same scenario as tests/test_tune.py (its WORKER script) with the server `postgresql_url` starts; skipped when
the PostgreSQL server binaries are missing (`apt-get install postgresql`).
"""

import subprocess
import sys
import time

import optuna
import pytest
import sqlalchemy

from census_income.tune import best_params, load_study

from .conftest import tool_env
from .postgres import postgresql_url  # noqa: F401  (the fixture)
from .test_tune import WORKER

pytestmark = pytest.mark.integration  # several real processes on one study: not in `make test-fast`

N_TRIALS = 8


def test_two_processes_add_trials_to_one_study_in_postgresql(tmp_path, postgresql_url):  # noqa: F811
    storage = postgresql_url
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = []
    for _ in range(2):  # the second joins once the first has created the study (as a second machine would)
        procs.append(subprocess.Popen([sys.executable, str(script), storage, str(tmp_path), str(N_TRIALS)],
                                      env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        while not list(tmp_path.glob("ready-*")) and procs[0].poll() is None:
            time.sleep(0.05)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs

    study = load_study(storage, "shared", seed=0)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    pids = {t.user_attrs["pid"] for t in done}
    assert pids == {p.pid for p in procs}, "both processes should have added trials"
    assert N_TRIALS <= len(done) <= N_TRIALS + 2  # the shared budget, give or take one trial in flight per process
    best = best_params(study)
    assert best["dev_auc"] == max(t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert set(best["params"]) == {"depth", "hidden", "dropout", "lr", "batch_size", "weight_decay"}

    # The trials really are rows of the PostgreSQL database, not of some local file.
    engine = sqlalchemy.create_engine(storage)
    try:
        with engine.connect() as conn:
            assert conn.dialect.name == "postgresql"
            rows = conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM trials JOIN studies USING (study_id) WHERE study_name = 'shared'")).scalar_one()
    finally:
        engine.dispose()
    assert rows == len(study.get_trials(deepcopy=False))

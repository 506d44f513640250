"""Two processes share one Optuna study in a real PostgreSQL, as tuning machines would; the best trial is read back.

The same scenario as tests/test_tune.py (its WORKER script) with the server `postgresql_url` starts; skipped when
the PostgreSQL server binaries are missing (`apt-get install postgresql`).
"""


import pytest
import sqlalchemy

from .postgres import postgresql_url  # noqa: F401  (the fixture)
from .test_tune import check_shared_study, run_two_workers

pytestmark = pytest.mark.integration  # several real processes on one study: not in `make test-fast`

N_TRIALS = 8


def test_two_processes_add_trials_to_one_study_in_postgresql(tmp_path, postgresql_url):  # noqa: F811
    storage = postgresql_url
    study, pids = run_two_workers(storage, tmp_path, N_TRIALS)
    check_shared_study(study, pids, N_TRIALS)

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

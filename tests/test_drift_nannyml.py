"""The multivariate drift alarm beside NannyML's own reconstruction drift (`DataReconstructionDriftCalculator`, its
defaults) on the same chunks: both see shuffled columns that no PSI shows, neither fires on unshifted test rows.

NannyML runs in its own venv (`make nannyml`, tests/nannyml/run_drift.py); it is fitted on the training split, the
project's check reads a profile fitted on the same split with params.yaml's `profile`. `benchmarks/drift_alarm.py` makes
the full tables (100 chunks, five shifts, NannyML's domain classifier too).
"""

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from census_income.clean import clean_census
from census_income.drift import compare, swapped
from census_income.reference import fit_reference, tally
from census_income.schema import FEATURES
from census_income.split import split_data
from testkit import NANNYML_PY, ROOT

pytestmark = pytest.mark.integration  # a second venv and a process: not in `make test-fast`


@pytest.fixture(scope="module")
def both(params, tmp_path_factory) -> dict:
    "Per set of chunks: the project's alarms and NannyML's alerts."
    if not NANNYML_PY.is_file():
        pytest.fail(f"{NANNYML_PY} is missing: run `make nannyml` (`make test` does)")
    census, _ = clean_census(ROOT / "data" / "census.csv")
    train, test = split_data(census, params.split.test_size, params.split.seed)
    profile, limits = fit_reference(train, params.profile), params.batch.drift
    rng, rows = np.random.default_rng(11), limits.min_rows
    sets = {"unshifted": test, "sex_shuffled": swapped(test, ["sex"], 11), "all_shuffled": swapped(test, list(FEATURES), 11)}
    chunks = {k: [v.iloc[rng.choice(len(v), rows, replace=False)] for _ in range(4)] for k, v in sets.items()}
    folder = tmp_path_factory.mktemp("nannyml")
    train[list(FEATURES)].to_csv(folder / "reference.csv", index=False)
    for name, parts in chunks.items():
        pd.concat(parts)[list(FEATURES)].to_csv(folder / f"{name}.csv", index=False)
    proc = subprocess.run([str(NANNYML_PY), str(ROOT / "tests" / "nannyml" / "run_drift.py"), str(folder / "reference.csv"),
                           str(rows), *(str(folder / f"{k}.csv") for k in chunks), "--no-domain"], capture_output=True,
                          text=True, timeout=900, env=os.environ | {"NML_DISABLE_USAGE_LOGGING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout)["reconstruction"]
    ours = {k: [compare(profile, tally(profile, c), limits) for c in parts] for k, parts in chunks.items()}
    return {k: {"ours": [r["multivariate"]["alarm"] for r in ours[k]], "flagged": [r["flagged"] for r in ours[k]],
                "nannyml": [c["alert"] for c in theirs[k]]} for k in chunks}


def test_every_attribute_shuffled_raises_both_alarms_and_no_flag(both):
    assert both["all_shuffled"]["ours"] == both["all_shuffled"]["nannyml"] == [True] * 4
    assert both["all_shuffled"]["flagged"] == [[]] * 4  # every marginal kept: PSI sees nothing


def test_sex_shuffled_is_seen_by_both_in_most_chunks(both):
    assert sum(both["sex_shuffled"]["ours"]) >= 3 and sum(both["sex_shuffled"]["nannyml"]) >= 3, both["sex_shuffled"]
    assert both["sex_shuffled"]["flagged"] == [[]] * 4


def test_unshifted_test_rows_raise_neither(both):
    assert both["unshifted"]["ours"] == both["unshifted"]["nannyml"] == [False] * 4

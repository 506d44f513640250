"""Drift checks on the real data: the training split's profile, counts that add up, and flags where a batch moved.

The splits are made as the preprocess stage makes them (the clean file, split with params.yaml's seed), so these
tests need no pipeline run: the test split here is data/test.csv row for row.
"""

import json

import numpy as np
import pandas as pd
import pytest

from census_income.clean import clean_census
from census_income.config import DriftThresholds
from census_income.drift import chi2_p, compare, shifted, swapped
from census_income.preprocess import fit_encoder
from census_income.reference import (
    ReferenceFileError,
    add_tallies,
    check_reference,
    checksum,
    fit_reference,
    load_reference,
    reference_counts,
    save_reference,
    tally,
)
from census_income.schema import CATEGORICAL, CONTINUOUS, FEATURES
from census_income.split import split_data
from testkit import ROOT


@pytest.fixture(scope="module")
def split(params) -> tuple[pd.DataFrame, pd.DataFrame]:
    "The training and test splits of the preprocess stage."
    census, _ = clean_census(ROOT / "data" / "census.csv")
    return split_data(census, params.split.test_size, params.split.seed)


@pytest.fixture(scope="module")
def reference(split, params) -> dict:
    return fit_reference(split[0], params.profile)  # as the preprocess stage writes it: with the multivariate part


@pytest.fixture(scope="module")
def thresholds(params) -> DriftThresholds:
    return params.batch.drift


def test_the_profile_counts_every_training_row_in_every_attribute(split, reference, params):
    train = split[0]
    assert reference["rows"] == len(train) and check_reference(reference, fit_encoder(train)) == []
    for col in FEATURES:
        assert sum(reference_counts(reference, col)) == len(train), col
    assert reference["numbers"]["capital-gain"]["cuts"] == [0]  # 92% zeros: the deciles collapse to one cut
    assert len(reference["numbers"]["age"]["cuts"]) == 9
    assert reference["categories"]["occupation"]["?"] == (train["occupation"] == "?").sum() > 0
    shuffled = train.sample(frac=1, random_state=1)
    assert json.dumps(fit_reference(shuffled, params.profile)) == json.dumps(reference)  # the rows' order does not matter, to the byte


def test_counts_of_blocks_add_up_to_the_counts_of_the_whole(split, reference):
    test = split[1]
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(np.arange(1, len(test)), size=6, replace=False))
    blocks = [test.iloc[a:b] for a, b in zip([0, *cuts], [*cuts, len(test)], strict=True)]
    rejected = [{"race": int(k), "age": 1} for k in rng.integers(0, 5, len(blocks))]
    parts = [tally(reference, b, len(b) + sum(r.values()), r) for b, r in zip(blocks, rejected, strict=True)]
    rng.shuffle(parts)
    whole = tally(reference, test, len(test) + sum(sum(r.values()) for r in rejected),
                  {"race": sum(r["race"] for r in rejected), "age": len(blocks)})
    summed = add_tallies(parts)
    assert summed.pop("error_sum") == pytest.approx(whole.pop("error_sum"), rel=1e-12)  # a sum of floats: in any order, nearly
    assert summed == whole  # the counts: exactly
    assert whole["cells"]["age"] != reference_counts(reference, "age")  # counts of the test rows, not of training


def test_the_unshifted_test_split_raises_no_flag(split, reference, thresholds):
    report = compare(reference, tally(reference, split[1]), thresholds)
    assert report["judged"] and report["rows_scored"] == len(split[1])
    assert report["flagged"] == []
    for col, a in report["attributes"].items():
        assert a["psi"] < thresholds.psi_flag / 3 and a["unseen_share"] == 0, (col, a)
        assert 1 / thresholds.ratio_flag < a["share_ratio"] < thresholds.ratio_flag, (col, a)


def test_older_people_and_one_occupation_doubled_flag_age_and_occupation(split, reference, thresholds):
    report = compare(reference, tally(reference, shifted(split[1], years=15)), thresholds)
    assert report["flagged"] == ["age", "occupation"]
    age, occupation = report["attributes"]["age"], report["attributes"]["occupation"]
    assert age["psi"] > 1 and age["psi_band"] == "major" and age["reasons"][0].startswith("PSI ")
    assert occupation["share_ratio_cell"] == "Craft-repair" and occupation["share_ratio"] == pytest.approx(2, rel=0.02)
    assert any("'Craft-repair' holds" in r for r in occupation["reasons"])
    # each shift alone flags its attribute alone
    assert compare(reference, tally(reference, shifted(split[1], years=0)), thresholds)["flagged"] == ["occupation"]
    older = split[1].assign(age=split[1]["age"] + 15)
    assert compare(reference, tally(reference, older), thresholds)["flagged"] == ["age"]


def test_a_sample_too_small_to_judge_psi_flags_unseen_values_and_what_a_test_can_tell(split, reference, thresholds):
    small = shifted(split[1], years=30).sample(500, random_state=0)  # a shift, in a sample too small to judge PSI
    report = compare(reference, tally(reference, small, 500 + 50, {"race": 50}), thresholds)
    assert not report["judged"] and "fewer than 2000" in report["note"]
    assert report["flagged"] == ["age", "occupation", "race"]
    race, age, occupation = (report["attributes"][c] for c in ("race", "age", "occupation"))
    assert race["unseen_share"] == pytest.approx(50 / 550, abs=1e-6) and "not in the schema, rejected" in race["reasons"][0]
    assert age["psi"] > 1 and not any(r.startswith("PSI") for r in age["reasons"])  # shown, not judged
    assert "outside the training range 17..90" in age["reasons"][0] and age["untrained_share"] > 0.01
    # one occupation doubled in 500 rows: too few for PSI, enough for the chi-squared test at test_alpha / 14
    assert occupation["p_value"] < thresholds.test_alpha / 14 and len(occupation["reasons"]) == 1
    assert occupation["reasons"][0].startswith("chi-squared test p = ")
    assert not report["multivariate"]["judged"] and report["alarm"]
    # the same number of unshifted test rows: no test fires (ten samples)
    for seed in range(10):
        calm = compare(reference, tally(reference, split[1].sample(500, random_state=seed)), thresholds)
        assert calm["flagged"] == [] and not calm["alarm"], (seed, calm["flagged"])


def test_a_shuffled_column_raises_the_multivariate_alarm_and_no_flag(split, reference, thresholds):
    "Every column keeps its shares (PSI sees nothing), the rows no longer go together: only the multivariate check sees it."
    calm = compare(reference, tally(reference, split[1]), thresholds)
    assert calm["multivariate"]["judged"] and not calm["multivariate"]["alarm"] and not calm["alarm"]
    for column in ("sex", "relationship"):
        mixed = compare(reference, tally(reference, swapped(split[1], [column])), thresholds)
        assert mixed["flagged"] == [] and max(a["psi"] for a in mixed["attributes"].values()) < 0.01, column
        together = mixed["multivariate"]
        assert together["alarm"] and mixed["alarm"] and together["error"] > together["threshold"] > calm["multivariate"]["error"]
        assert together["reason"].startswith("mean reconstruction error ")


def test_ten_chunks_of_the_test_split_raise_no_multivariate_alarm(split, reference, thresholds):
    "Chunks of min_rows rows the components never saw, drawn at random: no alarm at the 99% level."
    rng = np.random.default_rng(7)
    for _ in range(10):
        chunk = split[1].iloc[rng.choice(len(split[1]), thresholds.min_rows, replace=False)]
        report = compare(reference, tally(reference, chunk), thresholds)
        assert report["multivariate"]["judged"] and not report["multivariate"]["alarm"], report["multivariate"]


def test_numbers_outside_the_training_range_count_as_unseen(split, reference, thresholds):
    hi = reference["numbers"]["hours-per-week"]["hi"]
    test = split[1].assign(**{"hours-per-week": np.where(np.arange(len(split[1])) % 20 == 0, hi + 1, split[1]["hours-per-week"])})
    a = compare(reference, tally(reference, test), thresholds)["attributes"]["hours-per-week"]
    assert a["flag"] and a["untrained_share"] == pytest.approx(0.05, abs=0.001)
    assert f"outside the training range 1..{hi}" in a["reasons"][-1]


def damaged(reference: dict, how: str) -> str:
    "The profile as JSON text, damaged one way."
    bad = json.loads(json.dumps(reference))
    if how == "not JSON":
        return json.dumps(bad)[:-2]
    if how == "a count changed":
        bad["categories"]["sex"]["Male"] += 1
    elif how == "a count moved":  # every sum still right: only the checksum tells
        bad["categories"]["sex"]["Male"] += 1
        bad["categories"]["sex"]["Female"] -= 1
    elif how == "a category renamed":
        bad["categories"]["race"]["Martian"] = bad["categories"]["race"].pop("Other")
    elif how == "an attribute missing":
        del bad["numbers"]["fnlgt"]
    elif how == "cuts out of order":
        bad["numbers"]["age"]["cuts"].reverse()
    elif how == "a list":
        bad = [bad]
    elif how == "components cut":
        bad["multivariate"]["components"] = [c[:-1] for c in bad["multivariate"]["components"]]
    elif how == "chunk errors unsorted":
        bad["multivariate"]["chunk_errors"].reverse()
    elif how == "an error tampered":  # still sorted, still a number: only the checksum tells
        bad["multivariate"]["chunk_errors"][-1] += 1.0
    return json.dumps(bad)


@pytest.mark.parametrize(("how", "says"), [
    ("not JSON", "not JSON"),
    ("a count changed", "sex: the counts are not whole numbers summing to the"),
    ("a count moved", "the checksum does not match the content"),
    ("a category renamed", "race: the categories are not the schema's"),
    ("an attribute missing", "the attributes are not the schema's"),
    ("cuts out of order", "age: the bins are not whole numbers rising from lo to hi"),
    ("a list", "not a profile as fit_reference writes it"),
    ("components cut", "the multivariate part's mean, scale and components do not have the 14 attributes"),
    ("chunk errors unsorted", "the multivariate part's chunk errors are not sorted"),
    ("an error tampered", "the checksum does not match the content"),
])
def test_a_malformed_or_tampered_profile_is_one_clear_error(reference, tmp_path, how, says):
    path = tmp_path / "reference.json"
    path.write_text(damaged(reference, how))
    with pytest.raises(ReferenceFileError) as err:
        load_reference(path)
    assert f"reference profile {path} is unusable: " in str(err.value) and says in str(err.value)


def test_the_profile_round_trips_and_must_fit_the_models_encoder(split, reference, tmp_path):
    save_reference(reference, tmp_path / "model" / "reference.json")
    assert load_reference(tmp_path / "model" / "reference.json", fit_encoder(split[0])) == reference
    with pytest.raises(ReferenceFileError, match="reference profile not found: .*nowhere.json"):
        load_reference(tmp_path / "nowhere.json")
    other = fit_encoder(split[0].iloc[:3000])  # another training split: other rows, fewer categories seen
    problems = check_reference(reference, other)
    assert any(f"profiles {len(split[0])} training rows but the encoder was fitted on 3000" in p for p in problems)
    assert any("native-country" in p for p in problems) and "different runs" in problems[-1]


def test_thresholds_are_checked(reference, split, thresholds):
    counts = tally(reference, split[1].iloc[:10])
    with pytest.raises(ValueError, match=r"\['unseen_flag'\] are missing"):
        compare(reference, counts, {k: v for k, v in thresholds.model_dump().items() if k != "unseen_flag"})
    with pytest.raises(ValueError, match=r"\['ratio_flag'\] must be numbers"):
        compare(reference, counts, thresholds.model_dump() | {"ratio_flag": 0.5})


def test_a_null_counts_as_unknown_as_validation_gives_it(reference, split):
    "Validated columns hold None for `?` (census_income.validation): counted in the `?` cell, as the text `?` is."
    rows = split[1].iloc[:50]
    nulls = {c: [None if v == "?" else v for v in rows[c]] if c in CATEGORICAL else rows[c].tolist() for c in FEATURES}
    assert (rows["workclass"] == "?").any() and tally(reference, nulls) == tally(reference, rows)


def test_the_profile_is_the_same_bytes_on_one_thread_and_on_all(split, reference, params):
    "The multivariate part comes from BLAS and LAPACK: their thread count must not reach the written profile."
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        assert json.dumps(fit_reference(split[0], params.profile)) == json.dumps(reference)


def test_columns_of_different_lengths_are_refused(reference, split):
    columns = {c: split[1][c].tolist() for c in FEATURES} | {"sex": ["Male"]}
    with pytest.raises(ValueError, match="sex: 1 values, age 6508"):
        tally(reference, columns)


def test_counting_refuses_values_outside_the_schema(reference, split):
    with pytest.raises(ValueError, match=r"race: \['Martian'\] not in the schema"):
        tally(reference, split[1].assign(race="Martian"))
    assert set(CATEGORICAL) | set(CONTINUOUS) == set(tally(reference, split[1].iloc[:3])["cells"])


def resealed(reference: dict, **multivariate) -> dict:
    "The profile with parts of its multivariate part replaced, and its checksum written anew: only the numbers can tell."
    bad = json.loads(json.dumps(reference))
    bad["multivariate"].update(multivariate)
    return {k: v for k, v in bad.items() if k != "checksum"} | {"checksum": checksum({k: v for k, v in bad.items() if k != "checksum"})}


DEGENERATE = {  # what the multivariate part holds: what the refusal says
    "a subnormal scale": ({"scale": [1e-320] * 14}, "the multivariate part's scale holds 1e-320, outside 1e-05..1e+06"),
    "huge components": ({"components": [[1e308] * 14]}, "the multivariate part's components holds 1e+308, outside -1..1"),
    "a huge mean": ({"mean": [1e300] * 14}, "the multivariate part's mean holds 1e+300, outside -1e+06..1e+06"),
    "a negative chunk error": ({"chunk_errors": [-1.0, 1.0]}, "the multivariate part's chunk_errors holds -1, outside 0..1e+06"),
    "components not orthonormal": ({"components": [[0.5] * 14]}, "the multivariate part's components are not orthonormal"),
    "chunks of 10**400 rows": ({"chunk_rows": 10**400}, "the multivariate part's chunk errors are not sorted numbers from chunks of 1 to 1,000,000 rows"),
}


@pytest.mark.parametrize("how", DEGENERATE)
def test_a_sealed_profile_with_degenerate_numbers_is_refused(reference, tmp_path, how):
    "Finite numbers with the checksum right once overflowed every row's error: the job wrote drift.json with a bare NaN."
    part, says = DEGENERATE[how]
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(resealed(reference, **part)))
    with pytest.raises(ReferenceFileError) as err:
        load_reference(path)
    assert str(err.value).startswith(f"reference profile {path} is unusable: {says}") and "\n" not in str(err.value)
    assert str(err.value).endswith(": refit the profile (the preprocess stage writes it)")


def test_chi2_p_is_scipys_test_of_the_table():
    # chi2_p writes Pearson's test out (scipy.special's tail only); scipy.stats' own test of the same table is the oracle
    from scipy.stats import chi2_contingency

    rng = np.random.default_rng(7)
    for _ in range(300):
        k = int(rng.integers(2, 17))
        train = rng.integers(1000, 5000, k)  # every cell expected to hold 5 batch rows or more: nothing pooled
        batch = rng.multinomial(int(rng.integers(500, 3000)), rng.dirichlet(np.full(k, 8.0) + train / train.sum() * 40))
        batch = np.where(batch == 0, 1, batch)
        expected = float(f"{chi2_contingency(np.array([train, batch]), correction=False).pvalue:.3g}")
        assert chi2_p(train.tolist(), batch.tolist()) == expected

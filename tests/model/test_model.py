"""The trained model: quality floors, safe artifacts, numpy serving equals torch, behaviour on edited records."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from census_income.config import HYPER_PARAMS
from census_income.metrics import readable
from census_income.model import ARCH, IncomeEnsemble, IncomeMLP, predict_proba
from census_income.network import ModelFilesError
from census_income.predict import Predictor, predict
from census_income.schema import CATEGORIES, FEATURES, LABEL
from census_income.validation import RecordError, category_error, range_error


@pytest.fixture(scope="module")
def test_split(artifacts):
    return pd.read_csv(artifacts / "data/test.csv", keep_default_na=False)


def test_quality_floors_on_the_test_split(artifacts):
    m = json.loads((artifacts / "metrics/test.json").read_text())
    assert m["n"] == 6508
    assert m["roc_auc"] >= 0.925, m  # target 0.932 (mean of 3 seeds: benchmarks/quality_seeds.py)
    assert m["f1"] >= 0.72, m  # target 0.74
    assert m["accuracy"] >= 0.85, m
    assert m["ece"] <= 0.03, m  # target 0.02 after calibration


def test_calibration_is_reported_before_and_after(artifacts):
    c = json.loads((artifacts / "metrics/calibration.json").read_text())
    rel = c["reliability"]["after"]
    assert c["temperature"] > 0 and 1 <= len(rel["rows"]) <= c["n_bins"]  # no more bins than the setting, none empty
    assert sum(rel["rows"]) == c["test"]["after"]["n"] and min(rel["rows"]) > 0
    for where in ("held_out", "test"):
        before, after = c[where]["before"], c[where]["after"]
        assert abs(before["roc_auc"] - after["roc_auc"]) < 1e-4, "a temperature must not reorder the rows"
    assert c["held_out"]["after"]["log_loss"] <= c["held_out"]["before"]["log_loss"] + 1e-9, "fitted where it lowers the loss"
    assert sum(c["reliability"]["after"]["rows"]) == 6508


def test_baselines_are_reported_beside_the_mlp(artifacts):
    base = json.loads((artifacts / "metrics/baselines.json").read_text())
    assert set(base) == {"logistic_regression", "hist_gradient_boosting"}
    assert base["hist_gradient_boosting"]["roc_auc"] > 0.92 and base["logistic_regression"]["roc_auc"] > 0.89
    gap = json.loads((artifacts / "metrics/comparison.json").read_text())["auc_gap"]["hist_gradient_boosting"]
    assert gap["low"] <= gap["gap"] <= gap["high"] and gap["n_boot"] >= 100


def test_the_served_student_is_reported_beside_the_ensemble_it_learnt_from(artifacts, predictor):
    c = json.loads((artifacts / "metrics/comparison.json").read_text())
    test = json.loads((artifacts / "metrics/test.json").read_text())
    assert c["served"] == "student" and set(c["candidates"]) == {"student", "ensemble"}
    student, ensemble = c["candidates"]["student"], c["candidates"]["ensemble"]
    assert student["test"] == test and student["networks"] == predictor.net.members == 1 and ensemble["networks"] == 5
    assert student["multiply_adds"] == predictor.net.multiply_adds and student["multiply_adds"] * 10 < ensemble["multiply_adds"]
    gap = c["auc_gap"]["ensemble"]  # student minus ensemble, paired bootstrap on the test split
    assert gap["low"] <= gap["gap"] <= gap["high"] and abs(gap["gap"] - (test["roc_auc"] - ensemble["test"]["roc_auc"])) < 2e-4
    assert gap["gap"] > -0.005, gap  # quality floor over 3 seeds (benchmarks/quality_seeds.py): within 0.0015
    assert student["held_out"]["n"] < ensemble["held_out"]["n"]  # one fold against every fold's out-of-fold rows


def test_manifest_describes_and_rebuilds_the_model(model_dir, predictor):
    man = json.loads((model_dir / "manifest.json").read_text())
    assert man["feature_names"] == predictor.encoder.feature_names
    assert man["metrics"]["test"]["threshold"] == readable(man["threshold"]) and 0 < man["threshold"] < 1
    assert set(man["params"]) >= {*HYPER_PARAMS, "seed", "n_folds"}
    networks = {"student": 1, "ensemble": man["params"]["n_folds"]}[man["params"]["served"]]
    assert man["architecture"]["members"] == networks == len(man["metrics"]["epochs"])
    from census_income.predict import file_digest, model_version

    assert man["version"] == model_version(man)
    assert man["sha256"] == {man[k]: file_digest((model_dir / man[k]).read_bytes()) for k in ("weights", "encoder", "reference")}


def test_numpy_predictor_equals_the_torch_model_on_the_whole_test_split(model_dir, predictor, test_split):
    "Every member, the embeddings, the mean and the temperature: torch rebuilt from the manifest against the numpy replay."
    arch = predictor.manifest["architecture"]
    n_onehot = arch["n_in"] - arch["n_numeric"]
    members = [IncomeMLP(n_onehot, arch["n_numeric"], **{k: arch[k] for k in ARCH}) for _ in range(arch["members"])]
    net = IncomeEnsemble(members, temperature=1.0)
    net.load_state_dict(load_file(str(model_dir / "weights.safetensors")))
    assert float(net.temperature) == arch["temperature"] != 1.0
    X = predictor.encoder.transform(test_split)
    p_torch = predict_proba(net, X)
    p_numpy = predictor.predict_proba(test_split)
    assert len(p_numpy) == 6508
    np.testing.assert_allclose(p_numpy, p_torch, rtol=0, atol=1e-5)
    assert ((p_numpy >= predictor.threshold) == (p_torch >= predictor.threshold)).mean() > 0.9995


def test_model_folder_holds_no_pickle(model_dir):
    "Everything the API loads is JSON or safetensors: nothing that can run code when loaded."
    served = {"manifest.json", "encoder.json", "weights.safetensors"}
    assert served <= {p.name for p in model_dir.iterdir()}
    for name in served:
        assert not (model_dir / name).read_bytes().startswith(b"\x80"), f"{name} looks like a pickle"
    tensors = load_file(str(model_dir / "weights.safetensors"))
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())


def test_prediction_function_on_records_as_users_write_them(model_dir, test_split):
    rows = test_split.head(50)
    records = rows[list(FEATURES)].to_dict(orient="records")
    underscored = [{k.replace("-", "_"): v for k, v in r.items()} for r in records]
    out = predict(records, model_dir)
    assert out == predict(underscored, model_dir)
    assert all(o["prediction"] in ("<=50K", ">50K") and 0 <= o["probability"] <= 1 for o in out)
    with_question = dict(records[0], occupation="?")
    with_none = dict(records[0], occupation=None)
    assert predict([with_question], model_dir) == predict([with_none], model_dir)


def test_accuracy_of_the_prediction_function_matches_the_metrics(artifacts, model_dir, test_split):
    out = predict(test_split[list(FEATURES)].to_dict(orient="records"), model_dir)
    acc = np.mean([o["prediction"] == y for o, y in zip(out, test_split[LABEL], strict=True)])
    m = json.loads((artifacts / "metrics/test.json").read_text())
    assert readable(acc) == m["accuracy"]  # the file holds it at `DIGITS` significant digits


def test_bad_records_and_missing_model_are_explained(model_dir, test_split, tmp_path):
    rec = test_split[list(FEATURES)].iloc[0].to_dict()
    with pytest.raises(RecordError, match="record 0: 'salary_band' is not a census field"):
        predict([rec | {"salary_band": 1}], model_dir)
    with pytest.raises(RecordError, match="record 0: age: field required"):
        predict([{k: v for k, v in rec.items() if k != "age"}], model_dir)
    with pytest.raises(RecordError) as err:  # an unknown category is refused as the API refuses it, not scored
        predict([rec, rec | {"race": "Martian", "age": 300}], model_dir)
    assert str(err.value) == f"record 1: {range_error('age', 300)}; record 1: {category_error('race', 'Martian')}"
    assert "Martian" not in CATEGORIES["race"]
    with pytest.raises(ModelFilesError, match="model file missing.*dvc pull"):
        Predictor.load(tmp_path)
    (tmp_path / "manifest.json").write_text((model_dir / "manifest.json").read_text())
    (tmp_path / "encoder.json").write_text((model_dir / "encoder.json").read_text())
    (tmp_path / "weights.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ModelFilesError, match="unusable"):
        Predictor.load(tmp_path)


# Behaviour: edits a person would expect to matter (or not) move the probability that way.


def edited(frame: pd.DataFrame, **changes) -> pd.DataFrame:
    out = frame.copy()
    for col, value in changes.items():
        out[col] = value
    return out


def test_fnlgt_barely_matters(predictor, test_split):
    """fnlgt is a census sampling weight, not a trait of the person: replacing it moves predictions a third as much as
    replacing the education, at most (measured: it flipped 1.2% to 2.75% of the decisions of the networks trained
    here; how much depends on the model, so the yardstick is an attribute that matters, in the same model)."""
    base = predictor.predict_proba(test_split)
    decided = base >= predictor.threshold

    def effect(**values) -> tuple[float, float]:  # mean |Δp| and the share of decisions flipped
        moved = predictor.predict_proba(edited(test_split, **values))
        return float(np.mean(np.abs(base - moved))), float(np.mean(decided != (moved >= predictor.threshold)))

    fnlgt = effect(fnlgt=int(test_split.fnlgt.median()))
    education = effect(education="HS-grad", **{"education-num": 9})  # the median person's
    assert fnlgt[0] < education[0] / 3 and fnlgt[1] < education[1] / 3, (fnlgt, education)


def test_a_large_capital_gain_raises_the_probability(predictor, test_split):
    base = predictor.predict_proba(test_split)
    rich = predictor.predict_proba(edited(test_split, **{"capital-gain": 15_024}))
    assert np.mean(rich > base) > 0.9


def test_more_education_raises_the_probability_on_average(predictor, test_split):
    hs = predictor.predict_proba(edited(test_split, education="HS-grad", **{"education-num": 9}))
    masters = predictor.predict_proba(edited(test_split, education="Masters", **{"education-num": 14}))
    assert masters.mean() > hs.mean() + 0.05 and np.mean(masters >= hs) > 0.8

"""Every stage's function on a sample, in a temporary folder, as `make test-fast` runs them (no `dvc repro`)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from census_income.clean import run_clean
from census_income.config import HYPER_PARAMS
from census_income.fileio import read_clean
from census_income.pipeline import STAGES, load_params, prepare, stage_function
from census_income.predict import Predictor
from census_income.preprocess import run_preprocess
from census_income.tune import run_tune
from testkit import ROOT


@pytest.fixture(scope="module")
def quick(quick_run) -> dict:
    "The quick params (params.yaml's `quick:` overrides), writing into a temporary folder."
    return quick_run[0]


@pytest.fixture(scope="module")
def ran(quick_run) -> dict:
    "What every stage returned in the quick run (which also checked that nothing was written into the repository)."
    return quick_run[1]


def test_quick_params_read_the_real_file_and_write_elsewhere(quick):
    paths = quick["paths"]
    assert Path(paths["raw_csv"]) == ROOT / "data" / "census.csv"
    outputs = [Path(v) for k, v in paths.items() if k not in ("raw_csv", "nbs_dir")]
    assert outputs and not any(ROOT in p.parents for p in outputs)
    assert quick["clean"]["sample_rows"] > 0 and quick["tune"]["n_trials"] <= 5


def test_every_stage_is_a_function_of_the_params(ran, quick):
    paths = quick["paths"]
    assert ran["clean"]["rows_written"] == quick["clean"]["sample_rows"] == len(read_clean(paths["clean_csv"]))
    assert ran["preprocess"]["train_rows"] + ran["preprocess"]["test_rows"] == ran["clean"]["rows_written"]
    assert set(ran["tune"]["params"]) == set(HYPER_PARAMS)
    assert json.loads(Path(paths["best_params_json"]).read_text())["params"] == ran["tune"]["params"]
    cands = ran["train"]["comparison"]["candidates"]
    assert len(cands["ensemble"]["epochs"]) == quick["train"]["n_folds"] and len(cands["student"]["epochs"]) == 1
    assert max(cands["ensemble"]["epochs"] + cands["student"]["epochs"]) <= quick["train"]["max_epochs"]
    assert ran["train"]["epochs"] == cands[quick["train"]["serve"]]["epochs"]
    assert Predictor.load(paths["model_dir"]).version == ran["train"]["manifest"]["version"]
    for name in ("test", "dev", "baselines", "calibration", "comparison"):
        assert json.loads(Path(paths["metrics_dir"], f"{name}.json").read_text()) == ran["train"][name]
    curve = pd.read_csv(Path(paths["metrics_dir"], "training_curve.csv"))  # every epoch of every network trained
    assert len(curve) == sum(cands["ensemble"]["epochs"] + cands["student"]["epochs"])
    assert (curve.network == "student").sum() == cands["student"]["epochs"][0]
    assert ran["slices"]["report"]["overall"]["n"] == ran["preprocess"]["test_rows"]
    assert ran["slices"]["report"]["settings"]["n_boot"] == quick["slices"]["n_boot"]
    assert Path(paths["card_md"]).read_text() == ran["report"]["card"]
    assert ran["train"]["manifest"]["version"] in Path(paths["index_html"]).read_text()


def test_tuning_switched_off_writes_the_stored_params(quick, ran, tmp_path):
    params = quick | {"tune": quick["tune"] | {"enabled": False},
                      "paths": quick["paths"] | {"best_params_json": str(tmp_path / "best.json"),
                                                 "tune_history_png": str(tmp_path / "h.png"),
                                                 "optuna_db": str(tmp_path / "o.db")}}
    result = run_tune(params)
    assert result["params"] == quick["tune"]["stored"] and result["study"] is None
    assert not (tmp_path / "o.db").exists() and (tmp_path / "h.png").exists()  # no study when tuning is off


def test_prepare_runs_the_upstream_stages_of_a_quick_run():
    params = prepare(ROOT / "params.yaml", "preprocess", quick=True)
    assert Path(params["paths"]["clean_csv"]).is_file()  # clean ran first...
    assert not Path(params["paths"]["train_csv"]).exists()  # ...and nothing after it
    assert prepare(ROOT / "params.yaml", "preprocess", quick=False)["paths"]["clean_csv"] == str(ROOT / "data/census_clean.csv")


def test_every_stage_of_dvc_yaml_has_its_function():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"census-stage {name}"
        assert callable(stage_function(name))
        assert f"nbs/{STAGES[name][0]}.ipynb" in stage["deps"]


def test_same_params_give_the_same_bytes(quick, ran, tmp_path):
    "Rerunning the data stages with the same params reproduces their outputs byte for byte."
    again = load_params(ROOT / "params.yaml", quick=True, workdir=tmp_path)
    run_clean(again)
    run_preprocess(again)
    for key in ("clean_csv", "train_csv", "test_csv", "encoder_json"):
        assert Path(again["paths"][key]).read_bytes() == Path(quick["paths"][key]).read_bytes(), key


def test_a_model_folder_away_from_the_encoder_is_whole(quick, tmp_path):
    "The train stage with paths.model_dir elsewhere (as benchmarks/quality_seeds.py runs it) leaves a whole folder that loads."
    from census_income.train import run_train

    away = {"model_dir": str(tmp_path / "model"), "metrics_dir": str(tmp_path / "metrics")}
    result = run_train(quick | {"train": quick["train"] | {"baselines": False, "importance_repeats": 1},
                                "paths": quick["paths"] | away})
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["encoder.json", "manifest.json", "reference.json",
                                                                      "weights.safetensors"]
    for key in ("encoder_json", "reference_json"):  # carried along, and hashed into the version
        assert (tmp_path / "model" / Path(quick["paths"][key]).name).read_bytes() == Path(quick["paths"][key]).read_bytes()
    assert Predictor.load(tmp_path / "model").version == result["manifest"]["version"]

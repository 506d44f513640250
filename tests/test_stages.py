"""Every stage's function on a sample, in a temporary folder, as `make test-fast` runs them (no `dvc repro`)."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from census_income.clean import run_clean
from census_income.config import HYPER_PARAMS, TRAIN_RESULTS
from census_income.fileio import read_clean
from census_income.pipeline import STAGES, load_params, prepare, stage_function
from census_income.places import INPUTS
from census_income.predict import Predictor
from census_income.preprocess import run_preprocess
from census_income.tune import run_tune
from testkit import ROOT, paths_elsewhere


@pytest.fixture(scope="module")
def quick(quick_run):
    "The quick params (params.yaml's `quick:` overrides), writing into a temporary folder."
    return quick_run[0]


@pytest.fixture(scope="module")
def ran(quick_run) -> dict:
    "What every stage returned in the quick run (which also checked that nothing was written into the repository)."
    return quick_run[1]


def test_quick_params_read_the_real_file_and_write_elsewhere(quick):
    paths = quick.paths
    assert Path(paths.raw_csv) == ROOT / "data" / "census.csv"
    outputs = [Path(v) for k, v in paths.model_dump().items() if k not in INPUTS]
    assert outputs and not any(ROOT in p.parents for p in outputs)
    assert quick.clean.sample_rows > 0 and quick.tune.n_trials <= 5


def test_every_stage_is_a_function_of_the_params(ran, quick):
    paths = quick.paths
    assert ran["clean"]["rows_written"] == quick.clean.sample_rows == len(read_clean(paths.clean_csv))
    assert ran["preprocess"]["train_rows"] + ran["preprocess"]["test_rows"] == ran["clean"]["rows_written"]
    assert set(ran["tune"]["params"]) == set(HYPER_PARAMS)
    assert json.loads(Path(paths.best_params_json).read_text())["params"] == ran["tune"]["params"]
    cands = ran["train"]["comparison"]["candidates"]
    assert len(cands["ensemble"]["epochs"]) == quick.train.n_folds and len(cands["student"]["epochs"]) == 1
    assert max(cands["ensemble"]["epochs"] + cands["student"]["epochs"]) <= quick.train.max_epochs
    assert ran["train"]["epochs"] == cands[quick.train.serve]["epochs"]
    assert Predictor.load(paths.model_dir).version == ran["train"]["manifest"]["version"]
    for name, field in TRAIN_RESULTS.items():
        assert json.loads(Path(getattr(paths, field)).read_text()) == ran["train"][name]
    curve = pd.read_csv(paths.training_curve_csv)  # every epoch of every network trained
    assert len(curve) == sum(cands["ensemble"]["epochs"] + cands["student"]["epochs"])
    assert (curve.network == "student").sum() == cands["student"]["epochs"][0]
    assert ran["slices"]["report"]["overall"]["n"] == ran["preprocess"]["test_rows"]
    assert ran["slices"]["report"]["settings"]["n_boot"] == quick.slices.n_boot
    assert Path(paths.card_md).read_text() == ran["report"]["card"]
    assert ran["train"]["manifest"]["version"] in Path(paths.index_html).read_text()


def test_tuning_switched_off_writes_the_stored_params(quick, ran, tmp_path):
    paths = paths_elsewhere(quick.paths, tmp_path, keep=("train_csv", "encoder_json"))
    result = run_tune(quick.tune.model_copy(update={"enabled": False}), paths)
    assert result["params"] == quick.tune.stored.model_dump() and result["study"] is None
    assert not Path(paths.optuna_db).exists() and Path(paths.tune_history_png).is_file()  # no study when tuning is off


def test_prepare_runs_the_upstream_stages_of_a_quick_run():
    params = prepare(ROOT / "params.yaml", "preprocess", quick=True)
    assert Path(params.paths.clean_csv).is_file()  # clean ran first...
    assert not Path(params.paths.train_csv).exists()  # ...and nothing after it
    assert prepare(ROOT / "params.yaml", "preprocess", quick=False).paths.clean_csv == str(ROOT / "data/census_clean.csv")


def test_a_stage_given_an_output_folder_writes_there_only(tmp_path, monkeypatch):
    "census-stage's staging: the full params (no quick overrides), every output under the folder, the inputs where they are."
    monkeypatch.chdir(ROOT / "nbs")  # where papermill runs a stage's notebook, given its folder relative to nbs/
    repo_file = ROOT / "data" / "census_clean.csv"
    before = repo_file.stat().st_mtime_ns if repo_file.exists() else None
    params = prepare(ROOT / "params.yaml", "clean", quick=False, output_dir=os.path.relpath(tmp_path))
    assert params.clean == load_params(ROOT / "params.yaml").clean  # not the quick run's sample
    assert Path(params.paths.clean_csv) == tmp_path / "data" / "census_clean.csv"  # made absolute
    assert Path(params.paths.raw_csv) == ROOT / "data" / "census.csv"
    written = run_clean(params.clean, params.paths)
    assert written["rows_written"] == len(read_clean(tmp_path / "data" / "census_clean.csv")) > 30_000
    assert (repo_file.stat().st_mtime_ns if repo_file.exists() else None) == before  # the repository's file untouched


def test_every_stage_of_dvc_yaml_has_its_function():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"census-stage {name}"
        assert callable(stage_function(name))
        assert f"nbs/{STAGES[name][0]}.ipynb" in stage["deps"]
        assert stage["params"] == [*STAGES[name][2], "paths"]  # DVC reruns a stage when one of the sections it takes changes


def test_same_params_give_the_same_bytes(quick, ran, tmp_path):
    "Rerunning the data stages with the same params reproduces their outputs byte for byte."
    again = load_params(ROOT / "params.yaml", quick=True, workdir=tmp_path)
    run_clean(again.clean, again.paths)
    run_preprocess(again.split, again.profile, again.paths)
    for key in ("clean_csv", "train_csv", "test_csv", "encoder_json"):
        assert Path(getattr(again.paths, key)).read_bytes() == Path(getattr(quick.paths, key)).read_bytes(), key


def test_a_model_folder_away_from_the_encoder_is_whole(quick, tmp_path):
    "The train stage with paths.model_dir elsewhere (as benchmarks/quality_seeds.py runs it) leaves a whole folder that loads."
    from census_income.train import run_train

    inputs = ("train_csv", "test_csv", "encoder_json", "reference_json", "best_params_json")
    paths = paths_elsewhere(quick.paths, tmp_path, keep=inputs)
    result = run_train(quick.train.model_copy(update={"baselines": False, "importance_repeats": 1}), paths)
    model = Path(paths.model_dir)
    assert sorted(p.name for p in model.iterdir()) == ["encoder.json", "manifest.json", "reference.json", "weights.safetensors"]
    for key in ("encoder_json", "reference_json"):  # carried along, and hashed into the version
        source = Path(getattr(quick.paths, key))
        assert (model / source.name).read_bytes() == source.read_bytes()
    assert Predictor.load(model).version == result["manifest"]["version"]

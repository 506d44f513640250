"""The student's ingredients: synthetic transfer rows, its hyper-parameters, and the one fold it never trains on."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from census_income.clean import clean_census
from census_income.config import Distill, HyperParams, TrainConfig
from census_income.preprocess import fit_encoder
from census_income.schema import CLASSES, FEATURES, LABEL
from census_income.split import split_data
from census_income.train import student_params, train_ensemble, train_student, transfer_rows

HP = HyperParams(n_frequencies=4, sigma=1.0, d_embedding=4, depth=2, hidden=16, dropout=0.1, lr=3e-3, batch_size=256,
                 weight_decay=1e-4)
CFG = TrainConfig(n_folds=3, max_epochs=3, patience=2, seed=5, baselines=False, importance_repeats=1, n_boot=10, ci_level=0.9,
                  serve="student", distill=Distill(transfer=2, swap=0.3, alpha=0.5, depth=1, hidden=8))


@pytest.fixture(scope="module")
def rows(census_path) -> pd.DataFrame:
    return clean_census(census_path)[0].sample(1500, random_state=3).reset_index(drop=True)


def test_transfer_rows_mix_real_values_only(rows):
    out = transfer_rows(rows, 4000, 0.3, seed=1)
    assert list(out.columns) == list(FEATURES) and len(out) == 4000
    for c in FEATURES:  # every value is one some real row holds in that column, with its type
        assert set(out[c]) <= set(rows[c]) and out[c].dtype == rows[c].dtype, c
    real = set(map(tuple, rows[list(FEATURES)].to_numpy().tolist()))
    copied = np.mean([tuple(r) in real for r in out.to_numpy().tolist()])
    assert 0.0 < copied < 0.2  # a synthetic row is a real one only when nothing was swapped (0.7**14 ≈ 0.7%) or by chance


def test_transfer_rows_swap_about_the_share_asked(rows):
    few, many = transfer_rows(rows, 3000, 0.05, seed=2), transfer_rows(rows, 3000, 0.6, seed=2)
    real = set(map(tuple, rows[list(FEATURES)].to_numpy().tolist()))
    share = {k: np.mean([tuple(r) in real for r in f.to_numpy().tolist()]) for k, f in (("few", few), ("many", many))}
    assert share["few"] > 0.4 > 0.01 > share["many"]  # 0.95**14 ≈ 0.49 of rows untouched; 0.4**14 ≈ 0


def test_transfer_rows_are_a_function_of_the_seed(rows):
    a, b, c = (transfer_rows(rows, 500, 0.3, seed=s) for s in (7, 7, 8))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_the_student_takes_its_depth_and_width_from_distill_and_the_rest_from_tuning():
    hp = student_params(HP, CFG)
    assert (hp.depth, hp.hidden) == (1, 8) and hp.model_dump(exclude={"depth", "hidden"}) == HP.model_dump(exclude={"depth", "hidden"})


@pytest.mark.parametrize("bad", [{"transfer": 17}, {"transfer": -1}, {"swap": 0.0}, {"swap": 1.0}, {"alpha": 1.5},
                                 {"depth": 0}, {"hidden": 2}, {"transfer": 2.0}, {"extra": 1}])
def test_distill_settings_out_of_range_are_refused(bad):
    with pytest.raises(ValidationError):
        Distill.model_validate(CFG.distill.model_dump() | bad)


def test_the_student_never_trains_on_the_fold_that_judges_it(rows):
    train = split_data(rows, 0.2, 0)[0]
    encoder = fit_encoder(train)
    ensemble = train_ensemble(train, encoder, HP, CFG, progress=False)
    student = train_student(train, encoder, HP, CFG, ensemble, progress=False)
    held = ensemble["folds"][0]
    assert student["held_out"]["n"] == len(held) and student["held_out_before"]["n"] == len(held)
    assert len(student["model"].members) == 1 and student["model"].members[0].net[0].out_features == 8
    # the same student again from the same inputs: the same weights (seeded synthetic rows, batches and dropout)
    again = train_student(train, encoder, HP, CFG, ensemble, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(student["model"].state_dict().values(), again["model"].state_dict().values(),
                                                    strict=True))
    # a held-out row changed changes nothing in the student but its held-out numbers: no row of fold 0 trains it
    flipped = train.copy()
    flipped.loc[flipped.index[held], LABEL] = flipped[LABEL].iloc[held].map({CLASSES[0]: CLASSES[1], CLASSES[1]: CLASSES[0]})
    # the same teacher: only what the student is given differs (one epoch: early stopping has nothing to choose)
    third = train_student(flipped, encoder, HP, CFG.model_copy(update={"max_epochs": 1, "patience": 1}), ensemble, progress=False)
    first = train_student(train, encoder, HP, CFG.model_copy(update={"max_epochs": 1, "patience": 1}), ensemble, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(first["model"].members[0].state_dict().values(),
                                                    third["model"].members[0].state_dict().values(), strict=True))
    assert first["held_out"]["roc_auc"] != third["held_out"]["roc_auc"]

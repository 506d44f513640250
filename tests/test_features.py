"""The numpy encoder replays scikit-learn exactly, on the whole real test split."""

import numpy as np
import pytest
from sklearn.preprocessing import LabelBinarizer, OneHotEncoder, StandardScaler

from census_income.clean import clean_census
from census_income.features import ROW_ORDER, load_encoder, save_encoder
from census_income.preprocess import fit_encoder
from census_income.schema import CATEGORICAL, CONTINUOUS, LABEL
from census_income.split import split_data


@pytest.fixture(scope="module")
def split(census_path, params):
    clean, _ = clean_census(census_path)
    return split_data(clean, params.split.test_size, params.split.seed)


@pytest.fixture(scope="module")
def encoder(split, params):
    return fit_encoder(split[0])


def test_split_is_stratified_and_disjoint(census_path, params):
    clean, _ = clean_census(census_path)
    rows = clean.assign(row_id=range(len(clean)))  # each clean row's identity, carried through the split
    train, test = split_data(rows, params.split.test_size, params.split.seed)
    assert set(train["row_id"]).isdisjoint(test["row_id"]), "a row is in both splits"
    assert sorted(set(train["row_id"]) | set(test["row_id"])) == list(range(len(clean))), "a row was lost"
    assert abs(len(test) / len(clean) - params.split.test_size) < 0.001
    share = [f[LABEL].eq(">50K").mean() for f in (train, test)]
    assert abs(share[0] - share[1]) < 0.002


def test_numpy_transform_equals_sklearn_on_the_test_split(split, encoder):
    train, test = split
    test = test.copy()
    test.loc[test.index[:50], "native-country"] = "Atlantis"  # categories never seen in training
    test.loc[test.index[50:60], "education"] = "Kindergarten"
    onehot = OneHotEncoder(handle_unknown="ignore").fit(train[list(CATEGORICAL)].astype(str))
    scaler = StandardScaler().fit(train[list(CONTINUOUS)].to_numpy(dtype=float))
    X = encoder.transform(test)
    ref_onehot = onehot.transform(test[list(CATEGORICAL)].astype(str)).toarray()
    ref_scaled = scaler.transform(test[list(CONTINUOUS)].to_numpy(dtype=float))
    assert np.array_equal(X[:, : encoder.n_onehot], ref_onehot)
    np.testing.assert_allclose(X[:, encoder.n_onehot : encoder.n_onehot + 6], ref_scaled, rtol=1e-6, atol=1e-6)
    assert X[:50, : encoder.n_onehot].sum() == 50 * (len(CATEGORICAL) - 1)


def test_label_matches_label_binarizer(split, encoder):
    train, test = split
    ref = LabelBinarizer().fit(train[LABEL]).transform(test[LABEL]).ravel()
    assert np.array_equal(encoder.encode_label(test[LABEL]), ref)


def test_rows_and_columns_give_the_same_matrix(split, encoder):
    test = split[1].copy()
    test.loc[test.index[:20], "race"] = "Martian"  # unseen categories take the same path through both doors
    rows = list(test[list(ROW_ORDER)].itertuples(index=False, name=None))
    X = encoder.transform(test)
    assert np.array_equal(encoder.encode_rows(rows), X), "the whole split at once"
    singles = np.vstack([encoder.encode_rows([r]) for r in rows[:300]])
    assert np.array_equal(singles, X[:300]), "one record at a time"
    assert encoder.encode_rows([]).shape == (0, encoder.n_features)


def test_the_encoder_never_sees_the_labels(split, encoder):
    "No label reaches the state (the folds that early-stop the members stay honest): shuffled labels, same encoder."
    shuffled = split[0].assign(**{LABEL: split[0][LABEL].sample(frac=1, random_state=1).to_numpy()})
    assert fit_encoder(shuffled).state == encoder.state


def test_json_round_trip_is_exact(tmp_path, split, encoder):
    back = load_encoder(save_encoder(encoder, tmp_path / "enc.json"))
    assert np.array_equal(back.transform(split[1]), encoder.transform(split[1]))


def test_missing_or_broken_encoder_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder file not found.*dvc pull"):
        load_encoder(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"categorical": {}}')
    with pytest.raises(ValueError, match="not a valid encoder state"):
        load_encoder(tmp_path / "bad.json")

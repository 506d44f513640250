"""The numpy encoder replays scikit-learn exactly, on the whole real test split."""

import numpy as np
import pytest
from sklearn.preprocessing import LabelBinarizer, OneHotEncoder, StandardScaler

from census_income.clean import clean_census
from census_income.features import load_encoder, save_encoder
from census_income.preprocess import fit_encoder, split_data
from census_income.schema import CATEGORICAL, CONTINUOUS, LABEL


@pytest.fixture(scope="module")
def split(census_path, params):
    clean, _ = clean_census(census_path)
    return split_data(clean, params["split"]["test_size"], params["split"]["seed"])


@pytest.fixture(scope="module")
def encoder(split, params):
    p = params["split"]
    return fit_encoder(split[0], n_bins=p["n_bins"], min_leaf=p["min_leaf"], seed=p["seed"])


def test_split_is_stratified_and_disjoint(split, params):
    train, test = split
    assert abs(len(test) / (len(train) + len(test)) - params["split"]["test_size"]) < 0.001
    share = [f[LABEL].eq(">50K").mean() for f in split]
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


def test_records_and_columns_give_the_same_matrix(split, encoder):
    test = split[1].head(200)
    records = test.to_dict(orient="records")
    assert np.array_equal(encoder.transform_records(records), encoder.transform(test))


def test_ple_edges_are_fitted_and_bounded(encoder):
    X = encoder.transform_records([])
    assert X.shape == (0, encoder.n_features)
    assert len(encoder.edges["age"]) > 3 and "capital-gain" in encoder.edges


def test_json_round_trip_is_exact(tmp_path, split, encoder):
    back = load_encoder(save_encoder(encoder, tmp_path / "enc.json"))
    assert np.array_equal(back.transform(split[1]), encoder.transform(split[1]))


def test_missing_or_broken_encoder_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder file not found.*dvc pull"):
        load_encoder(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"categorical": {}}')
    with pytest.raises(ValueError, match="not a valid encoder state"):
        load_encoder(tmp_path / "bad.json")

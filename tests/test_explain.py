"""Integrated gradients checked against an independent computation: central finite differences of the served
`forward64` (the served probability before its rounding to float32), on a random network three layers deep, in float64."""

import numpy as np
import pytest

from census_income.explain import _moves, _prepared, attribute_columns, explain_columns, integrated_gradients
from census_income.features import Encoder
from census_income.network import TOLERANCE, Network
from census_income.predict import Predictor
from census_income.schema import FEATURES
from census_income.toy import toy_encoder, toy_network
from census_income.validation import EXAMPLE, record_columns

ENCODER = toy_encoder()

# two people apart in five categories only, with numbers in the middle of their ranges (the toy networks' inputs are
# standardised by the toy encoder: a large capital gain would saturate them and hide the categories)
BASE = EXAMPLE | {"age": 41, "workclass": "State-gov", "capital-gain": 2100, "hours-per-week": 40, "marital-status": "Divorced"}


def deep_network(seed: int) -> Network:
    "A random ensemble with periodic embeddings and three hidden layers."
    return toy_network(ENCODER.n_onehot, members=2, n_frequencies=4, d_embedding=3, hidden=24, depth=3,
                       temperature=1.3, gain=1.75, seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contributions_equal_a_finite_difference_integral(seed):
    # the record and the baseline differ in categories only, so the straight path in the encoded input is the
    # path integrated gradients takes (the embedded numbers stay put), and finite differences of `forward64` apply
    record = BASE | {"workclass": "Private", "education": "HS-grad", "sex": "Female", "race": "Black", "occupation": "Sales"}
    X = ENCODER.transform(record_columns([record, BASE])).astype(np.float64)
    net, groups = deep_network(seed), list(attribute_columns(ENCODER, deep_network(seed)).values())
    steps, h = 400, 1e-5
    phi = integrated_gradients(net, X, groups, steps=steps)

    delta = X[0] - X[1]
    moved = np.flatnonzero(delta)
    alphas = (np.arange(steps) + 0.5) / steps
    points = X[1] + alphas[:, None] * delta  # (steps, features)
    rows = []
    for j in moved:  # ±h along each moved input, at every point of the path
        for sign in (1, -1):
            shifted = points.copy()
            shifted[:, j] += sign * h
            rows.append(shifted)
    p = net.forward64(np.concatenate(rows)).reshape(len(moved), 2, steps)
    grad = (p[:, 0] - p[:, 1]) / (2 * h)  # (moved inputs, steps)
    reference = np.zeros(len(groups))
    for j, g in zip(moved, grad, strict=True):
        owner = next(a for a, cols in enumerate(groups) if j in cols)
        reference[owner] += delta[j] * g.mean()

    p_record, p_base = net.forward64(X)
    assert abs(p_record - p_base) > 0.01  # the network does tell the two apart
    assert phi.sum() == pytest.approx(p_record - p_base, abs=1e-9)
    np.testing.assert_allclose(phi, reference, atol=2e-4)
    assert all(phi[a] == 0 for a, cols in enumerate(groups) if not np.isin(cols, moved).any())


# the numbers standardised at the adult data's own scale (the toy encoder's one scale would push fnlgt to thousands and
# saturate a network that sees the numbers as they are)
SCALED = Encoder(ENCODER.state | {"continuous": {c: {"mean": m, "scale": s} for c, m, s in [
    ("age", 38.6, 13.6), ("fnlgt", 189778.0, 105550.0), ("education-num", 10.1, 2.6), ("capital-gain", 1078.0, 7385.0),
    ("capital-loss", 87.0, 403.0), ("hours-per-week", 40.4, 12.4)]}})
EVERY = {"age": 23, "workclass": "Self-emp-inc", "fnlgt": 287927, "education": "HS-grad", "education-num": 9,  # differs
         "marital-status": "Never-married", "occupation": "Sales", "relationship": "Own-child", "race": "Black",  # from
         "sex": "Female", "capital-gain": 0, "capital-loss": 1902, "hours-per-week": 25, "native-country": "?"}  # BASE in all 14


@pytest.mark.parametrize("shape", [dict(members=2, n_frequencies=4, d_embedding=3, hidden=24, depth=3),
                                   dict(members=1, n_frequencies=0, hidden=8, depth=2),  # plain numbers
                                   dict(members=3, n_frequencies=2, hidden=6, depth=0)])  # no hidden layer
def test_a_records_explanation_is_integrated_gradients_of_its_encoded_row(shape):
    # `explain_columns` moves the first layer by each attribute's own weight rows and embedding; `integrated_gradients`
    # by the whole difference of the encoded rows, split into groups after: the two must agree on every attribute
    assert all(EVERY[c] != BASE[c] for c in FEATURES)
    net = toy_network(SCALED.n_onehot, temperature=1.3, gain=1.75, seed=5, **shape)
    predictor = Predictor(SCALED, net, {"threshold": 0.5, "version": "toy", "baseline": BASE})
    groups = list(attribute_columns(SCALED, net).values())
    some = BASE | {"age": 63, "education": "Masters", "education-num": 14, "sex": "Female", "capital-loss": 1900}
    for record in (EVERY, some, EXAMPLE, BASE):
        answer = explain_columns(predictor, record_columns([record]), steps=48)
        X = SCALED.transform(record_columns([record, BASE]))
        p_record, p_base = net.forward(X)
        assert 0.01 < p_base < 0.99 and (abs(p_record - p_base) > 0.01 or record == BASE)  # not saturated: a real test
        phi = dict(zip(FEATURES, integrated_gradients(net, X, groups, steps=48), strict=True))
        got = {c["attribute"]: c["contribution"] for c in answer["contributions"]}
        assert set(got) == set(FEATURES) and (record == BASE or any(got.values()))
        np.testing.assert_allclose([got[c] for c in FEATURES], [phi[c] for c in FEATURES], rtol=0, atol=1e-12)
        assert abs(answer["probability"] - p_record) <= TOLERANCE
        assert all(got[c] == 0 for c in FEATURES if record[c] == BASE[c])
        # the attributes' moves add up to the record's own first-layer output, computed by the forward pass
        moved = _prepared(predictor).start + _moves(net, _prepared(predictor), X[:1]).sum(-2)[:, None]
        np.testing.assert_allclose(moved, net.first_layer(X[:1]), rtol=0, atol=1e-12)


def test_integrated_gradients_refuses_groups_that_do_not_share_out_every_column():
    # the path moves the first layer by the groups' moves: a column in no group, or in two, would end it elsewhere
    net = deep_network(0)
    groups = list(attribute_columns(ENCODER, net).values())
    X = ENCODER.transform(record_columns([EXAMPLE, BASE]))
    for wrong in (groups[:-1], [*groups, groups[0]]):
        with pytest.raises(ValueError, match="every first-layer column in exactly one group"):
            integrated_gradients(net, X, wrong)

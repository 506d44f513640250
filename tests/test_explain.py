"""Integrated gradients checked against an independent computation: central finite differences of the served
`forward64` (the served probability before its rounding to float32), on a random network three layers deep, in float64."""

import numpy as np
import pytest
from safetensors.numpy import save as save_tensors

from census_income.explain import attribute_columns, integrated_gradients
from census_income.features import Encoder
from census_income.predict import forward64, load_network
from census_income.schema import CATEGORICAL, CATEGORIES, CLASSES, CONTINUOUS
from census_income.validation import EXAMPLE, record_columns

ENCODER = Encoder({"categorical": {c: list(CATEGORIES[c]) for c in CATEGORICAL}, "label": {"classes": list(CLASSES)},
                   "continuous": {c: {"mean": 40.0, "scale": 12.0} for c in CONTINUOUS}})


def deep_network(seed: int, members: int = 2, k: int = 4, d: int = 3, hidden: int = 24) -> dict:
    "A random ensemble with periodic embeddings and three hidden layers, as float64 arrays."
    rng, f = np.random.default_rng(seed), len(CONTINUOUS)
    w = lambda *shape: (rng.normal(size=shape) / np.sqrt(shape[-1])).astype(np.float32)  # noqa: E731
    tensors = {"temperature": np.array(1.3, np.float32)}
    for m in range(members):
        tensors |= {f"members.{m}.embed.frequencies": w(f, k), f"members.{m}.embed.weight": w(f, 2 * k, d),
                    f"members.{m}.embed.bias": w(f, d), f"members.{m}.net.0.weight": w(hidden, ENCODER.n_onehot + f * d),
                    f"members.{m}.net.0.bias": w(hidden), f"members.{m}.net.3.weight": w(hidden, hidden),
                    f"members.{m}.net.3.bias": w(hidden), f"members.{m}.net.6.weight": w(hidden, hidden),
                    f"members.{m}.net.6.bias": w(hidden), f"members.{m}.net.9.weight": 3 * w(1, hidden),
                    f"members.{m}.net.9.bias": w(1)}
    net = load_network(save_tensors(tensors))
    as64 = lambda v: [a.astype(np.float64) for a in v] if isinstance(v, list) else v.astype(np.float64) if isinstance(v, np.ndarray) else v  # noqa: E731
    return {key: as64(v) for key, v in net.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contributions_equal_a_finite_difference_integral(seed):
    # the record and the baseline differ in categories only, so the straight path in the encoded input is the
    # path integrated gradients takes (the embedded numbers stay put), and finite differences of `forward64` apply
    record = EXAMPLE | {"workclass": "Private", "education": "HS-grad", "sex": "Female", "race": "Black", "occupation": "Sales"}
    X = ENCODER.transform(record_columns([record, EXAMPLE])).astype(np.float64)
    net, groups = deep_network(seed), list(attribute_columns(ENCODER, deep_network(seed)).values())
    steps, h = 400, 1e-5
    phi = integrated_gradients(net, X, ENCODER.n_onehot, groups, steps=steps)

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
    p = forward64(net, np.concatenate(rows), ENCODER.n_onehot).reshape(len(moved), 2, steps)
    grad = (p[:, 0] - p[:, 1]) / (2 * h)  # (moved inputs, steps)
    reference = np.zeros(len(groups))
    for j, g in zip(moved, grad, strict=True):
        owner = next(a for a, cols in enumerate(groups) if j in cols)
        reference[owner] += delta[j] * g.mean()

    p_record, p_base = forward64(net, X, ENCODER.n_onehot)
    assert abs(p_record - p_base) > 0.01  # the network does tell the two apart
    assert phi.sum() == pytest.approx(p_record - p_base, abs=1e-9)
    np.testing.assert_allclose(phi, reference, atol=2e-4)
    assert all(phi[a] == 0 for a, cols in enumerate(groups) if not np.isin(cols, moved).any())

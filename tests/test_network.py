"""The one link between training's torch ensemble and the numpy `Network` that serves and explains it: the same
tensor names, and the same probabilities, for ensembles of several shapes built by torch itself."""

import numpy as np
import pytest
import torch
from safetensors.torch import save

from census_income.model import IncomeEnsemble, IncomeMLP, predict_proba
from census_income.network import Network, tensor_names
from census_income.schema import CONTINUOUS
from census_income.toy import toy_encoder

ENCODER = toy_encoder()
SHAPES = [  # members, depth, n_frequencies, d_embedding, hidden
    (1, 1, 0, 1, 8), (2, 1, 3, 2, 4), (3, 3, 8, 4, 16), (5, 4, 25, 11, 122)]


def torch_ensemble(members: int, depth: int, k: int, d: int, hidden: int, seed: int = 0) -> IncomeEnsemble:
    torch.manual_seed(seed)
    model = IncomeEnsemble([IncomeMLP(ENCODER.n_onehot, len(CONTINUOUS), k, 0.5, d, depth, hidden, 0.1)
                            for _ in range(members)], temperature=1.3).eval()
    with torch.no_grad():  # torch's initial weights give every row nearly 0.5: widen them as training would
        for name, p in model.named_parameters():
            p.mul_(3.0 if ".net." in name else 1.0)
    return model


def architecture(members: int, depth: int, k: int) -> dict:
    return {"members": members, "depth": depth, "n_frequencies": k, "n_numeric": len(CONTINUOUS)}


@pytest.mark.parametrize("shape", SHAPES)
def test_tensor_names_are_the_names_torch_saves(shape):
    members, depth, k, d, hidden = shape
    assert list(torch_ensemble(*shape).state_dict()) == tensor_names(members, depth, k > 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_network_gives_torchs_probabilities(shape):
    members, depth, k, d, hidden = shape
    model = torch_ensemble(*shape, seed=sum(shape))
    net = Network.load(save(model.state_dict()), architecture(members, depth, k))
    assert (net.members, net.n_onehot, len(net.weights)) == (members, ENCODER.n_onehot, depth + 1)
    rng = np.random.default_rng(1)
    X = np.zeros((300, ENCODER.n_features), np.float32)
    X[np.arange(300), rng.integers(0, ENCODER.n_onehot, 300)] = 1
    X[:, ENCODER.n_onehot:] = rng.normal(size=(300, len(CONTINUOUS)))
    expected = predict_proba(model, X)  # torch in eval mode: dropout off, mean logit over the temperature
    assert np.abs(net.forward(X) - expected).max() < 1e-5
    assert np.ptp(expected) > 0.01  # the rows are told apart: the comparison means something

"""The serving model never leaves a request hanging: a scoring error, or a wrong number of answers, reaches every waiter."""

import asyncio

import numpy as np
import pytest

from census_income.network import ModelFilesError
from census_income.predict import Predictor
from census_income.serving.scoring import ServingModel
from census_income.serving.settings import Settings
from census_income.validation import EXAMPLE, Record


class Faulty(Predictor):
    "A loaded model whose scoring breaks in a chosen way."

    def __init__(self, base: Predictor, fault: str):
        super().__init__(base.encoder, base.net, base.manifest)
        self.fault = fault

    def predict_rows(self, rows):
        if self.fault == "raises":
            raise FloatingPointError("overflow in the network")
        p = super().predict_rows(rows)
        return np.concatenate([p, p]) if self.fault == "too many" else np.full(len(p), np.nan)


@pytest.mark.parametrize(("fault", "error"), [("raises", FloatingPointError), ("too many", RuntimeError),
                                              ("nan", ModelFilesError)])
def test_every_waiting_request_gets_the_error(quick_model_dir, fault, error):
    model = ServingModel(Faulty(Predictor.load(quick_model_dir), fault), Settings(_env_file=None))

    async def three_at_once():
        records = [Record.model_validate(EXAMPLE | {"age": a}) for a in (20, 40, 60)]
        return await asyncio.wait_for(asyncio.gather(*[model.score_one(r) for r in records], return_exceptions=True), 5)

    answers = asyncio.run(three_at_once())
    assert len(answers) == 3 and all(isinstance(a, error) for a in answers), answers

"""The framework's ceiling for `bench_api.py`: a FastAPI app with no model that reads and validates a record
exactly as `census_income.api` does (same size check, same pydantic model from the raw bytes, same response
model) and returns a constant. `/predict` can be at most this fast; the benchmark reports it as a ratio.

Run: uvicorn benchmarks.bench_api_ceiling:app --no-access-log
"""

from fastapi import FastAPI, Request

from census_income.serving.body import BodyDeadlines, read_body
from census_income.serving.parsing import parse_body
from census_income.serving.schemas import Prediction
from census_income.serving.settings import Settings
from census_income.validation import Record

app = FastAPI()
ANSWER = Prediction(prediction="<=50K", probability=0.5, model_version="ceiling")
SETTINGS = Settings(_env_file=None)  # the defaults the app runs with (body limit, body timeout)
BODIES = BodyDeadlines(SETTINGS.body_timeout)  # the same bookkeeping per request (no watcher: nothing is slow here)


@app.post("/predict")
async def predict(request: Request) -> Prediction:
    "Validate the body like the real endpoint, skip the model."
    parse_body(Record, await read_body(request, SETTINGS.max_body_bytes, BODIES))
    return ANSWER

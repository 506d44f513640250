"""The framework's ceiling for `bench_api.py`: a FastAPI app with no model that reads and validates a record
exactly as `census_income.api` does (same size check, same pydantic model from the raw bytes, same response
model) and returns a constant: FastAPI's idiom, the issue's ceiling; the benchmark reports /predict as a ratio of it.
`/plain` does the same work served as /predict and V2 infer are (`served_plainly`: Starlette's request handler, not
FastAPI's, and the JSON written by hand), so /predict against it is the cost of the model and the app's own parts.

Run: uvicorn benchmarks.bench_api_ceiling:app --no-access-log
"""

from fastapi import FastAPI, Request, Response

from census_income.serving.body import BodyDeadlines, read_body
from census_income.serving.deps import served_plainly
from census_income.serving.parsing import parse_body
from census_income.serving.schemas import Prediction
from census_income.serving.settings import Settings
from census_income.validation import Record

app = FastAPI()
ANSWER = Prediction(prediction="<=50K", probability=0.5, model_version="ceiling")
ANSWER_JSON = ANSWER.model_dump_json().encode()
SETTINGS = Settings(_env_file=None)  # the defaults the app runs with (body limit, body timeout)
BODIES = BodyDeadlines(SETTINGS.body_timeout)  # the same bookkeeping per request (no watcher: nothing is slow here)


@app.post("/predict")
async def predict(request: Request) -> Prediction:
    "Validate the body like the real endpoint, skip the model."
    parse_body(Record, await read_body(request, SETTINGS.max_body_bytes, BODIES))
    return ANSWER


@app.post("/plain")
async def plain(request: Request) -> Response:
    "Validate the body like the real endpoint, skip the model; served as /predict is."
    parse_body(Record, await read_body(request, SETTINGS.max_body_bytes, BODIES))
    return Response(ANSWER_JSON, media_type="application/json")


served_plainly(next(r for r in app.routes if getattr(r, "path", None) == "/plain"))

"""Speed of the in-process prediction function (numpy Predictor): one record, and batches of 10,000.

Run from the repo root after the pipeline: `.venv/bin/python benchmarks/bench_predict.py [model_dir] [test_csv]`.
Targets (issue 23): one record in at most 0.10 ms; at least 200,000 records/s in batches of 10,000; one record's explanation
(`census_income.explain.explain`, integrated gradients) in at most 0.5 ms. The cost issue's target, side by side in this
process: each route's work on one record (validation, encoding, scoring, the answer; no HTTP) at most 2 times the
network's own forward pass on that record's encoded row.
"""

import json
import statistics
import sys
import time

import numpy as np
import pandas as pd
from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)
from pydantic_core import to_json

from census_income.explain import explain, explain_columns
from census_income.features import ROW_ORDER
from census_income.predict import Predictor
from census_income.schema import FEATURES
from census_income.serving.parsing import PlainRecord, plain_value
from census_income.serving.scoring import ROW_VALUES
from census_income.serving.tensors import infer_response
from census_income.serving.v2 import IN_ROW_ORDER, plain_request
from census_income.validation import validated_columns


def route_work(predictor: Predictor, one: dict) -> dict:
    "Each route's in-process work on one record, from the body's bytes to the answer's, as the handlers do it."
    body = json.dumps(one).encode()
    v2 = json.dumps({"inputs": [{"name": c, "shape": [1], "datatype": "INT64" if isinstance(one[c], int) else "BYTES",
                                 "data": [one[c]]} for c in FEATURES]}).encode()

    def predict():  # /predict: the loop's check of a body (`plain_value`), the row path, the answer's JSON as the route
        values = ROW_VALUES(plain_value(PlainRecord, body).__dict__)  # writes it (`ServingModel.score_one`'s dict)
        return to_json(predictor.answers(predictor.predict_rows([values]))[0] | {"model_version": "v"})

    def infer():  # V2 infer on one record as clients write it: the handler's work (`plain_request`, the row path as
        req, row = plain_request(v2, b"", 1000)  # `ServingModel.score_values` takes it alone), the answer's body
        answer = predictor.answers(predictor.predict_rows([IN_ROW_ORDER(row)]))[0]
        return infer_response(req, None, "v", np.array([answer["probability"]], np.float32), [answer["prediction"]])

    def explained():  # /explain: the loop's check of a body (`plain_value`), the explanation
        return explain_columns(predictor, validated_columns([plain_value(PlainRecord, body).__dict__]))

    return {"predict_records([record])": lambda: predictor.predict_records([one]), "/predict's work": predict,
            "V2 infer's work": infer, "/explain's work": explained}


def per_call(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


if __name__ == "__main__":
    print(blas_line())
    model_dir = sys.argv[1] if len(sys.argv) > 1 else "model"
    test_csv = sys.argv[2] if len(sys.argv) > 2 else "data/test.csv"
    predictor = Predictor.load(model_dir)
    records = pd.read_csv(test_csv, keep_default_na=False)[list(FEATURES)].to_dict(orient="records")
    batch = (records * (10_000 // len(records) + 1))[:10_000]
    one = records[0]
    per_call(lambda: predictor.predict_records([one]), 200)  # warm-up
    single = per_call(lambda: predictor.predict_records([one]), 3000)
    batches = per_call(lambda: predictor.predict_records(batch), 30)
    per_call(lambda: explain(predictor, one), 50)  # warm-up
    explained = [t for r in records[:500] for t in per_call(lambda r=r: explain(predictor, r), 1)]
    p50 = statistics.median(single) * 1e3
    p99 = sorted(single)[int(0.99 * len(single))] * 1e3
    rate = 10_000 / statistics.median(batches)
    print(f"model {predictor.version}: {predictor.encoder.n_features} features, {predictor.net.members} members, "
          f"layers {[w.shape for w in predictor.net.weights]}")
    print("| measure | value | target | met |\n| --- | ---: | ---: | --- |")
    print(f"| one record, median | {p50:.3f} ms | <= 0.10 ms | {'yes' if p50 <= 0.10 else 'NO'} |")
    print(f"| one record, p99 | {p99:.3f} ms | | |")
    print(f"| batches of 10,000, median rate | {rate:,.0f} records/s | >= 200,000 | {'yes' if rate >= 200_000 else 'NO'} |")
    X = predictor.encoder.encode_rows([[one[c] for c in ROW_ORDER]])
    forward = statistics.median(per_call(lambda: predictor.net.forward(X), 3000))
    print("\n| one record, median of 3,000 | µs | ÷ forward | target | |\n| --- | ---: | ---: | ---: | --- |")
    print(f"| the network's own forward on the encoded row | {forward * 1e6:.1f} | 1.00 | | |")
    for name, fn in route_work(predictor, one).items():
        per_call(fn, 200)  # warm-up
        t = statistics.median(per_call(fn, 3000))
        print(f"| {name} | {t * 1e6:.1f} | {t / forward:.2f} | ≤ 2 | {'met' if t / forward <= 2 else 'NOT met'} |")
    print()
    e50, e99 = statistics.median(explained) * 1e3, sorted(explained)[int(0.99 * len(explained))] * 1e3
    print(f"| explain one record (500 test records), median | {e50:.3f} ms | <= 0.5 ms | {'yes' if e50 <= 0.5 else 'NO'} |")
    print(f"| explain one record, p99 | {e99:.3f} ms | | |")

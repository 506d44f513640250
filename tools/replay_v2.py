"""Replay generated V2 infer requests through two checkouts of the package and compare every answer byte for byte.

    .venv/bin/python tools/replay_v2.py OLD_ROOT NEW_ROOT [--n 4000] [--model model]

Each root is put first on PYTHONPATH in its own process, which loads the model (`--model`, one folder for both) and
answers the same requests (seeded): through the app (`POST /v2/models/census-income/infer`: status, headers, body; an
id the app made is written `<made>`) and through the route's work alone (what it scores, refuses, echoes and hands
the payload log). Requests: valid records (one and many; FEATURES order or not; either spelling; shape [1] or
[1, 1]; any number datatype; with and without an id, before or after the inputs; JSON written with and without
spaces), and each kind of invalid one (wrong datatype, shape lies, missing, extra or twice-given inputs, unknown
categories, fractions such as 0.999999999999999999999 and 1e-9999999999999999999, nested rows, the binary extension,
parameters and outputs, broken JSON). Prints the counts compared and identical, and the first differences.
"""

import argparse
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER_TYPES = ["INT64", "INT32", "INT8", "UINT16", "UINT64", "FP32", "FP64", "FP16"]
ODD_VALUES = [200, -1, 39.0, 39.5, "39", True, None, [39], {"a": 1}, "Private", 10**30, "?", "", "nope", 1e400,
              "0.999999999999999999999", "1e-9999999999999999999", "-0"]  # (text that is a number is written raw)


def _records(test_csv: Path, features) -> list[dict]:
    import pandas as pd
    return pd.read_csv(test_csv, keep_default_na=False, nrows=400)[list(features)].to_dict(orient="records")


def _inputs(rng, record, features, categorical, spelling=0.2, nested=0.0, shape11=0.2, types=0.3) -> list[dict]:
    "One input per attribute for one record, written as a client might."
    out = []
    for c in features:
        name = c.replace("-", "_") if rng.random() < spelling else c
        dt = "BYTES" if c in categorical else (rng.choice(NUMBER_TYPES) if rng.random() < types else "INT64")
        data = [[record[c]]] if rng.random() < nested else [record[c]]
        out.append({"name": name, "shape": [1, 1] if rng.random() < shape11 else [1], "datatype": dt, "data": data})
    return out


def _many(rng, recs, features, categorical, n) -> list[dict]:
    rows = [rng.choice(recs) for _ in range(n)]
    return [{"name": c, "shape": [n], "datatype": "BYTES" if c in categorical else "INT64", "data": [r[c] for r in rows]}
            for c in features]


def _mutate(rng, inputs: list[dict], features) -> object:
    "Break one thing of a valid request's inputs (or keep it valid in another form)."
    inputs = [dict(i) for i in inputs]
    k, i = rng.randrange(22), rng.randrange(len(inputs))
    if k == 0:
        inputs[i]["datatype"] = rng.choice(["BYTES", "INT64", "FP128", "bytes", 5, None, ""])
    elif k == 1:
        inputs[i]["shape"] = rng.choice([[2], [0], [-1], [1, 2], [1, 1, 1], [True], [1.0], "1", [], [1, True], None])
    elif k == 2:
        del inputs[i]
    elif k == 3:
        inputs.append(dict(inputs[i]))  # given twice
    elif k == 4:
        inputs.append({**inputs[i], "name": inputs[i]["name"].replace("-", "_") if "-" in inputs[i]["name"] else "salary"})
    elif k == 5:
        inputs[i]["name"] = rng.choice(["Age", " age", "age ", "colour", "", "salary", 7])
    elif k in (6, 7, 8):
        inputs[i]["data"] = [rng.choice(ODD_VALUES)]
    elif k == 9:
        inputs[i]["data"] = rng.choice([[[inputs[i]["data"][0]]], [[inputs[i]["data"][0], 1]], [[]], [], None, "x",
                                        [[[inputs[i]["data"][0]]]], [inputs[i]["data"][0]] * 2])
    elif k == 10:
        inputs[i]["parameters"] = rng.choice([{}, None, {"shared_memory_region": "r"}, {"binary_data_size": 0}, {"x": 1}])
    elif k == 11:
        inputs[i]["extra"] = 1
    elif k == 12:
        del inputs[i][rng.choice(["name", "shape", "datatype", "data"])]
    elif k == 13:
        rng.shuffle(inputs)  # valid, another order
    elif k == 14:
        inputs[i] = dict(reversed(list(inputs[i].items())))  # valid, keys in another order
    elif k == 15:
        inputs[i]["data"] = [rng.choice(["?", None])]  # valid for workclass, occupation, native-country
    return inputs


def _body(rng, req) -> bytes:
    "A request as JSON, written one of the ways clients write it, or broken."
    if isinstance(req, bytes):
        return req
    text = rng.choice([lambda: json.dumps(req), lambda: json.dumps(req, separators=(",", ":")),
                       lambda: json.dumps(req, indent=rng.choice([None, 1])), lambda: json.dumps(req, ensure_ascii=False)])()
    for raw in ("0.999999999999999999999", "1e-9999999999999999999", "-0"):  # numbers as written, not as floats
        text = text.replace(json.dumps(raw), raw)
    return (text + rng.choice(["", "", "", "\n", " ", "\t\r\n", "x", "}"])).encode()


def _binary(rng, inputs, categorical) -> tuple[bytes, dict]:
    "The same inputs in the binary extension (sometimes with the wrong lengths)."
    blobs, tensors = [], []
    for t in inputs:
        v = t["data"][0] if isinstance(t.get("data"), list) and t["data"] else 0
        if t["name"].replace("_", "-") in categorical:
            raw = str(v).encode()
            blob = struct.pack("<I", len(raw)) + raw
        else:
            blob = struct.pack("<q", v if isinstance(v, int) and -2**63 <= v < 2**63 else 0)
        blobs.append(blob)
        tensors.append({**{k: x for k, x in t.items() if k != "data"}, "parameters": {"binary_data_size": len(blob)}})
    head = json.dumps({"inputs": tensors, "parameters": {"binary_data_output": rng.choice([True, False])}}).encode()
    extra, length = rng.choice([b"", b"", b"x"]), len(head) + rng.choice([0, 0, 0, 1, -1])
    return head + b"".join(blobs) + extra, {"inference-header-content-length": rng.choice([str(length), str(length), "x1"])}


def requests(n: int, features, categorical, recs, seed: int = 33) -> list[tuple[bytes, dict]]:
    "The requests to replay: (body, headers)."
    rng, out = random.Random(seed), []
    for i in range(n):
        rec = dict(rng.choice(recs))
        if rng.random() < 0.1:
            rec[rng.choice(["workclass", "occupation", "native-country"])] = rng.choice(["?", None])
        inputs = _inputs(rng, rec, features, categorical, nested=0.05 if i % 7 == 0 else 0.0)
        req: object = {"inputs": inputs}
        kind = i % 10
        if kind in (3, 4, 5, 6):
            req = {"inputs": _mutate(rng, inputs, features)}
        elif kind == 7:
            req = {"inputs": _many(rng, recs, features, categorical, rng.choice([2, 5, 16, 17, 40]))}
        elif kind == 8:
            req = rng.choice([{"inputs": inputs, "outputs": rng.choice([[{"name": "prediction"}], [{"name": "x"}],
                              [{"name": "probability", "parameters": {"binary_data": True}}], [{"name": "prediction"}] * 2,
                              [{"name": "prediction", "parameters": {"classification": 2}}], []])},
                              {"inputs": inputs, "parameters": rng.choice([{}, {"binary_data_output": True},
                                                                           {"binary_data_output": "yes"}])},
                              {"inputs": inputs, "extra": [1, 2]}, {"inputs": []}, {"inputs": inputs * 2}, [inputs], "x",
                              b"", b"not json", b"\xef\xbb\xbf" + json.dumps({"inputs": inputs}).encode(),
                              b'{"inputs": [' + b"[" * 300 + b"]" * 300 + b"]}", b'{"inputs": NaN}', b"{\"id\": \"a\xff\"}",
                              ("{\"id\": \"x\", \"id\": \"y\", \"inputs\": " + json.dumps(inputs) + "}").encode(),
                              ("{\"inputs\": [], \"inputs\": " + json.dumps(inputs) + "}").encode(),
                              ("{\"id\": \"a\", \"inputs\": " + json.dumps(inputs) + ", \"id\": \"b\"}").encode()])
        if kind == 9:
            body, headers = _binary(rng, inputs, categorical)
        else:
            if isinstance(req, dict) and rng.random() < 0.5:
                rid = rng.choice(["req-1", "", "x" * 256, "x" * 257, "é", 'a"b', "v1.5", "1e-5", None, 5, "a\\b", "\x01"])
                req = {"id": rid, **req} if rng.random() < 0.6 else {**req, "id": rid}
            body, headers = _body(rng, req), {}
        if rng.random() < 0.5:
            headers["x-request-id"] = rng.choice(["client-7", "bad id!"])
        out.append((body, headers))
    return out


def emit(n: int, model: str) -> None:
    "This process's answers to the requests, pickled to stdout."
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        from fastapi.testclient import TestClient
    from types import SimpleNamespace

    from census_income.api import app
    from census_income.predict import Predictor
    from census_income.schema import CATEGORICAL, FEATURES
    from census_income.serving import v2
    from census_income.serving.payload import _rows
    from census_income.serving.settings import Settings
    from census_income.serving.tensors import V2Error, infer_response, split_body

    reqs = requests(n, FEATURES, CATEGORICAL, _records(ROOT / "data" / "test.csv", FEATURES))
    predictor = Predictor.load(model)
    work = getattr(v2, "score_request", None)
    work = work or (lambda pred, *a: v2._scored(SimpleNamespace(predictor=pred), *a))  # the code before `score_request`
    app.state.settings = Settings(_env_file=None, model_dir=model)
    out = []
    with TestClient(app) as client:
        for body, headers in reqs:
            r = client.post("/v2/models/census-income/infer", content=body, headers=headers)
            made = r.headers.get("x-request-id") if r.headers.get("x-request-id") != headers.get("x-request-id") else None
            content = r.content.replace(made.encode(), b"<made>") if made else r.content
            http = (r.status_code, sorted((k, v if v != made else "<made>") for k, v in r.headers.items()), content)
            try:
                head, binary = split_body(body, headers.get("inference-header-content-length"))
                parsed = []
                req, records, p, labels = work(predictor, head, binary, 1000, "inference-header-content-length" in headers, parsed)
                answer = ("ok", infer_response(req, "rid", "v", p, labels), _rows(records), [q.id for q in parsed])
            except V2Error as err:
                answer = ("refused", err.status, err.message, err.headers)
            plain = getattr(v2, "plain_request", None)  # (the new code's one-record path: how many it takes)
            taken = plain is not None and plain(head, binary, 1000) is not None if answer[0] == "ok" else False
            out.append((http, answer, taken))
    pickle.dump(out, sys.stdout.buffer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old"), ap.add_argument("new")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--model", default=str(ROOT / "model"))
    ap.add_argument("--emit", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.emit:
        return emit(args.n, args.model)
    runs = []
    for root in (args.old, args.new):
        env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())}
        with tempfile.TemporaryDirectory() as scratch:  # (the app writes nothing by default; if it did, not here)
            proc = subprocess.run([sys.executable, __file__, "--emit", root, root, "--n", str(args.n), "--model", args.model],
                                  env=env, capture_output=True, cwd=scratch)
        if proc.returncode:
            sys.exit(f"{root}: {proc.stderr.decode()[-2000:]}")
        runs.append(pickle.loads(proc.stdout))
    old, new = runs
    same = [a[:2] == b[:2] for a, b in zip(old, new, strict=True)]
    statuses = sorted({a[0][0] for a in old})
    print(f"{len(same)} requests compared (HTTP statuses {statuses}; {sum(a[0][0] == 200 for a in old)} answered 200): "
          f"{sum(same)} identical through the app and the route's work, {len(same) - sum(same)} differ; "
          f"{sum(b[2] for b in new)} taken by the new code's one-record path (`plain_request`)")
    for k in [k for k, ok in enumerate(same) if not ok][:5]:
        print(f"request {k}:\n  old {old[k][:2]!r:.600}\n  new {new[k][:2]!r:.600}")
    sys.exit(0 if all(same) else 1)


if __name__ == "__main__":
    main()

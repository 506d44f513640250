"""Call the census-income API: GET / and one POST /predict per class; print each status and body.

    python api_requests.py                        # the local server (make serve)
    python api_requests.py https://<app>.herokuapp.com
"""

import argparse
import json
import sys

import httpx

RECORDS = {
    "<=50K": {  # a row of the census file labelled <=50K
        "age": 23, "workclass": "Private", "fnlgt": 388811, "education": "HS-grad", "education-num": 9,
        "marital-status": "Never-married", "occupation": "Adm-clerical", "relationship": "Own-child", "race": "White",
        "sex": "Female", "capital-gain": 0, "capital-loss": 0, "hours-per-week": 40, "native-country": "United-States",
    },
    ">50K": {  # a row of the census file labelled >50K
        "age": 52, "workclass": "Self-emp-inc", "fnlgt": 287927, "education": "HS-grad", "education-num": 9,
        "marital-status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife",
        "race": "White", "sex": "Female", "capital-gain": 15024, "capital-loss": 0, "hours-per-week": 40,
        "native-country": "United-States",
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:8000", help="where the API runs")
    args = parser.parse_args()
    try:
        return call_api(args.base_url)
    except httpx.ConnectError as e:  # nothing listening (connection refused), or the host cannot be reached
        print(f"No API server at {args.base_url} ({e}): start the local one with `make serve`, "
              "or pass the URL of a running one.", file=sys.stderr)
        return 2


def call_api(base_url: str) -> int:
    "GET / and POST /predict once per record; 1 if any answer is not 200."
    failed = 0
    with httpx.Client(base_url=base_url, timeout=30) as client:
        r = client.get("/")
        print(f"GET / -> {r.status_code}\n{json.dumps(r.json(), indent=2)}")
        failed += r.status_code != 200
        for expected, record in RECORDS.items():
            r = client.post("/predict", json=record)
            print(f"\nPOST /predict (a record expected {expected}) -> {r.status_code}\n{json.dumps(r.json(), indent=2)}")
            failed += r.status_code != 200
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

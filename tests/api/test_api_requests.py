"""The example client `api_requests.py` against the live server."""

import json
import re

from ..conftest import ROOT, VENV_BIN, run


def test_api_requests_prints_status_and_body_of_each_call(server):
    out = run([str(VENV_BIN / "python"), str(ROOT / "api_requests.py"), server], ROOT).stdout
    assert re.findall(r"-> (\d+)", out) == ["200", "200", "200"]
    bodies = [json.loads(b) for b in re.findall(r"^\{.*?^\}", out, re.M | re.S)]
    assert "docs" in bodies[0]
    assert [b["prediction"] for b in bodies[1:]] == ["<=50K", ">50K"]

"""The example client `api_requests.py` against the live server, and without one."""

import json
import re
import subprocess

from testkit import ROOT, VENV_BIN, free_port, run, tool_env


def test_api_requests_prints_status_and_body_of_each_call(server):
    out = run([str(VENV_BIN / "python"), str(ROOT / "api_requests.py"), server], ROOT).stdout
    assert re.findall(r"-> (\d+)", out) == ["200", "200", "200"]
    bodies = [json.loads(b) for b in re.findall(r"^\{.*?^\}", out, re.M | re.S)]
    assert "docs" in bodies[0]
    assert [b["prediction"] for b in bodies[1:]] == ["<=50K", ">50K"]


def test_api_requests_without_a_server_says_so_in_one_line():
    url = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on: the connection is refused
    proc = subprocess.run([str(VENV_BIN / "python"), str(ROOT / "api_requests.py"), url], cwd=ROOT, env=tool_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # no traceback
    assert url in lines[0] and "make serve" in lines[0] and "refused" in lines[0], lines[0]

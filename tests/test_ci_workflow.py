"""The GitHub Actions workflow is valid (check-jsonschema) and has no security findings (zizmor), offline."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testkit import ROOT

pytestmark = pytest.mark.integration  # external tools, several seconds: not in `make test-fast`
BIN = Path(sys.executable).parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"

# A valid workflow zizmor must reject: an unpinned action with persisted credentials, a template injection
# and no permissions block. Without its `on:` it breaks the schema too. Shows the checks below can fail.
INSECURE = textwrap.dedent("""
    name: insecure
    on: pull_request
    jobs:
      t:
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - run: echo "${{ github.event.pull_request.title }}"
""")


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed in {BIN}: it is a dev requirement (pip install {name})"
    return str(path)


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def zizmor(path: Path, *args: str) -> subprocess.CompletedProcess:
    # --no-config / --no-ignores: findings count only when fixed, never when suppressed.
    return subprocess.run([tool("zizmor"), "--offline", "--no-config", "--no-ignores", *args, str(path)],
                          capture_output=True, text=True, timeout=120)


def zizmor_findings(path: Path, persona: str) -> tuple[int, list[dict]]:
    proc = zizmor(path, "--format", "json", "--persona", persona)
    try:
        findings = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"zizmor printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, findings


def summary(findings: list[dict]) -> str:
    return "\n".join(f"{f['ident']}: {f['desc']} (line {f['locations'][0]['concrete']['location']['start_point']['row'] + 1})"
                     for f in findings)


def test_workflow_matches_the_github_workflow_schema():
    proc = check_jsonschema(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_reports_no_findings():
    "The plain command, as a developer would run it: exit 0 and nothing found (suppressed findings count too)."
    proc = zizmor(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("persona", ["regular", "pedantic", "auditor"])
def test_zizmor_finds_nothing_for_any_persona(persona):
    code, findings = zizmor_findings(WORKFLOW, persona)
    assert findings == [], summary(findings)
    assert code == 0


def test_check_jsonschema_rejects_a_workflow_without_triggers(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(INSECURE.replace("on: pull_request\n", ""))
    proc = check_jsonschema(bad)
    assert proc.returncode != 0
    assert "'on' is a required property" in proc.stdout, proc.stdout + proc.stderr


def test_zizmor_rejects_an_insecure_workflow(tmp_path):
    bad = tmp_path / "insecure.yml"
    bad.write_text(INSECURE)
    assert check_jsonschema(bad).returncode == 0
    code, findings = zizmor_findings(bad, "regular")
    assert code != 0
    assert {"unpinned-uses", "artipacked", "template-injection", "excessive-permissions"} <= {f["ident"] for f in findings}

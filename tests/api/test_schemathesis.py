"""Property-based requests generated from the app's own OpenAPI schema: no 5xx, no response off its schema."""

from testkit import VENV_BIN, run


def test_schemathesis_finds_nothing(server, tmp_path):
    # every default check (server errors, status codes, content types, response schemas, valid data accepted,
    # invalid data rejected) over the examples, coverage and fuzzing phases; 40 cases per operation keeps it to seconds
    proc = run([str(VENV_BIN / "schemathesis"), "run", f"{server}/openapi.json", "--max-examples", "40",
                "--seed", "5", "--no-color", "--exclude-path-regex", "^/v2"], tmp_path, timeout=300)
    assert "No issues found" in proc.stdout, proc.stdout[-3000:]
    # POST /predict, /predict/batch, /explain; GET /metrics, /, /health, /ready (their HEAD routes are left out of the schema)
    assert "Tested: 7" in proc.stdout, proc.stdout[-3000:]


def test_schemathesis_finds_nothing_in_the_inference_protocol(server, tmp_path):
    # the Open Inference Protocol's 9 routes, every default check but one: JSON Schema cannot say that a request's 14
    # inputs must each be one census attribute with one element per record, so a request valid by the schema may still
    # be refused (400, in words); every other check holds, "invalid data rejected" and "no 5xx" included. Its warning
    # that the versioned routes keep answering 404 is off: a version is a content hash no schema can list beforehand
    proc = run([str(VENV_BIN / "schemathesis"), "run", f"{server}/openapi.json", "--max-examples", "40",
                "--seed", "5", "--no-color", "--include-path-regex", "^/v2", "--exclude-checks", "positive_data_acceptance",
                "--warnings", "off"], tmp_path, timeout=300)
    assert "No issues found" in proc.stdout, proc.stdout[-3000:]
    assert "Tested: 9" in proc.stdout, proc.stdout[-3000:]

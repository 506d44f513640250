"""Property-based requests generated from the app's own OpenAPI schema: no 5xx, no response off its schema."""

from ..conftest import VENV_BIN, run


def test_schemathesis_finds_nothing(server, tmp_path):
    # every default check (server errors, status codes, content types, response schemas, valid data accepted,
    # invalid data rejected) over the examples, coverage and fuzzing phases; 40 cases per operation keeps it to seconds
    proc = run([str(VENV_BIN / "schemathesis"), "run", f"{server}/openapi.json", "--max-examples", "40",
                "--seed", "5", "--no-color"], tmp_path, timeout=300)
    assert "No issues found" in proc.stdout, proc.stdout[-3000:]
    # POST /predict, /predict/batch, /explain; GET /metrics, /, /health, /ready (their HEAD routes are left out of the schema)
    assert "Tested: 7" in proc.stdout, proc.stdout[-3000:]

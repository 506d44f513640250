"""nbval runs every notebook with its fast defaults in a real kernel, next to the pipeline's outputs."""

from ..conftest import run


def test_notebooks_run_under_nbval(pipeline_repo):
    nbs = sorted(p.name for p in (pipeline_repo / "nbs").glob("[0-9]*.ipynb"))
    before = {p: p.stat().st_mtime_ns for p in (pipeline_repo / "data").iterdir()}
    before |= {p: p.stat().st_mtime_ns for p in (pipeline_repo / "model").iterdir()}
    proc = run(["pytest", "-p", "no:cacheprovider", "--nbval-lax", "-q", "-o", "addopts=", "--rootdir", ".", *nbs],
               pipeline_repo / "nbs", timeout=1200)
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before, "a notebook's default parameters wrote into data/ or model/"

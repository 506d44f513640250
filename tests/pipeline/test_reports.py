"""`dvc repro` renders every report to HTML, links them from reports/index.html, and keeps the slices and card fresh."""

import json
import re

from census_income.config import load_params
from testkit import run, set_params

STDERR = 'data-mime-type="application/vnd.jupyter.stderr"'


def pages(repo) -> list[str]:
    return load_params(repo / "params.yaml").report.pages


def test_repro_renders_every_notebook_and_the_index_links_them(pipeline_repo):
    reports = pipeline_repo / "reports"
    for rel in ["index.html", "model_card.md", "slice_output.txt"]:
        assert (reports / rel).is_file(), rel
    for name in pages(pipeline_repo):
        html = (reports / f"{name}.html").read_text()
        assert len(html) > 10_000 and "<h1" in html, name
        assert "hl-ipython3" not in html, f"{name}.html shows code cells"
    for name in pages(pipeline_repo):
        html = (reports / f"{name}.html").read_text()
        assert STDERR not in html, f"{name}.html shows warnings, log lines or errors"
        assert not re.findall(r"""<(?:script|link|img)[^>]+(?:src|href)=["']?https?://""", html), f"{name}.html loads from the network"
        assert "Run the stage" not in html and "By default a quick run" not in html, f"{name}.html shows the chapter's quick-run notes"
    index = (reports / "index.html").read_text()
    links = re.findall(r'<a href="([^"]+)"', index)
    assert {f"{p}.html" for p in pages(pipeline_repo)} | {"model_card.md", "slice_output.txt"} <= set(links)
    for href in links:
        assert (reports / href).is_file(), f"index.html links a missing {href}"
    version = json.loads((pipeline_repo / "model/manifest.json").read_text())["version"]
    assert f"<code>{version}</code>" in index and 'id="metrics"' in index and "<script" not in index


def test_slice_report_has_the_table_and_the_plots(pipeline_repo):
    html = (pipeline_repo / "reports/05_slices.html").read_text()
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', html)) >= 10  # 8 features, confusion, curves
    report = json.loads((pipeline_repo / "metrics/slices.json").read_text())
    for feature, values in report["slices"].items():
        for value in values:
            assert f">{value}<" in html.replace("&amp;", "&"), f"{feature}={value} missing from the slice table"
    metrics = json.loads(run(["dvc", "metrics", "show", "--json", "metrics/disparity.json"], pipeline_repo).stdout)
    shown = json.dumps(metrics)  # not a headline metric of the pipeline, but dvc shows any metrics file named
    assert "disparity.json" in shown and "selection_rate" in shown


def test_changed_min_support_reruns_slices_and_report_only(own_pipeline_repo):
    repo = own_pipeline_repo
    set_params(repo, slices={"min_support": 200})
    out = run(["dvc", "repro", "report"], repo).stdout
    assert "Running stage 'slices'" in out and "Running stage 'report'" in out
    assert "Running stage 'train'" not in out and "Running stage 'tune'" not in out
    assert "fewer than 200 rows" in (repo / "reports/model_card.md").read_text()
    assert json.loads((repo / "metrics/slices.json").read_text())["settings"]["min_support"] == 200

"""What `dvc metrics show` and `dvc plots show` give a reader, in a scratch DVC project with the repository's dvc.yaml,
params.yaml and plot template: the headline numbers alone, in lines that fit a terminal; the confusion matrix with the
actual class on the rows; the training curve drawn by Vega itself (in headless Chromium) as one line per network."""

import html
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from census_income.config import TRAIN_RESULTS
from census_income.metrics import readable
from testkit import ROOT, run

WIDTH = 120  # a terminal's columns
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_ANALYTICS = {"DVC_NO_ANALYTICS": "1"}


def dvc_project(dest: Path) -> Path:
    "A DVC project (no git) with the repository's dvc.yaml, params.yaml and .dvc/plots templates, and no outputs."
    dest.mkdir(parents=True)
    run(["dvc", "init", "--no-scm", "-q"], dest, **NO_ANALYTICS)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / ".dvc" / "plots", dest / ".dvc" / "plots")
    return dest


def repo_paths(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())["paths"]


def plot_id(repo: Path, template: str) -> str:
    "The id (title) of dvc.yaml's one top-level plot drawn with this template."
    ids = [name for plot in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"] for name, spec in plot.items()
           if spec.get("template") == template]
    assert len(ids) == 1, ids
    return ids[0]


def vega_spec(repo: Path, template: str) -> dict:
    "The Vega-Lite spec DVC fills for that plot (`dvc plots show --json`; the other plots' files may be missing)."
    name = plot_id(repo, template)
    shown = json.loads(run(["dvc", "plots", "show", "--json"], repo, **NO_ANALYTICS).stdout)
    assert not [e for e in shown.get("errors", []) if e["name"] == name], shown["errors"]
    return shown["data"][name][0]["content"]


def test_dvc_metrics_show_lists_the_headline_numbers_within_a_terminal(quick_run, tmp_path):
    "Every results file of a quick run in place, `dvc metrics show` lists the headline file alone, in 120 columns."
    params, results = quick_run
    repo = dvc_project(tmp_path / "repo")
    paths = repo_paths(repo)
    for key in (*TRAIN_RESULTS.values(), "slices_json", "disparity_json", "fairness_json", "headline_json"):
        (repo / paths[key]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(getattr(params.paths, key), repo / paths[key])
    assert (repo / paths["test_json"]).exists()  # the other results are there, and not listed

    shown = run(["dvc", "metrics", "show"], repo, **NO_ANALYTICS).stdout
    lines = shown.rstrip("\n").splitlines()
    assert max(map(len, lines)) <= WIDTH, f"lines of {[len(ln) for ln in lines]} characters:\n{shown}"
    headline = json.loads((repo / paths["headline_json"]).read_text())
    assert len(lines) == 2 and lines[1].split()[0] == paths["headline_json"], shown
    assert set(lines[0].split()[1:]) == set(headline), shown
    assert 1 <= len(headline) <= 8 and readable(headline) == headline  # flat numbers at DIGITS significant digits
    # copies of what the train and slice stages wrote for the served model, not numbers of their own
    served = results["train"]["comparison"]["served"]
    assert headline["roc_auc"] == results["train"]["test"]["roc_auc"] and headline["f1"] == results["train"]["test"]["f1"]
    assert headline["mult_adds"] == results["train"]["comparison"]["candidates"][served]["multiply_adds"]


def test_the_confusion_plot_puts_actual_on_the_rows_as_the_slice_report_does(tmp_path):
    repo = dvc_project(tmp_path / "repo")
    out = repo / repo_paths(repo)["confusion_csv"]
    out.parent.mkdir(parents=True)
    out.write_text("actual,predicted\n<=50K,<=50K\n<=50K,>50K\n<=50K,>50K\n>50K,>50K\n")
    spec = vega_spec(repo, "confusion")
    enc = spec["spec"]["encoding"]  # Vega-Lite's y is the heat map's rows, x its columns
    assert (enc["y"]["field"], enc["x"]["field"]) == ("actual", "predicted"), enc
    assert (enc["y"]["title"], enc["x"]["title"]) == ("actual", "predicted"), enc


# Renders the spec with the Vega the plots page loads (tools/dvc-plots/) and reports, from Vega's scene graph, each
# line drawn (its network and colour) and the y scale's domain.
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script src="{tools}/vega.min.js"></script><script src="{tools}/vega-lite.min.js"></script>
<script src="{tools}/vega-embed.min.js"></script></head><body><div id="vis"></div><pre id="out">pending</pre><script>
const put = v => document.getElementById('out').textContent = JSON.stringify(v);
vegaEmbed('#vis', {spec}, {{renderer: 'svg', actions: false}}).then(r => {{
  const lines = [];
  const walk = m => {{
    if (m.marktype === 'line' && m.items.length)
      lines.push({{network: m.items[0].datum.network, stroke: m.items[0].stroke, width: m.items[0].strokeWidth}});
    (m.items || []).forEach(i => (i.items || []).forEach(walk));
  }};
  walk(r.view.scenegraph().root);
  put({{lines, y: r.view.scale('y').domain()}});
}}).catch(e => put({{error: String(e)}}));
</script></body></html>"""


def drawn(spec: dict, tmp_path: Path) -> dict:
    "What Vega drew for the spec in headless Chromium: its lines and the y domain."
    if not CHROMIUM:
        pytest.fail("chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
    page = tmp_path / "plot.html"
    page.write_text(PAGE.format(tools=(ROOT / "tools" / "dvc-plots").as_uri(), spec=json.dumps(spec)))
    profile = tmp_path / "profile"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    start, end = dom.find('<pre id="out">'), dom.find("</pre>")
    assert start >= 0, f"no page came back ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(dom[start + len('<pre id="out">'):end]))


def test_the_training_curve_draws_each_network_in_its_own_colour(tmp_path):
    repo = dvc_project(tmp_path / "repo")
    curve = repo / repo_paths(repo)["training_curve_csv"]
    curve.parent.mkdir(parents=True)
    rows = ["network,epoch,train_loss,dev_loss,dev_auc"]
    for k in range(3):  # three members, one dropping further per epoch than the last, then the student
        rows += [f"member {k},{e},0.4,{0.36 - 0.002 * (k + 1) * e:.4f},0.9" for e in range(12)]
    rows += [f"student,{e},0.4,{0.3 - 0.001 * e:.4f},0.9" for e in range(15)]
    curve.write_text("\n".join(rows) + "\n")

    seen = drawn(vega_spec(repo, "training_curve"), tmp_path)
    assert "error" not in seen, seen
    lines = {line["network"]: line for line in seen["lines"]}
    assert sorted(lines) == ["member 0", "member 1", "member 2", "student"] and len(seen["lines"]) == 4, seen
    members = [lines[f"member {k}"] for k in range(3)]
    assert len({m["stroke"] for m in members}) == 3, f"members share a colour: {members}"
    assert lines["student"]["stroke"] not in {m["stroke"] for m in members}, seen
    assert lines["student"]["width"] > max(m["width"] for m in members), seen
    low, high = seen["y"]
    assert 0.2 < low <= 0.3 - 0.001 * 14 and high >= 0.36, f"the y axis spans {seen['y']}, the data 0.286 to 0.36"

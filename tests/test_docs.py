"""`make docs`: chapters with their code, prose and outputs, an index made from the README, navigation, no network."""

import re
import subprocess
import sys

import pytest

from testkit import ROOT, tool_env

pytestmark = pytest.mark.integration  # real kernels: not in `make test-fast`

LOADS_FROM_NETWORK = re.compile(r"""<(?:script|link|img)[^>]+(?:src|href)=["']?https?://""")


def test_two_chapters_and_the_index(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools/build_docs.py"), "--out", str(tmp_path), "--only", "00_schema", "02a_metrics"],
                          cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (tmp_path / "index.html").read_text()
    chapters = re.findall(r'<td><a href="(\w+)\.html">', index)
    assert chapters == sorted(p.stem for p in (ROOT / "nbs").glob("[0-9]*.ipynb")), "the index lists every notebook, in order"
    assert "census-income" in index and "make pipeline" in index, "the README is on the index page"
    assert index.index("The first hour") < index.index('id="chapters"'), "the README first, then the chapters"
    assert "`" not in re.sub(r"<pre>.*?</pre>", "", index, flags=re.S), "Markdown written as text (raw backticks)"
    guide = (tmp_path / "guide.html").read_text()
    anchors = set(re.findall(r'id="([^"]+)"', index)) | set(re.findall(r'id="([^"]+)"', guide))
    links = re.findall(r'href="(?:index\.html|guide\.html)?#([^"]+)"', index + guide)
    assert links and not [a for a in links if a not in anchors], "every link to a section of the README or the guide lands"
    assert not re.findall(r'href="[^"#]*\.md', index + guide), "a link to a Markdown file, not to its page"
    page = (tmp_path / "02a_metrics.html").read_text()
    assert "def best_threshold(" in re.sub(r"<[^>]+>", "", page), "a chapter shows its code"
    assert "The decision rule" in page, "... and its prose"
    assert '<a href="02_preprocess.html">' in page and '<a href="02b_model.html">' in page, "previous and next chapter"
    for name in ("index", "guide", "00_schema", "02a_metrics"):
        assert not LOADS_FROM_NETWORK.findall((tmp_path / f"{name}.html").read_text()), f"{name}.html loads from the network"

"""Every page a reader opens, in a real headless Chromium with the network cut off: the rendered reports, the index,
the page `dvc plots show` writes (`make plots`), a batch job's report page and the API's /docs. A page fails on any failed request, HTTP error,
console error or uncaught exception, or image that did not load. A full-page screenshot of each is kept in test-artifacts/screenshots/ (git-ignored)."""

import base64
import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from websockets.sync.client import connect

from census_income.batch_outputs import done_path, drift_path, page_path, read_done
from census_income.config import load_params
from testkit import ROOT, VENV_BIN, run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "test-artifacts" / "screenshots"
NO_NETWORK = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"]  # only this machine answers


class Browser:
    "Headless Chromium driven over the DevTools protocol (one page at a time)."

    def __init__(self):
        self.profile = tempfile.mkdtemp()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", *NO_NETWORK, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if m := re.search(r"DevTools listening on (ws://\S+)", line):
                break
        else:
            raise AssertionError("chromium did not start")
        self.connection = contextlib.ExitStack()  # websockets wants its connection entered as a context, closed on exit
        self.ws = self.connection.enter_context(connect(m.group(1), max_size=None))
        self.next_id = 0

    def send(self, method: str, session: str | None = None, **params) -> dict:
        "Send a command and return its result; the events that arrive meanwhile are kept in `self.events`."
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        self.ws.send(json.dumps(msg))
        while (reply := json.loads(self.ws.recv(timeout=60))).get("id") != self.next_id:
            self.events.append(reply)
        assert "error" not in reply, (method, reply["error"])
        return reply.get("result", {})

    def drain(self, seconds: float) -> None:
        "Collect events for a while."
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return

    def visit(self, url: str, shot: Path, probe: str = "0") -> dict:
        "Open a page, wait for it to load and settle; its requests, problems and a screenshot."
        self.events = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        s = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable", s)
        self.send("Page.navigate", s, url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events) and time.monotonic() < deadline:
            self.drain(0.2)
        self.drain(1.5)  # late requests (Swagger UI fetches the OpenAPI document after load)
        broken = self.send("Runtime.evaluate", s, returnByValue=True, expression=(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80))"))
        probed = self.send("Runtime.evaluate", s, returnByValue=True, expression=probe)["result"].get("value")
        size = self.send("Page.getLayoutMetrics", s)["cssContentSize"]
        self.send("Emulation.setDeviceMetricsOverride", s, width=1200, height=min(int(size["height"]) + 1, 12000),
                  deviceScaleFactor=1, mobile=False)
        shot.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", s, format="png")["data"]))
        self.send("Target.closeTarget", targetId=target)
        ev = [e for e in self.events if e.get("sessionId") == s and not self.favicon(e)]
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in ev if e["method"] == "Network.requestWillBeSent"}
        return {
            "requests": sum(e["method"] == "Network.requestWillBeSent" for e in ev),
            "failed": [f'{e["params"].get("errorText")}: {urls.get(e["params"]["requestId"], "?")[:100]}'
                       for e in ev if e["method"] == "Network.loadingFailed"],
            "http_errors": [(e["params"]["response"]["status"], e["params"]["response"]["url"][:80]) for e in ev
                            if e["method"] == "Network.responseReceived" and e["params"]["response"]["status"] >= 400],
            "console_errors": [e["params"]["entry"]["text"][:200] for e in ev
                               if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
                              + [str(e["params"]["args"])[:200] for e in ev
                                 if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error"],
            "exceptions": [e["params"]["exceptionDetails"].get("text") for e in ev if e["method"] == "Runtime.exceptionThrown"],
            "broken_images": broken["result"].get("value", []),
            "height": int(size["height"]),
            "probe": probed,
        }

    @staticmethod
    def favicon(event: dict) -> bool:
        "The browser's own request for /favicon.ico, which no page asks for."
        p = event.get("params", {})
        url = p.get("response", {}).get("url") or p.get("entry", {}).get("url") or p.get("request", {}).get("url") or ""
        return url.endswith("/favicon.ico")

    def close(self) -> None:
        self.connection.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.fail("chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
    b = Browser()
    yield b
    b.close()


def serve(folder: Path):
    "A static file server on 127.0.0.1 for folder, in a thread: its URL and the server (shut it down when done)."
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}", httpd


@pytest.fixture(scope="module")
def reports_url(artifacts):
    url, httpd = serve(artifacts / "reports")
    yield url
    httpd.shutdown()


RENDERED_IMAGES = "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"


def check(result: dict, page: str) -> None:
    problems = {k: v for k, v in result.items() if k not in ("requests", "height", "probe") and v}
    assert not problems, f"{page}: {problems}"
    assert result["requests"] >= 1 and result["height"] > 300, f"{page} is empty: {result}"


def test_the_reports_and_the_index_work_offline(browser, reports_url, artifacts):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = ["index", *load_params(artifacts / "params.yaml").report.pages]
    seen = {}
    for page in pages:
        seen[page] = browser.visit(f"{reports_url}/{page}.html", SHOTS / f"{page}.png", RENDERED_IMAGES)
        check(seen[page], page)
    (SHOTS / "reports.json").write_text(json.dumps(seen, indent=1))
    # the plots are inline PNGs that the browser really decodes: 8 features, confusion matrix, curves
    assert seen["05_slices"]["probe"] >= 10, seen["05_slices"]


def test_the_api_docs_work_offline(browser, server):
    "Swagger UI loads from the app and renders every operation of the OpenAPI document (not an error panel)."
    SHOTS.mkdir(parents=True, exist_ok=True)
    operations = len(httpx.get(f"{server}/openapi.json").json()["paths"])
    swagger = browser.visit(f"{server}/docs", SHOTS / "api-docs.png", "document.querySelectorAll('.opblock').length")
    check(swagger, "/docs")
    assert swagger["requests"] >= 4, "the page, Swagger UI's script and style, and the OpenAPI document"
    assert swagger["probe"] >= operations, f"Swagger UI shows {swagger['probe']} operations of {operations}"
    (SHOTS / "api-docs.json").write_text(json.dumps({"/docs": swagger}, indent=1))


# Per Vega view, the pixels of its canvas drawn in colour (the data: DVC's purple lines and points, the confusion
# matrix's colour scale), not in the greys and black of axes, grid and titles.
DRAWN_IN_COLOUR = """Array.from(document.querySelectorAll('.vega-embed')).map(e => {
  const c = e.querySelector('canvas');
  if (!c || !c.width) return -1;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (d[i + 3] > 128 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
  return n;
})"""


def test_the_dvc_plots_page_works_offline(browser, artifacts):
    "`dvc plots show` (the command of `make plots`) writes a page that loads Vega from tools/dvc-plots/ and draws"
    " every plot of dvc.yaml with the network cut off."
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="dvc_plots-test-", dir=artifacts))  # one folder below the root, as dvc_plots/
    try:
        run(["dvc", "plots", "show", "-o", out.name], artifacts)
        page = (out / "index.html").read_text()
        assert "cdn.jsdelivr" not in page and '<script src="../tools/dvc-plots/vega.min.js">' in page, page[:1500]
        url, httpd = serve(artifacts)
        try:
            seen = browser.visit(f"{url}/{out.name}/index.html", SHOTS / "dvc-plots.png", DRAWN_IN_COLOUR)
        finally:
            httpd.shutdown()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    (SHOTS / "dvc-plots.json").write_text(json.dumps({"dvc_plots": seen}, indent=1))
    check(seen, "dvc_plots/index.html")
    assert seen["requests"] == 4, f"the page and the three scripts, nothing else: {seen}"
    plots = yaml.safe_load((artifacts / "dvc.yaml").read_text())["plots"]
    assert len(seen["probe"]) == len(plots), f"{len(seen['probe'])} Vega views for the {len(plots)} plots of dvc.yaml"
    assert min(seen["probe"]) > 100, f"a plot drew no data (coloured pixels per view): {seen['probe']}"


# The summary rows of a batch report page, the number of elements the input could have smuggled in, and the flagged
# attributes of its drift table.
BATCH_PAGE = """({summary: Array.from(document.querySelectorAll('#summary tr')).map(r => [r.cells[0].innerText, r.cells[1].innerText]),
  smuggled: document.querySelectorAll('script, img, b').length,
  flagged: Array.from(document.querySelectorAll('#drift tbody tr')).filter(r => r.cells[1].innerText === 'FLAG')
    .map(r => r.querySelector('th').innerText)})"""


def test_the_batch_report_page_works_offline(browser, artifacts, tmp_path):
    "`census-batch` writes a page a reader opens: the counts and the drift flags at the top, as the job's own records"
    " hold them, and an input whose very name is markup shown as text."
    SHOTS.mkdir(parents=True, exist_ok=True)
    from census_income.drift import ALARM_STATUS, shifted

    rows = shifted(pd.read_csv(artifacts / "data" / "test.csv"), years=3)  # the drift the chapters show: two attributes
    source = tmp_path / "<b>new people<img src=x onerror=alert(1)>.csv"
    rows.to_csv(source, index=False)
    with open(source, "a", encoding="utf-8") as f:
        f.write("1,2,3\n")
    out = tmp_path / "out" / "scored.csv"
    run([str(VENV_BIN / "census-batch"), str(source), "--output", str(out), "--model-dir", str(artifacts / "model")], ROOT,
        status=ALARM_STATUS)  # done, with the drift alarm its shifted rows raise: every output written
    done, drift = read_done(done_path(out)), json.loads(drift_path(out).read_text())
    assert str(page_path(out).resolve()) in done["outputs"]
    url, httpd = serve(out.parent)
    try:
        seen = browser.visit(f"{url}/{page_path(out).name}", SHOTS / "batch-report.png", BATCH_PAGE)
    finally:
        httpd.shutdown()
    check(seen, "the batch report page")
    summary = dict(seen["probe"]["summary"])
    assert summary["rows read"] == f"{done['rows_read']:,}" and summary["rows rejected"].startswith(f"{done['rows_rejected']:,} (")
    assert summary["drift"] == f"flagged: {', '.join(drift['flagged'])}" and seen["probe"]["flagged"] == drift["flagged"] != []
    assert seen["probe"]["smuggled"] == 0 and seen["requests"] == 1, seen  # the page alone: no script, no image, no markup

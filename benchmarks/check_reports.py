"""Open the rendered reports in a real headless Chromium and check what a reader would see.

Serves reports/ over HTTP on 127.0.0.1, loads every page the index links (and the index),
reads the DOM after load (`--dump-dom`) and checks: the index has its links and key-metric
tables, every linked HTML page loads with content, the slice report has the slice table and
its plots as embedded PNG images. Takes screenshots of the index and the slice report, to
look at. Prints one table row per page and exits non-zero if a check fails.

Needs Debian's chromium (`apt-get install chromium`); not part of the default tests (CI has
no browser).

    python benchmarks/check_reports.py [--reports reports] [--shots /tmp/report-shots]
"""

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium(binary: str, url: str, *extra: str, timeout: int = 120) -> tuple[str, float]:
    "Run headless Chromium on one URL with a fresh profile; return its stdout and the seconds it took."
    with tempfile.TemporaryDirectory() as profile:
        started = time.perf_counter()
        proc = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=timeout)
        took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {proc.stderr[-2000:]}")
    return proc.stdout, took


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    "A static file server for root on a free port of 127.0.0.1."
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def checks_for(name: str, dom: str) -> dict[str, bool]:
    "What must be on each kind of page once the browser has rendered it."
    images = len(re.findall(r'<img[^>]+src="data:image/png;base64,', dom))
    out = {"has a heading": bool(re.search(r"<h1[ >]", dom)), "no code inputs": "hl-ipython3" not in dom}
    if name == "index.html":
        out |= {"links the reports": dom.count("<li><a href=") >= 6, "key metrics table": 'id="metrics"' in dom,
                "gaps table": 'id="gaps"' in dom, "worst slices table": 'id="worst"' in dom}
    elif name == "05_slices.html":
        out |= {"slice table (>90 rows)": dom.count("native-country") > 40 and dom.count("<tr") > 90,
                "10 embedded plots": images >= 10, "disparity table": "selection_rate" in dom}
    elif name == "05a_report.html":
        out |= {"model card sections": all(s in dom for s in ("Model details", "Quantitative analyses", "Caveats"))}
    elif name.endswith(".html"):
        out |= {"notebook content": "jp-Notebook" in dom}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", default="reports", type=Path, help="folder with index.html")
    ap.add_argument("--shots", default=Path(tempfile.gettempdir()) / "report-shots", type=Path, help="screenshot folder")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args()
    index = args.reports / "index.html"
    if not index.is_file():
        sys.exit(f"{index} is missing: run `make pipeline` (dvc repro) first")
    if not shutil.which(args.chromium):
        sys.exit("chromium not found: apt-get install chromium")
    args.shots.mkdir(parents=True, exist_ok=True)
    server, base = serve(args.reports)
    try:
        links = re.findall(r'<a href="([^"]+)"', index.read_text())
        pages = ["index.html"] + [h for h in links if h.endswith(".html")]
        others = [h for h in links if not h.endswith(".html")]
        failed, rows = [], []
        for name in pages:
            dom, took = chromium(args.chromium, f"{base}/{name}", "--dump-dom")
            checks = checks_for(name, dom)
            failed += [f"{name}: {c}" for c, ok in checks.items() if not ok]
            rows.append((name, took, len(dom), dom.count("<table"), len(re.findall(r'src="data:image/png', dom)),
                         "ok" if all(checks.values()) else "FAIL"))
        for name in others:
            ok = (args.reports / name).is_file() and (args.reports / name).stat().st_size > 0
            rows.append((name, 0.0, (args.reports / name).stat().st_size if ok else 0, 0, 0, "ok" if ok else "FAIL"))
            failed += [] if ok else [f"{name}: linked but missing"]
        for name, size in (("index.html", "1280,1500"), ("05_slices.html", "1400,4000")):
            shot = args.shots / name.replace(".html", ".png")
            chromium(args.chromium, f"{base}/{name}", f"--screenshot={shot}", f"--window-size={size}")
            rows.append((f"screenshot {shot}", 0.0, shot.stat().st_size, 0, 0, "ok"))
    finally:
        server.shutdown()
    print(f"{'page':58} {'load s':>7} {'bytes':>9} {'tables':>6} {'imgs':>5}  result")
    for name, took, size, tables, imgs, res in rows:
        print(f"{name:58} {took:7.2f} {size:9d} {tables:6d} {imgs:5d}  {res}")
    for f in failed:
        print("FAILED:", f)
    return 1 if failed else 0


if __name__ == "__main__":
    print(blas_line())
    sys.exit(main())

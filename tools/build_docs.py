"""Build the chapters: every notebook of nbs/ executed at its quick defaults and rendered with its code, prose and
outputs, plus an index page made from the README, into one folder of static pages that need no network.

    .venv/bin/python tools/build_docs.py [--out _docs] [--only 01_clean 02b_model ...]

`make docs` runs it. Each notebook runs in a real Jupyter kernel from nbs/ (as a person opening it would), with
`quick = True`: the stage notebooks work on a 3,000-row sample in a temporary folder and write nothing into the
repository. The pages are nbconvert's "lab" template (the look of JupyterLab), each with a navigation bar; the
index is the README rendered by mistune (nbconvert's own Markdown renderer) followed by the table of chapters.
"""

import argparse
import html
import re
import sys
import time
from pathlib import Path

import mistune
import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from census_income.pipeline import offline_html, strip_run_metadata
from census_income.report import INDEX_CSS, notebook_title

ROOT = Path(__file__).resolve().parents[1]
NAV_CSS = ("nav.chapters{position:sticky;top:0;z-index:10;background:#f7f7f7;border-bottom:1px solid #ddd;"
           "padding:.4rem 1rem;font:14px system-ui,sans-serif}nav.chapters a{margin-right:1rem}")


def nav(pages: list[tuple[str, str, str]], at: int | None) -> str:
    "The bar at the top of every page: the index, the previous and next chapter, and where this one is."
    links = ['<a href="index.html">Chapters</a>']
    if at is not None:
        if at > 0:
            links.append(f'<a href="{pages[at - 1][0]}.html">&larr; {html.escape(pages[at - 1][1])}</a>')
        if at + 1 < len(pages):
            links.append(f'<a href="{pages[at + 1][0]}.html">{html.escape(pages[at + 1][1])} &rarr;</a>')
        links.append(f'<span>{at + 1} of {len(pages)}</span>')
    return f'<nav class="chapters">{"".join(links)}</nav>'


def render(nb_path: Path, pages: list, at: int, timeout: int) -> str:
    "Execute a notebook at its quick defaults in a real kernel and render it with its code."
    nb = nbformat.read(nb_path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(nb_path.parent)}}).execute()
    strip_run_metadata(nb)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": pages[at][1]}})
    body = offline_html(body).replace("</head>", f"<style>{NAV_CSS}</style></head>", 1)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav(pages, at), body, count=1)


def index_page(pages: list[tuple[str, str, str]]) -> str:
    "The README, then the chapters with their one-line summaries."
    readme = mistune.html((ROOT / "README.md").read_text())
    rows = "".join(f'<tr><td><a href="{n}.html">{html.escape(t)}</a></td><td>{html.escape(s)}</td><td><code>nbs/{n}.ipynb</code></td></tr>'
                   for n, t, s in pages)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>census-income: chapters</title>'
            f'<style>{INDEX_CSS}{NAV_CSS}</style></head><body>{nav(pages, None)}'
            f'<h1>The chapters</h1><p class="muted">Every notebook of <code>nbs/</code>, run at its quick defaults, with its code.</p>'
            f'<table><tr><th>chapter</th><th>what it holds</th><th>notebook</th></tr>{rows}</table><hr>{readme}</body></html>')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_docs", help="the folder of pages (default: _docs)")
    ap.add_argument("--only", nargs="*", help="render only these notebooks (names without .ipynb)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds one cell may run")
    args = ap.parse_args(argv)
    notebooks = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    pages = [(p.stem, *notebook_title(p)) for p in notebooks]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index.html").write_text(index_page(pages), encoding="utf-8")
    for at, path in enumerate(notebooks):
        if args.only and path.stem not in args.only:
            continue
        started = time.perf_counter()
        (args.out / f"{path.stem}.html").write_text(render(path, pages, at, args.timeout), encoding="utf-8")
        sys.stderr.write(f"docs: {path.stem}.html in {time.perf_counter() - started:.1f} s\n")
    sys.stderr.write(f"docs: {args.out / 'index.html'} and {len(args.only or notebooks)} chapter(s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

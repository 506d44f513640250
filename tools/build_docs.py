"""Build the chapters: every notebook of nbs/ executed at its quick defaults and rendered with its code, prose and
outputs, plus an index page made from the README and a page of the guide (docs/guide.md), into one folder of static
pages that need no network.

    .venv/bin/python tools/build_docs.py [--out _docs] [--only 01_clean 02b_model ...]

`make docs` runs it. Each notebook runs in a real Jupyter kernel from nbs/ (as a person opening it would), with
`quick = True`: the stage notebooks work on a 3,000-row sample in a temporary folder and write nothing into the
repository. The pages are nbconvert's "lab" template (the look of JupyterLab), each with a navigation bar; the
index is the README rendered by mistune (nbconvert's own Markdown renderer) followed by the table of chapters, whose
summaries are Markdown too; links to docs/guide.md point to guide.html.
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
    links = ['<a href="index.html">Home</a>', '<a href="index.html#chapters">Chapters</a>', '<a href="guide.html">Guide</a>']
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


def markdown(text: str) -> str:
    "Markdown as HTML (raw HTML in it escaped), with the links to the guide and the README made to the pages of the docs."
    page = mistune.create_markdown(escape=True, plugins=["table"])(text)
    page = re.sub(r"<h([1-4])>(.*?)</h\1>", lambda m: f'<h{m[1]} id="{slug(m[2])}">{m[2]}</h{m[1]}>', page)
    return page.replace('href="docs/guide.md', 'href="guide.html').replace('href="../README.md', 'href="index.html')


def slug(heading: str) -> str:
    "The anchor GitHub gives a heading (lower case, punctuation dropped, spaces as dashes): the README's links work here too."
    text = html.unescape(re.sub(r"<[^>]+>", "", heading)).lower()
    return re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-")


def inline(text: str) -> str:
    "One line of Markdown (a chapter's summary: `code`, *emphasis*) as HTML, without its paragraph."
    return re.sub(r"^<p>(.*)</p>\s*$", r"\1", markdown(text), flags=re.S)


def page(title: str, body: str, pages: list[tuple[str, str, str]]) -> str:
    "A page of the docs: its title, the style of the reports, the chapters' bar, the body."
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{INDEX_CSS}{NAV_CSS}</style></head><body>{nav(pages, None)}{body}</body></html>')


def index_page(pages: list[tuple[str, str, str]]) -> str:
    "The README first, then the chapters with their one-line summaries."
    rows = "".join(f'<tr><td><a href="{n}.html">{html.escape(t)}</a></td><td>{inline(s)}</td><td><code>nbs/{n}.ipynb</code></td></tr>'
                   for n, t, s in pages)
    return page("census-income", f'{markdown((ROOT / "README.md").read_text())}<hr><h2 id="chapters">The chapters</h2>'
                f'<p class="muted">Every notebook of <code>nbs/</code>, run at its quick defaults, with its code.</p>'
                f'<table><tr><th>chapter</th><th>what it holds</th><th>notebook</th></tr>{rows}</table>', pages)


def guide_page(pages: list[tuple[str, str, str]]) -> str:
    "docs/guide.md, the reference behind the README."
    return page("census-income: the guide", markdown((ROOT / "docs" / "guide.md").read_text()), pages)


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
    (args.out / "guide.html").write_text(guide_page(pages), encoding="utf-8")
    for at, path in enumerate(notebooks):
        if args.only and path.stem not in args.only:
            continue
        started = time.perf_counter()
        (args.out / f"{path.stem}.html").write_text(render(path, pages, at, args.timeout), encoding="utf-8")
        sys.stderr.write(f"docs: {path.stem}.html in {time.perf_counter() - started:.1f} s\n")
    sys.stderr.write(f"docs: {args.out / 'index.html'}, guide.html and {len(args.only or notebooks)} chapter(s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

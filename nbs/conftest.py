"""nbval runs each notebook's cells as test items: they must run top to bottom and together (nbval starts a
kernel for a notebook's first cell and stops it when pytest moves on to another file), whatever order
pytest-randomly gives the rest of the suite (it shuffles a notebook's cells like a module's tests)."""

import os
import re
from pathlib import Path

import pytest

from census_income.cpu import pinned_environ
from census_income.pipeline import QUICK_CACHE_ENV

os.environ.update(pinned_environ(os.environ)[0])  # each notebook's kernel on the pipeline's CPU kernels (census_income.cpu)
# a stage notebook's quick run reuses the stages before it when they read exactly the same (census_income.pipeline);
# given to the notebooks' kernels only, not to this process (whose tests run the stages themselves)
QUICK_CACHE = os.environ.pop(QUICK_CACHE_ENV, "") or str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "quick-stages")

_CELL = re.compile(r"^(.*\.ipynb)::Cell (\d+)$")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    "Each notebook's cells, in their order, where the shuffle put the first of them; every other item as shuffled."
    cells: dict[str, list] = {}
    for item in items:
        if m := _CELL.match(item.nodeid):
            cells.setdefault(m.group(1), []).append(item)
    ordered, placed = [], set()
    for item in items:
        m = _CELL.match(item.nodeid)
        if m is None:
            ordered.append(item)
        elif m.group(1) not in placed:
            placed.add(m.group(1))
            ordered += sorted(cells[m.group(1)], key=lambda it: int(_CELL.match(it.nodeid).group(2)))
    items[:] = ordered


_kernels = None


def pytest_sessionstart(session):
    """The kernels' template starts now, so that its imports overlap collection: under pytest-xdist one in the controller
    for every worker (before it starts them), else one in this process; each process that runs notebooks installs it."""
    global _kernels
    from kernel_forks import install, start_shared

    if hasattr(session.config, "workerinput") or session.config.getoption("numprocesses", None) in (None, 0):
        _kernels = install({QUICK_CACHE_ENV: QUICK_CACHE})
    else:  # the xdist controller: it runs no notebook
        _kernels = start_shared()


def pytest_sessionfinish(session):
    if _kernels is not None:
        _kernels.close()

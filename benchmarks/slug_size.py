"""How big is the web dyno's slug? Install requirements-serve.txt into a fresh venv and measure it.

Usage: .venv/bin/python benchmarks/slug_size.py [--keep DIR] [--dev-venv .venv]
(with --keep, an existing venv in DIR is measured again without reinstalling)

Prints a table: size on disk and as tar.gz (gzip level 6, as Heroku packs slugs) of
- the serving venv's site-packages (requirements-serve.txt + this package, installed without deps),
- the Python standard library without its site-packages and test suite (Heroku's buildpack puts a
  Python runtime into the slug too; this is an upper bound for it),
- the app files Heroku keeps (git-tracked files minus .slugignore),
- their sum, the estimate of the slug (Heroku's limit: 1 GB compressed; our target: 300 MB),
- and the full development venv for comparison.
"""

import argparse
import fnmatch
import io
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

from machine import blas_line  # benchmarks/machine.py (the folder of the script is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000


class _Counter(io.RawIOBase):
    "A write-only sink that counts bytes (the tar.gz is measured, never stored)."

    def __init__(self):
        self.n = 0

    def writable(self):
        return True

    def write(self, b):
        self.n += len(b)
        return len(b)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]


def measure(files: list[Path], base: Path) -> tuple[int, int]:
    "(bytes on disk, bytes as tar.gz) of files, archived relative to base."
    counter = _Counter()
    with tarfile.open(fileobj=counter, mode="w:gz", compresslevel=6) as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(base)), recursive=False)
    return sum(f.stat().st_size for f in files), counter.n


def slug_app_files() -> list[Path]:
    "The repository's tracked files minus the patterns in .slugignore (what the slug holds besides Python)."
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    ignore = ROOT / ".slugignore"
    patterns = [ln.strip().lstrip("/") for ln in ignore.read_text().splitlines()
                if ln.strip() and not ln.startswith("#")] if ignore.exists() else []
    keep = []
    for rel in filter(None, tracked.split("\0")):
        dropped = any(rel == p or rel.startswith(p.rstrip("/") + "/") or fnmatch.fnmatch(rel, p) for p in patterns)
        if not dropped and (ROOT / rel).is_file():
            keep.append(ROOT / rel)
    return keep


def stdlib_files() -> tuple[list[Path], Path]:
    "The standard library's files, less site-packages and the test suite (not needed to run anything)."
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {stdlib / "site-packages", stdlib / "dist-packages", stdlib / "test"}
    return [f for f in files_under(stdlib) if not any(d in f.parents for d in skip)], stdlib


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def build_venv(dest: Path) -> float:
    "Create dest as a venv from requirements-serve.txt plus this package (no deps); seconds taken."
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True)
    pip = [str(dest / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements-serve.txt")], check=True, cwd=ROOT)
    subprocess.run([*pip, "--no-deps", "."], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def check_serving_imports(venv: Path) -> str:
    "Import the API in the serving venv, from outside the checkout; name any heavy package that came along."
    code = ("import sys, census_income.api, census_income.deploy; "
            "heavy = sorted({'torch', 'pandas', 'sklearn', 'optuna', 'matplotlib'} & set(sys.modules)); "
            "print('heavy modules imported:', ', '.join(heavy) or 'none')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, env=env).stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", type=Path, help="build the serving venv here and keep it (default: a temp dir)")
    p.add_argument("--dev-venv", type=Path, default=ROOT / ".venv", help="the development venv to compare with")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        venv = args.keep or Path(tmp) / "serve-venv"
        if (venv / "bin" / "python").exists():
            print(f"measuring the existing venv {venv}")
        else:
            print(f"serving venv built in {build_venv(venv):.0f} s: {venv}")
        print(check_serving_imports(venv))
        std, stdlib = stdlib_files()
        rows = [
            ("serving site-packages", measure(files_under(site_packages(venv)), venv)),
            ("Python stdlib (no site-packages, no test/)", measure(std, stdlib.parent)),
            ("app files (git minus .slugignore)", measure(slug_app_files(), ROOT)),
        ]
        rows.append(("slug estimate (sum)", tuple(map(sum, zip(*(r[1] for r in rows), strict=True)))))
        rows.append((f"dev venv site-packages ({args.dev_venv})",
                     measure(files_under(site_packages(args.dev_venv)), args.dev_venv)))
        biggest = sorted(((sum(f.stat().st_size for f in files_under(d)), d.name)
                          for d in site_packages(venv).iterdir() if d.is_dir()), reverse=True)[:8]

    print(f"\n| {'what':<55} | {'on disk MB':>10} | {'tar.gz MB':>9} |")
    print(f"|{'-' * 57}|{'-' * 12}|{'-' * 11}|")
    for name, (disk, gz) in rows:
        print(f"| {name:<55} | {disk / MB:>10.1f} | {gz / MB:>9.1f} |")
    print("\nlargest packages in the serving venv (MB on disk): "
          + ", ".join(f"{name} {size / MB:.1f}" for size, name in biggest))
    print("Heroku's limit: 1000 MB compressed (500 MB until 2026); target: under 300 MB.")


if __name__ == "__main__":
    print(blas_line())
    main()

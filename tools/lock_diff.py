"""What differs between the committed dvc.lock and the one `make pipeline` left: the stages, the files, and the CPU.

`.ci/run` calls it when `git diff dvc.lock` is not empty, so that a red CI says which stage first wrote other bytes
and on which kernels, not only that the lock changed:

    python tools/lock_diff.py [--base HEAD] [--lock dvc.lock]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def entries(lock: dict) -> dict[tuple[str, str, str], str]:
    "(stage, deps|params|outs, path or param) → its md5 (or value), for every entry of a dvc.lock."
    out = {}
    for stage, body in (lock or {}).get("stages", {}).items():
        for kind in ("deps", "outs"):
            for item in body.get(kind, []):
                out[(stage, kind, item["path"])] = str(item.get("md5"))
        for file, values in (body.get("params") or {}).items():
            for key, value in (values or {}).items():
                out[(stage, "params", f"{file}:{key}")] = yaml.safe_dump(value, sort_keys=True)
    return out


def lock_changes(
    old: str,  # the committed dvc.lock's text
    new: str,  # the dvc.lock the run left
) -> list[tuple[str, str, str, str]]:  # (stage, kind, path, what: changed|added|removed), in the lock's stage order
    "Every dependency, param and output whose hash or value differs between two dvc.lock texts."
    a, b = entries(yaml.safe_load(old)), entries(yaml.safe_load(new))
    order = {stage: i for i, stage in enumerate(dict.fromkeys([k[0] for k in b] + [k[0] for k in a]))}
    keys = sorted(set(a) | set(b), key=lambda k: (order[k[0]], ("deps", "params", "outs").index(k[1]), k[2]))
    return [(*k, "added" if k not in a else "removed" if k not in b else "changed") for k in keys if a.get(k) != b.get(k)]


def describe(changes: list[tuple[str, str, str, str]]) -> list[str]:
    "One line per stage: what it read that differs, and what it wrote that differs."
    lines = []
    for stage in dict.fromkeys(c[0] for c in changes):
        mine = [c for c in changes if c[0] == stage]
        read = [f"{p} ({w})" for _, k, p, w in mine if k != "outs"]
        wrote = [f"{p} ({w})" for _, k, p, w in mine if k == "outs"]
        lines.append(f"stage {stage}: " + "; ".join(filter(None, [
            f"inputs differ: {', '.join(read)}" if read else "",
            f"outputs differ: {', '.join(wrote)}" if wrote else ""])))
    return lines


def cpu_line() -> str:
    "The CPU, the kernels the stages ran on (pinned) and the CPU's own, as torch, numpy and OpenBLAS report them."
    probe = ("import torch, numpy; from threadpoolctl import threadpool_info as i; "
             "print(torch.backends.cpu.get_cpu_capability(), "
             "next((x['architecture'] for x in i() if x['internal_api'] == 'openblas'), '?'))")
    from census_income.cpu import SWITCH, cpu_facts, pinned_environ, without_pins

    clean = without_pins(os.environ)
    pinned, note = pinned_environ(clean)
    said = {}
    for name, env in (("pinned", pinned), ("own", clean | {SWITCH: "off"})):
        proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
        said[name] = proc.stdout.strip() or f"(probe failed: {proc.stderr.strip()[-200:]})"
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    facts = cpu_facts()
    wide = "with AVX-512" if any(f.startswith("AVX512") for f in facts["features"]) else "without AVX-512"
    return (f"CPU: {model} ({facts['machine']}, {wide}); torch capability and OpenBLAS kernel: the stages' (pinned) "
            f"{said['pinned']}, the CPU's own {said['own']}" + (f"; {note}" if note else ""))


def main(argv: list[str] | None = None) -> int:  # 0: no difference, 1: the lock differs
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="the commit whose dvc.lock is the reference (default: HEAD)")
    ap.add_argument("--lock", default="dvc.lock", help="the dvc.lock to compare (default: dvc.lock)")
    args = ap.parse_args(argv)
    old = subprocess.run(["git", "show", f"{args.base}:dvc.lock"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    changes = lock_changes(old, Path(args.lock).read_text())
    if not changes:
        print(f"dvc.lock: the same as {args.base}'s")
        return 0
    print(f"dvc.lock differs from {args.base}'s in {len({c[0] for c in changes})} stage(s), first {changes[0][0]}:")
    for line in describe(changes):
        print(f"  {line}")
    print(f"  {cpu_line()}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""A payload log write that a full disk or a size limit stops part-way: the partial line stays, and the next write starts
on a line of its own, so every line after it is whole (census_income.serving.payload.RotatingLog)."""

import subprocess
import sys

from testkit import ROOT

WRITER = r"""
import resource, signal, sys
from census_income.serving.payload import RotatingLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing the process
log = RotatingLog(sys.argv[1], 1 << 20, 2)
log.write('{"n": 1}\n')
resource.setrlimit(resource.RLIMIT_FSIZE, (20, resource.RLIM_INFINITY))  # the disk is full after 20 bytes
try:
    log.write('{"n": 2, "padding": "' + "x" * 40 + '"}\n')
    sys.exit("the write past the limit did not fail")
except OSError:
    pass
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space again
log.write('{"n": 3}\n')
"""


def test_a_write_stopped_part_way_leaves_the_next_lines_whole(tmp_path):
    path = tmp_path / "payload.jsonl"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = path.read_text().split("\n")
    second = '{"n": 2, "padding": "' + "x" * 40 + '"}'
    assert lines[0] == '{"n": 1}' and lines[1] and second.startswith(lines[1]) and lines[1] != second  # cut short
    assert lines[2:] == ['{"n": 3}', ""], lines  # the partial line ended by the next write, which is whole

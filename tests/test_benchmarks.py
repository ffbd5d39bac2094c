"""The benchmark driver finds every registered section and refuses unknown ones.

The sections themselves take minutes and print timings, so they are not run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "benchmarks" / "bench.py"


def bench(*arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(DRIVER), *arguments], capture_output=True, text=True,
                          timeout=120, env=environment, check=False)


def test_list_shows_every_section_in_order_with_its_title():
    """--list imports each registered section module and prints its number and TITLE."""
    listed = bench("--list")
    assert listed.returncode == 0, listed.stderr
    entries = [re.fullmatch(r"(\d+)\. (\w+): (.+)", line) for line in listed.stdout.splitlines()]
    assert all(entries), listed.stdout
    assert [int(entry[1]) for entry in entries] == list(range(1, len(entries) + 1))
    names = [entry[2] for entry in entries]
    assert names[:7] == ["forward", "apply", "batch", "large", "live", "engines", "settings"]
    assert len(set(names)) == len(names)


def test_unknown_section_is_one_line_and_exit_2():
    done = bench("--only", "1,nosuch")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith("bench.py: error: unknown section 'nosuch': choose numbers 1-")

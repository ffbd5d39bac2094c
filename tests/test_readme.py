"""The README's Python example runs as written, from the repository root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README has no Python example"
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "chelsea_sketch.png").stat().st_size > 10_000


def test_first_commands_are_the_ones_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = readme.index("```sh")
    setup, tests = readme[start + 1], readme[start + 2]
    assert "cvstyle apply samples/" in setup
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert setup in ci and tests in ci


def test_ci_runs_the_test_commands_of_the_tests_section():
    """README's Tests section documents the second CI environment command for command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in re.findall(r"```sh\n(.*?)```", section, re.S) for line in block.splitlines()]
    assert commands, "README's Tests section shows no command"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci, command

"""The README's Python example runs as written, from the repository root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_exit_code_table_is_the_one_the_cli_follows():
    """README's table lists exactly cvstyle.cli.EXIT_CODES, and the error classes use it."""
    from cvstyle.cli import EXIT_CODES
    from cvstyle.cli.options import OptionError
    from cvstyle.errors import CvstyleError, DownloadError, ImageError, ModelError

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Exit codes\n", 1)[1].split("\n#", 1)[0]
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.M))
    assert {int(code) for code in table} == set(EXIT_CODES)
    for code, meaning in EXIT_CODES.items():
        assert table[str(code)] == meaning
    assert (CvstyleError.exit_code, ImageError.exit_code, ModelError.exit_code, DownloadError.exit_code) == (1, 2, 3, 4)
    assert OptionError("x").exit_code == 2


SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def tracked_outputs() -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in [*(ROOT / "docs").iterdir(), *(ROOT / "cvstyle" / "data").iterdir()]}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_script_answers_help_and_writes_nothing_unless_asked(script, tmp_path):
    before = tracked_outputs()
    for args, code in ([["--help"], 0], [[], 2]):  # no arguments: a usage error, not a run
        result = subprocess.run(
            [sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == code, result.stdout + result.stderr
        assert "usage:" in result.stdout + result.stderr
    assert tracked_outputs() == before
    assert list(tmp_path.iterdir()) == []

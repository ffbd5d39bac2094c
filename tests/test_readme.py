"""The README's Python example runs as written, from the repository root."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import click
import cv2
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


def run_script(script: Path, args: list[str], folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_every_script_answers_help_and_writes_nothing(script, tmp_path):
    before = tracked_outputs()
    result = run_script(script, ["--help"], tmp_path)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stdout + result.stderr
    assert tracked_outputs() == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["build_builtin_model.py", "make_controls_grid.py"])
def test_scripts_that_write_files_write_only_where_told(name, tmp_path):
    """Without -o they stop with a usage error (they used to rewrite tracked files)."""
    before = tracked_outputs()
    result = run_script(ROOT / "scripts" / name, [], tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr, result.stdout + result.stderr
    assert tracked_outputs() == before
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- every command block, in order


def readme_commands() -> list[str]:
    """Each command of README's ``sh`` blocks in order (``&&`` chains split, comments and
    line continuations resolved)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = " ".join(shlex.split(line, comments=True))
            if words:
                commands += [part.strip() for part in line.split("#", 1)[0].split(" && ") if part.strip()]
    return commands


def cvstyle_command(words: list[str]) -> tuple[click.Command, list[str]]:
    """The click command a ``cvstyle`` word list runs, and the options of it and its groups."""
    from cvstyle.cli import cli

    command, options = cli, []
    for word in words:
        options += [opt for param in command.params for opt in param.opts + param.secondary_opts]
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
    options += [opt for param in command.params for opt in param.opts + param.secondary_opts]
    return command, options + ["-h", "--help"]


def test_readme_commands_are_written_to_run_after_the_first_one():
    """No bare `cvstyle` (not on PATH after `python3 -m venv .venv && .venv/bin/pip install
    -e .`), no `pip install 'cvstyle[x]'` (cvstyle is installed from the checkout), and
    every option a `cvstyle` command uses is one it has."""
    extras = set(re.findall(r"^(\w+) = \[", (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M))
    commands = readme_commands()
    assert commands[0].startswith("python3 -m venv .venv")
    for command in commands:
        words = shlex.split(command)
        program = words[0]
        assert program in ("python3", "curl") or program.startswith((".venv/bin/", ".venv-cv4/bin/")), command
        if program.endswith("/pip"):
            assert words[1:3] == ["install", "-e"], command
            target = re.fullmatch(r"\.(?:\[(\w+)\])?", words[3])
            assert target and (target[1] is None or target[1] in extras), command
        if program.endswith("/python") and words[1].endswith(".py"):
            shown = subprocess.run(
                [sys.executable, str(ROOT / words[1]), "--help"], capture_output=True, text=True, timeout=120
            ).stdout
            used = [word.split("=", 1)[0] for word in words[2:] if re.match(r"-[-a-zA-Z]", word)]
            assert all(re.search(rf"(^|[\s,\[]){re.escape(option)}\b", shown) for option in used), command
        if program.endswith("/cvstyle"):
            command_object, options = cvstyle_command(words[1:])
            used = [word.split("=", 1)[0] for word in words[1:] if re.match(r"-[-a-zA-Z]", word)]
            assert set(used) <= set(options), f"{command}: {set(used) - set(options)} unknown to {command_object.name}"


def shim(path: Path, target: str) -> None:
    path.write_text(f'#!/bin/sh\nexec {target} "$@"\n', encoding="utf-8")
    path.chmod(0o755)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Not run here: the suite itself, a server, a camera, other machines' setup.
# Scripts (fuzzer, benchmarks) are long runs: their options are checked against --help.
NOT_RUN = re.compile(r"-m pytest|^python3 -m venv|/pip |^curl |cvstyle (serve|live)\b|/python \S+\.py")


@pytest.mark.slow
def test_readme_commands_run_in_order_in_a_fresh_folder(tmp_path):
    """Each runnable command, pasted in order, works or fails only as this offline machine
    must: a model not downloaded (3) or a host that cannot be reached (4); never a usage
    error or a traceback. Network access is cut with a proxy that refuses connections."""
    work = tmp_path / "clone"
    (work / ".venv" / "bin").mkdir(parents=True)
    for name in ("samples", "scripts", "benchmarks", "docs", "models.txt", "pyproject.toml"):
        (work / name).symlink_to(ROOT / name)
    shim(work / ".venv" / "bin" / "python", shlex.quote(sys.executable))
    shim(work / ".venv" / "bin" / "cvstyle", f"{shlex.quote(sys.executable)} -c 'from cvstyle.cli import run; run()'")
    # The photos and the manifest a user would have.
    photo = cv2.resize(cv2.imread(str(ROOT / "samples" / "chelsea.png")), (120, 80))
    for name in ("photo.jpg", "photos/a.jpg", "photos/b.png", "trip/day1.jpg"):
        (work / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(work / name), photo)
    (work / "my-models.txt").write_text(f"mine/portrait https://example.org/portrait.t7 sha256:{'0' * 64} Mine\n")
    proxy = f"http://127.0.0.1:{unused_port()}"
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), CVSTYLE_HOME=str(tmp_path / "home"),
        HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy, NO_PROXY="", no_proxy="",
    )
    ran = []
    for command in readme_commands():
        if NOT_RUN.search(command):
            continue
        result = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, f"{command}\n{output}"
        offline = (result.returncode == 3 and "is not downloaded" in output) or (
            result.returncode == 4 and "cannot reach" in output
        )
        users_file = result.returncode == 3 and re.search(r"model file \S+ does not exist", output)
        assert result.returncode == 0 or offline or users_file, f"{command} -> {result.returncode}\n{output}"
        ran.append((command, result.returncode))
    assert ("samples/chelsea.png" in ran[0][0]) and ran[0][1] == 0
    assert (work / "chelsea_sketch.jpg").is_file() and (work / "photo_sketch.jpg").is_file()
    assert sum(code == 0 for _, code in ran) >= 5, ran

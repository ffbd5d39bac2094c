"""The ``cvstyle`` command: a thin layer over the Python API.

Every command lives in a module of this package and registers itself on :data:`cli`.
User mistakes (:class:`~cvstyle.errors.CvstyleError`, and click's usage errors) become
one line on stderr and the exit code of README's table (:data:`EXIT_CODES`), never a
traceback.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import CvstyleError
from .options import OptionError

# README's table of exit codes (tests/test_readme.py checks that they agree); the error
# classes carry theirs: OptionError and ImageError 2, ModelError 3, DownloadError 4.
EXIT_CODES = {
    0: "success",
    1: "any other failure (an engine or device that cannot run here, a missing package)",
    2: "an option or argument that cannot work, an input image that cannot be read, an output that cannot be written",
    3: "a model that is unknown, not downloaded, corrupt, or not a network cvstyle can run",
    4: "a download that failed or did not verify",
    130: "interrupted (Ctrl-C)",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cvstyle")
def cli() -> None:
    """Turn photos, folders, webcam streams and video into paintings."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    try:
        return cli.main(args=argv, prog_name="cvstyle", standalone_mode=False) or 0
    except CvstyleError as error:
        click.echo(f"cvstyle: error: {error}", err=True)
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("cvstyle: interrupted", err=True)
        return 130
    except click.UsageError as error:  # one line, like every other error
        hint = "" if isinstance(error, OptionError) or error.ctx is None else f" (see `{error.ctx.command_path} --help`)"
        click.echo(f"cvstyle: error: {error.format_message()}{hint}", err=True)
        return error.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code


def run() -> None:
    sys.exit(main())


# Commands register themselves on import.
from . import apply  # noqa: E402,F401
from . import models  # noqa: E402,F401
from . import convert  # noqa: E402,F401
from . import serve  # noqa: E402,F401
from . import live  # noqa: E402,F401

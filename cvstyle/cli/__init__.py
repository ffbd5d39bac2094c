"""The ``cvstyle`` command: a thin layer over the Python API.

Every command lives in a module of this package and registers itself on :data:`cli`.
User mistakes (:class:`~cvstyle.errors.CvstyleError`) become one line on stderr and the
error's exit code, never a traceback.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import CvstyleError


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

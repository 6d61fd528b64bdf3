"""The ``eclip`` command line: a thin Typer layer over :mod:`eclip.api`."""

from eclip.cli.app import app, main

__all__ = ["app", "main"]

"""The ``shopfloor`` command line. Each command group lives in its own module."""

from shopfloor.cli import _commands  # noqa: F401  (registers the commands)
from shopfloor.cli._app import app
from shopfloor.cli._app import run_app as main

__all__ = ["app", "main"]

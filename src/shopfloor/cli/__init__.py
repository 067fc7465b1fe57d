"""The ``shopfloor`` command line. Each command group lives in its own module."""

from shopfloor.cli import _commands  # noqa: F401  (registers the commands)
from shopfloor.cli._app import app, run_app

__all__ = ["app", "main"]


def main() -> None:
    run_app()

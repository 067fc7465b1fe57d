"""Imports every command module so each registers its commands on the app."""

# One line per command module; keep sorted.
from shopfloor.cli import _models  # noqa: F401
from shopfloor.cli import _version  # noqa: F401

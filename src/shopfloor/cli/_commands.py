"""Imports every command module so each registers its commands on the app."""

# One line per command module; keep sorted.
from shopfloor.cli import (
    _audit,  # noqa: F401
    _demo,  # noqa: F401
    _demo_researcher,  # noqa: F401
    _docs,  # noqa: F401
    _doctor,  # noqa: F401
    _eval,  # noqa: F401
    _feedback,  # noqa: F401
    _gitops,  # noqa: F401
    _models,  # noqa: F401
    _releases,  # noqa: F401
    _run,  # noqa: F401
    _sandbox,  # noqa: F401
    _secrets,  # noqa: F401
    _serve,  # noqa: F401
    _skill,  # noqa: F401
    _trace,  # noqa: F401
    _validate,  # noqa: F401
    _version,  # noqa: F401
    _ws,  # noqa: F401
)

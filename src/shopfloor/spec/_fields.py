"""What every YAML model of the project shares: the strict base and strict numbers.

pydantic's lax mode reads ``true`` as 1 and ``"20"`` or ``3.0`` as an integer, so ``max_steps: true``
loaded as one step. A number in a YAML file is a YAML number: ``Int`` takes an integer only (a bool is
not one), ``Number`` an integer or a float (not a bool, not a string). The models stay lax otherwise
(a YAML list still fills a tuple).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Strict

__all__ = ["Int", "Number", "StrictModel"]

Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]


class StrictModel(BaseModel):
    """User input from a file: an unknown key is an error, and a loaded value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

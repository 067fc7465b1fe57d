"""Tools of the calculator example agent: plain typed functions become tools."""

from __future__ import annotations

from typing import Literal

Unit = Literal["m", "km", "mi", "ft", "kg", "lb", "c", "f"]

_TO_BASE = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048, "kg": 1.0, "lb": 0.45359237}
_KIND = {
    "m": "length",
    "km": "length",
    "mi": "length",
    "ft": "length",
    "kg": "mass",
    "lb": "mass",
    "c": "temperature",
    "f": "temperature",
}


def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> dict[str, object]:
    """Convert a value between units of the same kind (length, mass or temperature)."""
    if _KIND[from_unit] != _KIND[to_unit]:
        raise ValueError(f"cannot convert {_KIND[from_unit]} ({from_unit}) to {_KIND[to_unit]} ({to_unit})")
    if from_unit == to_unit:
        result = value
    elif _KIND[from_unit] == "temperature":
        result = value * 9 / 5 + 32 if from_unit == "c" else (value - 32) * 5 / 9
    else:
        result = value * _TO_BASE[from_unit] / _TO_BASE[to_unit]
    return {"value": round(result, 6), "unit": to_unit}

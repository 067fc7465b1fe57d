"""ops layer (see docs/architecture.md): replay of recorded runs (``shopfloor.ops.replay``)."""

__all__: list[str] = []

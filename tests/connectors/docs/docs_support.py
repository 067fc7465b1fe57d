"""What the collection tests share: an embedder from a hash (the storage under test, not a model)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from shopfloor.connectors.docs import Embedder

__all__ = ["Hashed"]


class Hashed(Embedder):
    """Unit vectors from each text's sha256: equal texts equal vectors; ``delay`` seconds a call."""

    dim = 384

    def __init__(self, *, delay: float = 0.0, name: str = "test-hash/1") -> None:
        self.name = name
        self.delay = delay

    def embed(self, texts: Sequence[str]) -> Any:
        time.sleep(self.delay)
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest() * 48, dtype=np.uint8)[: self.dim] for t in texts
        ]
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim) - 127.5
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-6)

"""Where the collection tests keep their collections: a SQLite file, then PostgreSQL (the same tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.connectors.docs import DocCollections


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def doc_collections(request: pytest.FixtureRequest, tmp_path: Path) -> DocCollections:
    """Empty collections: SQLite files under a fresh home, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return DocCollections.under(tmp_path / "home")
    return DocCollections(url=str(request.getfixturevalue("postgres_schema_url")))

"""``RunStore.find``: a whole run id is read by its primary key (no prefix scan, which waiting for a run
repeats every poll); a unique prefix still finds its run, an ambiguous or unknown one says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from runtime_support import queued_run

from shopfloor.errors import RunNotFoundError
from shopfloor.runtime import RunStore
from shopfloor.storage import make_engine


def test_a_whole_id_is_read_by_its_key_and_a_prefix_still_finds_its_run(tmp_path: Path) -> None:
    store = RunStore(make_engine(f"sqlite:///{tmp_path / 'runs.db'}"))
    for run_id in ("abc123", "abc124", "abd999"):
        store.create(queued_run(run_id))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    assert store.find("abc123").run_id == "abc123"
    assert statements and not any("LIKE" in s.upper() for s in statements), statements
    assert store.find("abd").run_id == "abd999"
    with pytest.raises(RunNotFoundError, match="more than one run"):
        store.find("abc12")
    with pytest.raises(RunNotFoundError, match="no run 'zz'"):
        store.find("zz")

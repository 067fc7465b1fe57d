"""Release files on every object-store backend the workspaces use (local disk, SQLite, PostgreSQL and a
real S3 server, SeaweedFS): stored once by content, read back checked, out of reach of workspace gc.

(It sits with the workspace tests because their backend fixtures live here; the release logic is
``shopfloor.ops.releases``, tested in ``tests/ops``.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shopfloor.config import load_settings
from shopfloor.errors import ReleaseError
from shopfloor.ops.releases import Releases, object_key
from shopfloor.runtime import compose
from shopfloor.skills import generate_key
from shopfloor.workspace import Workspaces, open_store


def test_release_files_live_in_the_object_store_and_survive_gc(store_url: str, tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "agent.yaml").write_text(
        "name: stored\ninstructions: hi\nmodel: test\ntools:\n  - name: f\n    source: tools.py:f\n"
    )
    (agent / "tools.py").write_text('def f(x: int) -> int:\n    """Echo."""\n    return x\n')
    services = compose(load_settings())
    key = generate_key("k", services.settings.home / "keys").private_path
    store = open_store(store_url)
    try:
        with Releases(services, objects=store) as releases:
            release, _ = releases.create(agent, key=key, actor="alice", version="1.0.0")
            asyncio.run(Workspaces(store, cache_dir=tmp_path / "cache").gc(grace=0.0))
            assert store.get(object_key(release.files["tools.py"])) == (agent / "tools.py").read_bytes()
            _, path = releases.verify("stored@1.0.0")
            assert (path / "tools.py").read_bytes() == (agent / "tools.py").read_bytes()
            store.delete([object_key(release.files["tools.py"])])
            with pytest.raises(ReleaseError, match=r"tools.py is missing from the store"):
                releases.verify("stored@1.0.0")
    finally:
        store.close()
        services.close()

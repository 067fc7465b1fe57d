"""The doctor's checks on this machine, and the registry other layers extend."""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterator

import pytest

from shopfloor.config import Settings, load_settings
from shopfloor.diagnostics import (
    BUILTIN_CHECKS,
    Check,
    CheckResult,
    doctor_checks,
    ping_redis,
    postgres_target,
    run_checks,
)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


def test_builtin_checks_run_in_order_with_valid_statuses(settings: Settings) -> None:
    results = run_checks(settings, doctor_checks(), names=list(BUILTIN_CHECKS))
    assert [r.name for r in results] == list(BUILTIN_CHECKS)
    assert list(BUILTIN_CHECKS) == [
        "python",
        "data dir",
        "sqlite",
        "models",
        "postgresql",
        "redis",
    ]
    for result in results:
        assert result.status in {"ok", "warn", "missing"}
        assert result.detail
        assert result.status == "ok" or result.fix, f"{result.name} has no fix"
        assert "the check itself failed" not in result.detail


def test_things_known_on_this_machine(settings: Settings) -> None:
    results = by_name(run_checks(settings, doctor_checks()))
    assert results["python"].status == "ok"
    assert results["sqlite"].status == "ok"
    assert results["sqlite"].data["wal"] is True
    assert results["data dir"].status == "ok"


def test_models_missing_in_a_fresh_home_then_found(settings: Settings) -> None:
    result = by_name(run_checks(settings, doctor_checks(), names=["models"]))["models"]
    assert result.status == "missing"
    assert result.fix == "shopfloor models install qwen2.5-coder-0.5b"
    settings.models_dir.mkdir(parents=True)
    (settings.models_dir / "tiny.gguf").write_bytes(b"GGUF" + b"\0" * 2048)
    result = by_name(run_checks(settings, doctor_checks(), names=["models"]))["models"]
    runtime = importlib.util.find_spec("llama_cpp") is not None
    assert result.status == ("ok" if runtime else "warn")
    assert result.data["files"] == ["tiny.gguf"]
    assert "tiny.gguf" in result.detail


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_postgres_unreachable_is_missing_with_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("SHOPFLOOR_DATABASE_URL", f"postgresql+psycopg://postgres:pw@127.0.0.1:{port}/test")
    settings = load_settings()
    assert postgres_target(settings) == (f"postgresql://postgres:pw@127.0.0.1:{port}/test", True)
    result = by_name(run_checks(settings, doctor_checks(), names=["postgresql"]))["postgresql"]
    assert result.status == "missing"
    assert f"127.0.0.1:{port}" in result.detail
    assert "SHOPFLOOR_DATABASE_URL" in result.fix
    assert result.data["url"] == f"postgresql://postgres:***@127.0.0.1:{port}/test"


@pytest.mark.postgres
def test_postgres_reachable_and_bad_login(monkeypatch: pytest.MonkeyPatch) -> None:
    result = by_name(run_checks(load_settings(), doctor_checks(), names=["postgresql"]))["postgresql"]
    if result.status == "missing":
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    assert result.status == "ok"
    assert result.detail.startswith("PostgreSQL ")
    monkeypatch.setenv("SHOPFLOOR_DATABASE_URL", "postgresql://no_such_role_xyz@127.0.0.1:5432/test")
    result = by_name(run_checks(load_settings(), doctor_checks(), names=["postgresql"]))["postgresql"]
    assert result.status == "warn"
    assert "login failed" in result.detail


@pytest.fixture
def fake_redis() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server that answers every command as a Redis with a password would."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(1024))
            conn.sendall(b"-NOAUTH Authentication required.\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    thread.join(5)
    server.close()


def test_ping_redis_reports_auth_refusal(fake_redis: tuple[int, list[bytes]]) -> None:
    port, received = fake_redis
    reply, version = ping_redis("127.0.0.1", port)
    assert reply == "-NOAUTH Authentication required."
    assert version is None
    assert received == [b"*1\r\n$4\r\nPING\r\n"]


def test_redis_check_matches_a_real_ping(settings: Settings) -> None:
    try:
        reply, version = ping_redis("127.0.0.1", 6379)
    except OSError:
        reply, version = "", None
    result = by_name(run_checks(settings, doctor_checks(), names=["redis"]))["redis"]
    if reply == "+PONG":
        assert result.status == "ok"
        assert version is not None and version in result.detail
    else:
        assert result.status in {"missing", "warn"}


def test_register_function_check_and_replace_in_place(settings: Settings) -> None:
    checks = doctor_checks()
    checks.register("gpu", lambda s: CheckResult(name="gpu", status="missing", detail="none", fix="add one"))
    assert checks.names()[-1] == "gpu"

    def newer(settings: Settings) -> CheckResult:
        return CheckResult(name="anything", status="warn", detail="replaced", fix="nothing")

    checks.register("python", newer)
    names = checks.names()
    assert names.index("python") == 0
    results = by_name(run_checks(settings, checks, names=["python", "gpu"]))
    assert results["python"].detail == "replaced"
    assert results["gpu"].fix == "add one"
    checks.unregister("gpu")
    assert "gpu" not in checks
    # The registry was the test's own: a fresh one has only the built-in lines.
    assert doctor_checks().names() == list(BUILTIN_CHECKS)


def test_check_subclass_and_a_crashing_check(settings: Settings) -> None:
    class Broken(Check):
        name = "broken"

        def run(self, settings: Settings) -> CheckResult:
            raise RuntimeError("probe exploded")

    checks = doctor_checks()
    checks.register("broken", Broken())
    [result] = run_checks(settings, checks, names=["broken"])
    assert result.status == "warn"
    assert result.detail == "the check itself failed: RuntimeError: probe exploded"


def test_a_hanging_check_does_not_block_the_screen(settings: Settings) -> None:
    release = threading.Event()

    def hangs(settings: Settings) -> CheckResult:
        release.wait(10)
        return CheckResult(name="hangs", status="ok", detail="late")

    checks = doctor_checks()
    checks.register("hangs", hangs)
    try:
        results = by_name(run_checks(settings, checks, names=["python", "hangs"], timeout=0.3))
    finally:
        release.set()
    assert results["python"].status == "ok"
    assert results["hangs"].status == "warn"
    assert results["hangs"].detail == "no answer within 0.3 s"

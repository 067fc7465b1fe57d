"""``shopfloor sandbox exec`` and ``shopfloor sandbox layers`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.diagnostics import run_checks
from shopfloor.runtime import compose
from shopfloor.sandbox._doctor import check_sandbox_backend

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("bwrap_ready")]  # one CLI process per test


def _cli(args: list[str], home: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "shopfloor"), *args],
        input=stdin,
        capture_output=True,
        env={"SHOPFLOOR_HOME": str(home), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


def test_exec_exit_status_is_the_commands(sandbox_settings: Settings, workspace: Path) -> None:
    done = _cli(
        [
            "sandbox",
            "exec",
            "--workspace",
            str(workspace),
            "--memory",
            "128M",
            "--",
            "sh",
            "-c",
            "echo hi; exit 3",
        ],
        sandbox_settings.home,
    )
    assert done.returncode == 3 and done.stdout == b"hi\n", done.stderr


def test_exec_json_and_stdin(sandbox_settings: Settings) -> None:
    done = _cli(
        ["sandbox", "exec", "--json", "--stdin", "--", "wc", "-c"], sandbox_settings.home, stdin=b"12345"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["stdout"].strip() == "5" and result["backend"] == "bwrap" and result["killed_by"] is None


def test_exec_timeout_and_policy_file(sandbox_settings: Settings, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("sandbox:\n  timeout: 0.5\n  memory: 64M\n  pids: 16\n")
    done = _cli(["sandbox", "exec", "--policy", str(policy), "--", "sleep", "10"], sandbox_settings.home)
    assert done.returncode == 137 and b"killed (timeout)" in done.stderr
    policy.write_text("sandbox:\n  memroy: 64M\n")
    bad = _cli(["sandbox", "exec", "--policy", str(policy), "--", "true"], sandbox_settings.home)
    assert bad.returncode == 2 and b"memroy" in bad.stderr


def test_exec_rejects_bad_sizes_and_network(sandbox_settings: Settings) -> None:
    bad = _cli(["sandbox", "exec", "--memory", "lots", "--", "true"], sandbox_settings.home)
    assert bad.returncode == 2 and b"256M or 1G" in bad.stderr
    bad = _cli(["sandbox", "exec", "--network", "example.com", "--", "true"], sandbox_settings.home)
    assert bad.returncode == 2 and b"HOST:PORT" in bad.stderr


def test_layers_json(sandbox_settings: Settings) -> None:
    done = _cli(["sandbox", "layers", "--json"], sandbox_settings.home)
    data = json.loads(done.stdout)
    assert data["backend"] == "bwrap"
    assert {"layer": "seccomp", "ok": True, "detail": "filters build (pyseccomp)"} in data["layers"]


def test_doctor_line(sandbox_settings: Settings) -> None:
    result = check_sandbox_backend(sandbox_settings)
    assert result.data["backend"] == "bwrap" and result.status in ("ok", "warn")
    [line] = run_checks(sandbox_settings, compose(sandbox_settings).checks, names=["sandbox"])
    assert line.detail.startswith("bwrap:")

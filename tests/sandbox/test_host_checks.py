"""`shopfloor doctor`'s isolation lines report the sandbox's own probe, so the two never disagree."""

from __future__ import annotations

import dataclasses
import errno

from shopfloor.config import Settings
from shopfloor.diagnostics import doctor_checks, run_checks
from shopfloor.sandbox import Capabilities, probe_capabilities, sandbox_checks
from shopfloor.sandbox._host_checks import (
    bubblewrap_line,
    cgroups_line,
    landlock_line,
    seccomp_line,
    userns_line,
)

FULL = Capabilities(
    root=True,
    bwrap="/usr/bin/bwrap",
    bwrap_version="bubblewrap 0.8.0",
    userns=None,
    cgroup="cgroup v1 (memory, pids, cpu)",
    seccomp=None,
    landlock_abi=7,
    runsc=None,
    compiler="/usr/bin/cc",
    cgroup_limits=("memory", "cpu", "pids"),
)
LAYERS = ("bubblewrap", "user namespaces", "cgroups", "seccomp", "landlock")


def test_doctor_lines_follow_the_probe_on_this_machine(settings: Settings) -> None:
    checks = doctor_checks()
    for name, check in sandbox_checks().items():
        checks.register(name, check)
    caps = probe_capabilities()
    probed = {line.layer: line.ok for line in caps.lines()}
    results = {result.name: result for result in run_checks(settings, checks, names=list(LAYERS))}
    for layer in LAYERS:
        assert (results[layer].status == "ok") == probed[layer], (layer, results[layer], caps)


def test_a_layer_the_probe_refuses_is_never_ok_in_the_doctor() -> None:
    """The old doctor probed on its own: bwrap as root where the sandbox runs it as a tenant uid,
    cgroup mounts where the sandbox needs a writable memory + pids hierarchy."""
    no_userns = dataclasses.replace(
        FULL, userns="bwrap cannot create namespaces as an unprivileged uid: denied"
    )
    assert bubblewrap_line(no_userns).status == "warn"
    assert "denied" in bubblewrap_line(no_userns).detail
    assert userns_line(no_userns).status == "missing"
    assert "sysctl" in userns_line(no_userns).fix
    assert cgroups_line(dataclasses.replace(FULL, cgroup=None, cgroup_limits=())).status == "missing"
    no_cpu = cgroups_line(dataclasses.replace(FULL, cgroup_limits=("memory", "pids")))
    assert (no_cpu.status, no_cpu.detail) == ("warn", "cgroup v1 (memory, pids, cpu); no cpu limits")
    assert seccomp_line(dataclasses.replace(FULL, seccomp="no libseccomp")).status != "ok"
    off = landlock_line(dataclasses.replace(FULL, landlock_abi=0, landlock_errno=errno.EOPNOTSUPP))
    assert (off.status, off.detail) == ("missing", "built into the kernel but disabled at boot")
    assert landlock_line(dataclasses.replace(FULL, landlock_abi=0, landlock_errno=errno.ENOSYS)).detail == (
        "not available (ENOSYS)"
    )
    for line in (bubblewrap_line, userns_line, cgroups_line, seccomp_line, landlock_line):
        assert line(FULL).status == "ok"

"""The seccomp filter every sandboxed process runs under, compiled once to BPF and handed to bwrap.

Default allow with a deny list: the sandbox already has no capabilities and its own namespaces, so the
filter removes the kernel surfaces that those do not (new namespaces, tracing, keyrings, io_uring, BPF,
module loading) and every socket family but unix (plus inet when the policy allows network: the sandbox's
network namespace has only loopback, and the allow-listing proxy is the only way out).

``allow_unix=False`` (the Landlock backend, which shows the host's file system) also denies creating Unix
sockets, since Landlock cannot stop ``connect()`` to a host socket such as PostgreSQL's; only
``socketpair`` of a stream or seqpacket type stays, whose sockets are connected to each other and can
reach nothing else (asyncio needs it). A datagram pair is denied: ``sendto`` could still name a path.
"""

from __future__ import annotations

import errno
import functools
import os
import socket

__all__ = ["DENIED_SYSCALLS", "seccomp_available", "seccomp_bpf", "seccomp_memfd"]

DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
    "fspick", "mount_setattr", "unshare", "setns", "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "open_by_handle_at", "name_to_handle_at",
    "iopl", "ioperm", "lookup_dcookie", "vhangup", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex",
)  # fmt: skip

_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)
_TIOCSTI = 0x5412
_SOCK_TYPE_MASK = 0xF


def seccomp_available() -> str | None:
    """None when filters can be built here, else the reason."""
    try:
        seccomp_bpf(False)
    except (ImportError, OSError, RuntimeError) as exc:
        return f"seccomp filters cannot be built: {exc} (install libseccomp2 and the pyseccomp package)"
    return None


@functools.cache
def seccomp_bpf(allow_network: bool, allow_unix: bool = True) -> bytes:
    """The filter as raw BPF, built with libseccomp (PyPI ``pyseccomp``)."""
    import pyseccomp as sc  # optional at import time: libseccomp may be missing where sandboxes are not used

    deny = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            continue  # not a syscall on this architecture
    # glibc falls back to clone() on ENOSYS; clone3 passes its flags in memory that BPF cannot inspect.
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _NAMESPACE_FLAGS:
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    flt.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
    allowed = {socket.AF_UNIX} | ({socket.AF_INET, socket.AF_INET6} if allow_network else set())
    for family in range(1, 46):
        if family not in allowed:
            flt.add_rule(deny, "socket", sc.Arg(0, sc.EQ, family))
            flt.add_rule(deny, "socketpair", sc.Arg(0, sc.EQ, family))
    if not allow_unix:
        flt.add_rule(deny, "socket", sc.Arg(0, sc.EQ, socket.AF_UNIX))
        flt.add_rule(
            deny,
            "socketpair",
            sc.Arg(0, sc.EQ, socket.AF_UNIX),
            sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, socket.SOCK_DGRAM),
        )
    if allow_network:
        for family in (socket.AF_INET, socket.AF_INET6):
            flt.add_rule(
                deny,
                "socket",
                sc.Arg(0, sc.EQ, family),
                sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, socket.SOCK_RAW),
            )
    fd = os.memfd_create("seccomp-build")
    with os.fdopen(fd, "w+b") as handle:
        flt.export_bpf(handle)
        handle.flush()
        handle.seek(0)
        return handle.read()


def seccomp_memfd(allow_network: bool, allow_unix: bool = True) -> int:
    """A fresh fd at offset 0 holding the filter, for ``bwrap --seccomp FD`` (caller closes it)."""
    data = seccomp_bpf(allow_network, allow_unix)
    fd = os.memfd_create("shopfloor-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd

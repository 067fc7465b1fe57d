"""The session helper: a small server that runs inside the sandbox and starts commands on request.

The host runs it once per session (``python3 -I -S -c SOURCE CONTROL_FD CONFIG_JSON``) so that later
execs cost one ``posix_spawn`` instead of a new sandbox. It uses the standard library only and runs on
whatever Python 3.9+ the sandbox has. Protocol on the SOCK_SEQPACKET control socket, one JSON object per
message: the host sends ``{"op": "exec", "argv", "env"}`` with three fds (stdin, stdout, stderr) or
``{"op": "kill"}``; the helper answers ``{"exit", "cpu", "maxrss", "error"}`` once the command and every
process it left behind are gone. The helper is PID 1 of the sandbox's PID namespace (bwrap --as-pid-1),
so signals from sandboxed code cannot reach it and orphans are re-parented to it.

In Landlock mode (no namespaces) the helper first confines itself: a network namespace was already made
by the launcher; here it applies a Landlock ruleset and the seccomp filter, then serves.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SYS_SECCOMP = 317
_SYS_LANDLOCK = (444, 445, 446)  # create_ruleset, add_rule, restrict_self
_LANDLOCK_RULE_PATH_BENEATH = 1
_LANDLOCK_RULE_NET_PORT = 2
_SCOPE_ABSTRACT_UNIX = 1 << 0
_SCOPE_SIGNAL = 1 << 1
_FS_FILE = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14)  # execute, write_file, read_file, truncate
_FS_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read_file, read_dir
_FS_ALL_V1 = (1 << 13) - 1
_FS_EXTRA = {2: 1 << 13, 3: 1 << 14, 5: 1 << 15}  # refer, truncate, ioctl_dev
_NET_ALL = (1 << 0) | (1 << 1)  # bind_tcp, connect_tcp (ABI 4+)

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def apply_landlock(read_only: list[str], read_write: list[str], tcp_ports: list[int]) -> None:
    abi = _check(libc.syscall(_SYS_LANDLOCK[0], None, ctypes.c_size_t(0), 1), "landlock ABI")
    handled = _FS_ALL_V1
    for version, bit in _FS_EXTRA.items():
        if abi >= version:
            handled |= bit
    net = _NET_ALL if abi >= 4 else 0
    if abi >= 6:
        # Scoped: no signals to, and no abstract unix sockets of, processes outside this domain.
        attr = struct.pack("QQQ", handled, net, _SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX)
    elif abi >= 4:
        attr = struct.pack("QQ", handled, net)
    else:
        attr = struct.pack("Q", handled)
    buf = ctypes.create_string_buffer(attr)
    ruleset = _check(libc.syscall(_SYS_LANDLOCK[0], buf, ctypes.c_size_t(len(attr)), 0), "landlock ruleset")
    for paths, access in ((read_only, _FS_READ), (read_write, handled)):
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            allowed = access if os.path.isdir(path) else access & _FS_FILE
            rule = ctypes.create_string_buffer(struct.pack("=Qi", allowed, fd))
            _check(
                libc.syscall(_SYS_LANDLOCK[1], ruleset, _LANDLOCK_RULE_PATH_BENEATH, rule, 0), f"rule {path}"
            )
            os.close(fd)
    if net:
        for port in tcp_ports:
            rule = ctypes.create_string_buffer(struct.pack("=QQ", _NET_ALL, port))
            _check(libc.syscall(_SYS_LANDLOCK[1], ruleset, _LANDLOCK_RULE_NET_PORT, rule, 0), f"port {port}")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.syscall(_SYS_LANDLOCK[2], ruleset, 0), "landlock restrict_self")
    os.close(ruleset)


def apply_seccomp(fd: int) -> None:
    program = b""
    while chunk := os.read(fd, 65536):
        program += chunk
    os.close(fd)
    filt = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(filt))
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(
        libc.syscall(_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, 0, ctypes.create_string_buffer(fprog)), "seccomp"
    )


def forward(port: int, channel_fd: int) -> None:
    """Loopback TCP -> the host proxy, so ordinary HTTP(S)_PROXY clients work inside.

    Each accepted connection's fd goes to the host over ``channel_fd`` (a socket pair the host made):
    nothing here opens a Unix socket, which the Landlock mode's seccomp filter forbids.
    """
    os.set_inheritable(channel_fd, False)
    channel = socket.socket(fileno=channel_fd)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:  # an aborted connection must not end the forwarder for the session
                time.sleep(0.01)
                continue
            try:
                socket.send_fds(channel, [b"c"], [client.fileno()])
            except OSError:
                pass
            finally:
                client.close()

    threading.Thread(target=serve, daemon=True).start()


def descendants() -> list[int]:
    me = os.getpid()
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    stat = handle.read()
                parents[int(name)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
    found: list[int] = []
    frontier = {me}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier and pid != me}
        found.extend(frontier)
    return found


def kill_others() -> dict[int, tuple[int, float, int]]:
    """SIGKILL every process of this sandbox but the helper; reap them. Returns pid -> (status, cpu, rss)."""
    reaped: dict[int, tuple[int, float, int]] = {}
    while True:
        if os.getpid() == 1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
        else:
            for pid in descendants():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            while True:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
                if pid == 0:
                    break
                reaped[pid] = (status, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)
        except ChildProcessError:
            return reaped
        if os.getpid() != 1 and not descendants():
            return reaped


def run(control: socket.socket, request: dict[str, object], fds: list[int]) -> dict[str, object]:
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
    try:
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setsid=True)
    except OSError as exc:
        message = f"shopfloor-sandbox: cannot run {argv[0]!r}: {exc.strerror}\n".encode()
        os.write(fds[2], message)
        return {"exit": 127, "cpu": 0.0, "maxrss": 0, "error": str(exc)}
    finally:
        for fd in fds:
            os.close(fd)
    try:
        # The OOM killer must pick the command, never the helper.
        with open(f"/proc/{pid}/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    pidfd = os.pidfd_open(pid)
    selector = selectors.DefaultSelector()
    selector.register(pidfd, selectors.EVENT_READ)
    selector.register(control, selectors.EVENT_READ)
    reaped: dict[int, tuple[int, float, int]] = {}
    try:
        while pid not in reaped:
            for key, _ in selector.select():
                if key.fileobj is control:
                    message = control.recv(65536)
                    reaped.update(kill_others())
                    if not message:
                        sys.exit(0)
                elif key.fd == pidfd and pid not in reaped:
                    try:
                        _, status, usage = os.wait4(pid, 0)
                        reaped[pid] = (status, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)
                    except ChildProcessError:
                        continue
        reaped.update(kill_others())
        status, cpu, rss = reaped[pid]
        code = os.waitstatus_to_exitcode(status)
        return {"exit": 128 - code if code < 0 else code, "cpu": cpu, "maxrss": rss, "error": None}
    finally:
        selector.close()
        os.close(pidfd)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    config = json.loads(sys.argv[2])
    control.set_inheritable(False)
    if config.get("cwd"):
        os.chdir(config["cwd"])
    if config.get("landlock") is not None:
        ports = [int(config["proxy_port"])] if config.get("proxy_fd") is not None else []
        apply_landlock(config["landlock"]["ro"], config["landlock"]["rw"], ports)
    if config.get("seccomp_fd") is not None:
        apply_seccomp(int(config["seccomp_fd"]))
    # Sandboxed code runs as our uid: without this it could read or write our memory through /proc.
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if os.getpid() != 1:
        # Without a PID namespace, orphans must come back to us so that kill_others can find them.
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if config.get("proxy_fd") is not None:
        forward(int(config["proxy_port"]), int(config["proxy_fd"]))
    control.send(json.dumps({"ready": True}).encode())
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1 << 22, 3)
        if not message:
            kill_others()
            return
        for fd in fds:
            os.set_inheritable(fd, False)
        request = json.loads(message)
        if request.get("op") != "exec" or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            continue
        control.send(json.dumps(run(control, request, fds)).encode())


if __name__ == "__main__":
    main()

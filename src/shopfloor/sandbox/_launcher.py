"""The launcher: a tiny C program between the (root) host process and bubblewrap.

The async host must not use ``preexec_fn`` (unsafe with threads), and a Python launcher would cost one
more interpreter start per exec (~10 ms here, a third of the budget), so the launcher is 80 lines of C,
compiled once per host with the system C compiler into the data dir, keyed by the source's hash.

In order it: becomes a child subreaper (so no descendant is ever re-parented outside the sandbox's
accounting), joins the sandbox's cgroups (fds opened by the host), sets RLIMIT_AS / FSIZE / NOFILE,
drops every group and the uid to the tenant's (before any namespace exists, so bubblewrap runs
unprivileged and the sandbox's root is never host root), asks to be killed when the host dies, and
execs its arguments (bubblewrap).

argv: UID GID AS FSIZE NOFILE CGFDS PROGRAM ARGS...   (CGFDS: comma-separated fds or "-"; limit 0 = keep)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from shopfloor.errors import SandboxUnavailableError

__all__ = ["LAUNCHER_SOURCE", "build_launcher", "launcher_argv"]

LAUNCHER_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "shopfloor-launcher: %s: %s\n", what, strerror(errno));
  _exit(125);
}

static void limit(int resource, const char *text) {
  unsigned long long value = strtoull(text, NULL, 10);
  if (value == 0) return;
  struct rlimit rl = {value, value};
  if (setrlimit(resource, &rl) != 0) die("setrlimit");
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: %s UID GID AS FSIZE NOFILE CGFDS PROGRAM ARGS...\n", argv[0]);
    return 125;
  }
  uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
  gid_t gid = (gid_t)strtoul(argv[2], NULL, 10);
  pid_t parent = getppid();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) die("PR_SET_CHILD_SUBREAPER");
  if (strcmp(argv[6], "-") != 0) {
    char *list = argv[6], *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      int fd = atoi(tok);
      char pid[32];
      int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
      if (write(fd, pid, (size_t)n) != n) die("joining cgroup");
      close(fd);
    }
  }
  limit(RLIMIT_AS, argv[3]);
  limit(RLIMIT_FSIZE, argv[4]);
  limit(RLIMIT_NOFILE, argv[5]);
  if (geteuid() != 0 && (getuid() != uid || getgid() != gid)) {
    errno = EPERM;
    die("changing uid without root");
  }
  if (geteuid() == 0 && (uid != 0 || gid != 0)) {
    if (setgroups(0, NULL) != 0) die("setgroups");
    if (setresgid(gid, gid, gid) != 0) die("setresgid");
    if (setresuid(uid, uid, uid) != 0) die("setresuid");
    if (getuid() != uid || geteuid() != uid || getgid() != gid) { errno = EPERM; die("uid drop"); }
  }
  /* Credentials changed above, which clears the parent-death signal: set it only now. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die("PR_SET_PDEATHSIG");
  if (getppid() != parent) _exit(125);
  execv(argv[7], argv + 7);
  die(argv[7]);
  return 125;
}
"""


def build_launcher(directory: Path) -> Path:
    """The compiled launcher under ``directory``, compiling it once (blocking: run in a thread)."""
    digest = hashlib.sha256(LAUNCHER_SOURCE.encode()).hexdigest()[:16]
    target = directory / f"launcher-{digest}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise SandboxUnavailableError(
            "the sandbox launcher needs a C compiler once, to build itself: none found (cc, gcc, clang). "
            "Fix: apt-get install gcc (or run scripts/bootstrap.sh)"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = directory / f"launcher-{digest}.c"
    source.write_text(LAUNCHER_SOURCE)
    partial = directory / f".launcher-{digest}.{os.getpid()}"
    result = subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(partial), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SandboxUnavailableError(f"compiling the sandbox launcher failed:\n{result.stderr}")
    os.chmod(partial, 0o755)
    os.replace(partial, target)
    return target


def launcher_argv(
    launcher: Path,
    *,
    uid: int,
    gid: int,
    address_space: int,
    file_size: int,
    nofile: int,
    cgroup_fds: list[int],
    argv: list[str],
) -> list[str]:
    fds = ",".join(str(fd) for fd in cgroup_fds) or "-"
    return [str(launcher), str(uid), str(gid), str(address_space), str(file_size), str(nofile), fds, *argv]

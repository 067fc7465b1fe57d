"""The launcher: a tiny C program between the (root) host process and bubblewrap.

The async host must not use ``preexec_fn`` (unsafe with threads), and a Python launcher would cost one
more interpreter start per exec (~10 ms here, a third of the budget), so the launcher is 80 lines of C,
compiled once per host with the system C compiler into the data dir, keyed by the source's hash.

In order it: becomes a child subreaper (so no descendant is ever re-parented outside the sandbox's
accounting), joins the sandbox's cgroups (writing 0 to fds the host opened: v1 "tasks", v2
"cgroup.procs"), optionally makes private namespaces
(Landlock mode), stages the host paths to mount in a private mount namespace
where the unprivileged bwrap can reach them, sets RLIMIT_AS / FSIZE / NOFILE,
drops every group and the uid to the tenant's (before any namespace exists, so bubblewrap runs
unprivileged and the sandbox's root is never host root), asks to be killed when the host dies, forks
and execs its arguments (bubblewrap), then reaps until no descendant is left and exits with the
program's status (128 + signal when it was killed).

With private namespaces (Landlock mode: no bubblewrap to make them) it unshares the network (only
loopback, up), IPC, mount and PID namespaces while still root; the forked child is PID 1 of the new PID
namespace and, still root, mounts a fresh /proc (showing only the sandbox's processes) before it drops
to the tenant's uid; the parent drops too, right after the fork.

argv: UID GID AS FSIZE NOFILE CGFDS FLAGS STAGEDIR N PATH_1 .. PATH_N PROGRAM ARGS...
(CGFDS: comma-separated fds or "-"; a limit of 0 keeps the current one; FLAGS "n" makes the private
namespaces above, "-" nothing; PATH_i is bind-mounted at STAGEDIR/i.)
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
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

static void private_mounts(void) {
  if (unshare(CLONE_NEWNS) != 0) die("unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("making mounts private");
}

/* Each host path is bind-mounted at DIR/<index> in the private mount namespace, by root, so the
   unprivileged bwrap can reach paths whose parents the tenant may not traverse (/root/...). */
static void stage(const char *dir, int count, char **paths) {
  if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") != 0) die("staging tmpfs");
  for (int i = 0; i < count; i++) {
    char target[4096];
    struct stat st;
    snprintf(target, sizeof target, "%s/%d", dir, i);
    if (stat(paths[i], &st) != 0) die(paths[i]);
    if (S_ISDIR(st.st_mode)) {
      if (mkdir(target, 0755) != 0) die("staging dir");
    } else {
      int made = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (made < 0) die("staging file");
      close(made);
    }
    if (mount(paths[i], target, NULL, MS_BIND | MS_REC, NULL) != 0) die(paths[i]);
  }
}

/* A network namespace with only loopback, made while still privileged (Landlock mode). */
static void private_network_and_ipc(void) {
  if (unshare(CLONE_NEWNET | CLONE_NEWIPC) != 0) die("unshare(CLONE_NEWNET | CLONE_NEWIPC)");
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) die("reading lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) die("bringing lo up");
  close(s);
}

static void drop(uid_t uid, gid_t gid) {
  if (geteuid() != 0 || (uid == 0 && gid == 0)) return;
  if (setgroups(0, NULL) != 0) die("setgroups");
  if (setresgid(gid, gid, gid) != 0) die("setresgid");
  if (setresuid(uid, uid, uid) != 0) die("setresuid");
  if (getuid() != uid || geteuid() != uid || getgid() != gid) {
    errno = EPERM;
    die("uid drop");
  }
}

int main(int argc, char **argv) {
  if (argc < 11) {
    fprintf(stderr, "usage: %s UID GID AS FSIZE NOFILE CGFDS FLAGS DIR N PATHS.. PROGRAM ARGS\n", argv[0]);
    return 125;
  }
  int staged = atoi(argv[9]);
  if (staged < 0 || 10 + staged >= argc) {
    fprintf(stderr, "shopfloor-launcher: bad count of staged paths\n");
    return 125;
  }
  uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
  gid_t gid = (gid_t)strtoul(argv[2], NULL, 10);
  pid_t parent = getppid();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) die("PR_SET_CHILD_SUBREAPER");
  if (strcmp(argv[6], "-") != 0) {
    char *save = NULL;
    for (char *tok = strtok_r(argv[6], ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      int fd = atoi(tok);
      if (write(fd, "0", 1) != 1) die("joining cgroup"); /* 0: the writing task itself */
      close(fd);
    }
  }
  int namespaces = strchr(argv[7], 'n') != NULL;
  if (namespaces) private_network_and_ipc();
  if (staged > 0 || namespaces) private_mounts();
  if (staged > 0) stage(argv[8], staged, argv + 10);
  if (namespaces && unshare(CLONE_NEWPID) != 0) die("unshare(CLONE_NEWPID)");
  limit(RLIMIT_AS, argv[3]);
  limit(RLIMIT_FSIZE, argv[4]);
  limit(RLIMIT_NOFILE, argv[5]);
  if (geteuid() != 0 && (getuid() != uid || getgid() != gid)) {
    errno = EPERM;
    die("changing uid without root");
  }
  if (!namespaces) {
    drop(uid, gid);
    /* Credentials changed above, which clears the parent-death signal: set it only now. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die("PR_SET_PDEATHSIG");
    if (getppid() != parent) _exit(125);
  }
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    if (namespaces) {
      /* PID 1 of the new namespace: this /proc shows the sandbox's processes only. */
      if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mounting /proc");
      drop(uid, gid);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die("PR_SET_PDEATHSIG");
    if (getppid() == 1) _exit(125);
    execv(argv[10 + staged], argv + 10 + staged);
    die(argv[10 + staged]);
  }
  if (namespaces) {
    drop(uid, gid);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die("PR_SET_PDEATHSIG");
    if (getppid() != parent) _exit(125);
  }
  /* As the subreaper, reap the program and everything re-parented to us until nothing is left: no
     process of the sandbox outlives the launcher, and none is left a zombie for the host's init. */
  close_range(0, ~0U, 0);
  int status = 0, result = 125;
  for (;;) {
    pid_t done = waitpid(-1, &status, 0);
    if (done < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (done == child) result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return result;
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
    private_namespaces: bool = False,
    stage_dir: Path | None = None,
    staged: list[Path] | None = None,
) -> list[str]:
    def joined(fds: list[int] | None) -> str:
        return ",".join(str(fd) for fd in fds or []) or "-"

    staged = staged or []
    return [
        str(launcher),
        str(uid),
        str(gid),
        str(address_space),
        str(file_size),
        str(nofile),
        joined(cgroup_fds),
        "n" if private_namespaces else "-",
        str(stage_dir) if stage_dir is not None and staged else "-",
        str(len(staged)),
        *(str(path) for path in staged),
        *argv,
    ]

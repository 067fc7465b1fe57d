"""A git repository the controller reads: fetched into a bare mirror, read one commit at a time.

The repository is untrusted input. ``git`` runs with no prompt, no hooks, no ``ext::`` transport and a
timeout; a commit's files are read with ``git archive`` into a temporary directory through
``tarfile``'s ``data`` filter (no links out of it, no device files, no absolute paths); what a
repository URL carries as credentials (``https://user:token@host``) is never shown.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shopfloor.errors import GitOpsError

__all__ = ["Commit", "GitSource", "shown_url"]

#: git's own limits for one command, and for a commit's files read into the checkout
GIT_TIMEOUT_S = 120.0
MAX_CHECKOUT_BYTES = 256 << 20
_REVISION = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")
_SAFE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}\Z")


def shown_url(url: str) -> str:
    """``url`` without the user name and password it may carry (they are credentials)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, kw_only=True)
class Commit:
    revision: str
    author: str
    subject: str
    at: float


class GitSource:
    """One repository (a local path or any URL ``git`` fetches) mirrored under ``cache``."""

    def __init__(self, url: str, cache: Path, *, branch: str | None = None) -> None:
        if branch is not None and not _SAFE_REF.match(branch):
            raise GitOpsError(f"--branch {branch[:80]!r}: not a branch name")
        if url.startswith("-") or url.lower().startswith("ext::"):
            raise GitOpsError(f"repository {shown_url(url)!r}: not a repository URL or path")
        local = Path(url).expanduser()
        self.url = str(local.resolve()) if local.exists() else url
        self.branch = branch
        self.shown = shown_url(url)
        self.key = hashlib.sha256(f"{self.url}\0{branch or ''}".encode()).hexdigest()[:24]
        self.mirror = cache / self.key

    def _git(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.mirror.parent),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "LC_ALL": "C",
        }
        command = [
            "git",
            "-c", "protocol.ext.allow=never",
            "-c", "core.hooksPath=" + os.devnull,
            "-c", "protocol.file.allow=always",
            *args,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, cwd=cwd or self.mirror, env=env, capture_output=True, timeout=GIT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise GitOpsError(f"git {args[0]} of {self.shown} took over {GIT_TIMEOUT_S:.0f} s") from exc
        except FileNotFoundError as exc:
            raise GitOpsError("git is not installed (apt-get install git)") from exc
        if check and done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().replace(self.url, self.shown)
            raise GitOpsError(f"git {args[0]} of {self.shown} failed: {message[-400:]}")
        return done

    def fetch(self) -> str:
        """Bring the mirror up to the repository's branch (force-pushes included); its head revision."""
        if not (self.mirror / "HEAD").exists():
            self.mirror.mkdir(parents=True, exist_ok=True)
            self._git("init", "--bare", "-q", str(self.mirror), cwd=self.mirror.parent)
        ref = f"refs/heads/{self.branch}" if self.branch else "HEAD"
        self._git("fetch", "-q", "--force", "--no-tags", "--", self.url, f"+{ref}:refs/shopfloor/head")
        return self.resolve("refs/shopfloor/head")

    def resolve(self, rev: str) -> str:
        done = self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        revision = done.stdout.decode().strip()
        if done.returncode != 0 or not _REVISION.match(revision):
            raise GitOpsError(f"{self.shown} has no commit {rev[:80]!r}")
        return revision

    def commit(self, revision: str) -> Commit:
        out = self._git("log", "-1", "--format=%an%x00%s%x00%ct", revision).stdout.decode(errors="replace")
        author, subject, at = [*out.strip().split("\0"), "", "", "0"][:3]
        return Commit(revision=revision, author=author[:200], subject=subject[:200], at=float(at or 0))

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Whether ``older`` is in ``newer``'s history (False after a force-push rewrote it, or when
        the mirror no longer has ``older``)."""
        return self._git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def verify(self, revision: str, allowed_signers: Path) -> str:
        """The signer of ``revision`` when its SSH signature verifies against ``allowed_signers``
        (git's format: ``principal key-type key``); GitOpsError otherwise."""
        done = self._git(
            "-c", "gpg.format=ssh",
            "-c", f"gpg.ssh.allowedSignersFile={allowed_signers}",
            "verify-commit", "--raw", revision,
            check=False,
        )  # fmt: skip
        text = done.stderr.decode(errors="replace")
        if done.returncode != 0:
            reason = text.strip().splitlines()[-1] if text.strip() else "the commit is not signed"
            raise GitOpsError(
                f"commit {revision[:12]} of {self.shown} is not signed by an allowed signer "
                f"({allowed_signers}): {reason[:200]}"
            )
        found = re.search(r'Good "git" signature for (\S+)', text)
        return found.group(1) if found else "an allowed signer"

    def checkout(self, revision: str, path: str, dest: Path) -> Path:
        """The files of ``revision`` under ``path`` (the whole tree for ``""``), written into ``dest``;
        the directory that holds them."""
        if not _REVISION.match(revision):
            raise GitOpsError(f"not a commit id: {revision[:80]!r}")
        args = ["archive", "--format=tar", revision]
        if path:
            args += ["--", path]
        done = self._git(*args, check=False)
        if done.returncode != 0:
            raise GitOpsError(f"commit {revision[:12]} of {self.shown} has no {path!r}: check --path")
        if len(done.stdout) > MAX_CHECKOUT_BYTES:
            raise GitOpsError(
                f"commit {revision[:12]} of {self.shown}: {path or 'the tree'} holds over "
                f"{MAX_CHECKOUT_BYTES >> 20} MiB; point --path at the desired state"
            )
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
            tar.extractall(dest, filter="data")
        return dest / path if path else dest

"""pip and npm for skill dependencies, run in the sandbox: never as root, network only to the index.

The environment directory is the sandbox's workspace (so the sandbox hands it to the install tenant's
uid, ``INSTALL_TENANT``) and is also mounted read-write at its own host path, where the skill's runs
will find it. The index is the operator's: pip's configuration files and ``PIP_*`` variables of the
Shopfloor process (index-url, extra-index-url, find-links, cert, no-index) and npm's ``registry``,
read here and passed as flags; inside, pip reads no configuration (``PIP_CONFIG_FILE=/dev/null``)
and npm none but its global file. The sandbox lets connections through only to those hosts.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shopfloor.config import Settings
from shopfloor.errors import SandboxError, SkillDependencyError
from shopfloor.sandbox import (
    Command,
    ExecRequest,
    Mount,
    NetworkRule,
    SandboxPolicy,
    run_sandboxed,
    select_backend,
)

__all__ = ["INSTALL_TENANT", "NpmRegistry", "PackageIndex", "run_install"]

#: The sandbox tenant installs run as: one uid, never root, that owns an environment only while it is built.
INSTALL_TENANT = "shopfloor-skill-install"
PYPI = "https://pypi.org/simple"
NPM = "https://registry.npmjs.org/"
_PYPI_FILES = NetworkRule(host="files.pythonhosted.org", port=443)
_PIP_GLOBAL = (Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"))
_NPM_GLOBAL = (Path("/usr/etc/npmrc"), Path("/etc/npmrc"))


def _rule(url: str) -> NetworkRule | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return NetworkRule(
        host=parts.hostname.lower(), port=parts.port or (443 if parts.scheme == "https" else 80)
    )


def _local(location: str) -> Path | None:
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(parts.path)
    return Path(location) if not parts.scheme and location.startswith("/") else None


@dataclass(frozen=True, kw_only=True)
class PackageIndex:
    """Where pip may fetch wheels from. ``index_url`` None: ``no-index`` (find-links only)."""

    index_url: str | None = PYPI
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    cert: str | None = None

    @classmethod
    def from_pip_config(
        cls, environ: Mapping[str, str], home: Path, *, global_files: Sequence[Path] = _PIP_GLOBAL
    ) -> PackageIndex:
        """pip's own precedence: global files, user files, ``PIP_CONFIG_FILE``, then ``PIP_*`` variables;
        ``[install]`` over ``[global]``."""
        files = [*global_files, home / ".pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
        if environ.get("PIP_CONFIG_FILE") and environ["PIP_CONFIG_FILE"] != os.devnull:
            files.append(Path(environ["PIP_CONFIG_FILE"]))
        values: dict[str, str] = {}
        for file in files:
            parser = configparser.RawConfigParser()
            try:
                parser.read(file)
            except configparser.Error as exc:
                raise SkillDependencyError(f"{file}: unreadable pip configuration: {exc}") from exc
            for section in ("global", "install"):
                if parser.has_section(section):
                    values.update({key.replace("_", "-"): value for key, value in parser.items(section)})
        for key in ("index-url", "extra-index-url", "find-links", "cert", "no-index"):
            variable = "PIP_" + key.upper().replace("-", "_")
            if variable in environ:
                values[key] = environ[variable]
        no_index = values.get("no-index", "").strip().lower() in ("1", "true", "yes", "on")
        return cls(
            index_url=None if no_index else values.get("index-url", PYPI).strip() or PYPI,
            extra_index_urls=() if no_index else tuple(values.get("extra-index-url", "").split()),
            find_links=tuple(values.get("find-links", "").split()),
            cert=values.get("cert", "").strip() or None,
        )

    def pip_flags(self) -> list[str]:
        flags = ["--index-url", self.index_url] if self.index_url else ["--no-index"]
        for url in self.extra_index_urls:
            flags += ["--extra-index-url", url]
        for location in self.find_links:
            flags += ["--find-links", location]
        return [*flags, *(["--cert", self.cert] if self.cert else [])]

    def network(self) -> tuple[NetworkRule, ...]:
        locations = [*([self.index_url] if self.index_url else []), *self.extra_index_urls, *self.find_links]
        rules = {rule for url in locations if (rule := _rule(url)) is not None}
        if any(rule.host == "pypi.org" for rule in rules):
            rules.add(_PYPI_FILES)  # PyPI's index links to its files on another host
        return tuple(sorted(rules, key=str))

    def mounts(self) -> tuple[Mount, ...]:
        indexes = [*([self.index_url] if self.index_url else []), *self.extra_index_urls]
        # A local simple index links to its files relatively (ROOT/simple/NAME/ -> ROOT/files/): show ROOT.
        paths = [p.parent for url in indexes if (p := _local(url)) is not None]
        paths += [p for location in self.find_links if (p := _local(location)) is not None]
        if self.cert is not None and not self.cert.startswith(("/etc/ssl/", "/etc/ca-certificates")):
            paths.append(Path(self.cert))
        return tuple(Mount(host_path=p, sandbox_path=str(p)) for p in dict.fromkeys(paths) if p.exists())

    def key(self) -> bytes:
        return "\n".join([*self.pip_flags()]).encode()


@dataclass(frozen=True, kw_only=True)
class NpmRegistry:
    url: str = NPM

    @classmethod
    def from_npm_config(
        cls, environ: Mapping[str, str], home: Path, *, global_files: Sequence[Path] = _NPM_GLOBAL
    ) -> NpmRegistry:
        """``registry`` from npm's global and user files, then ``NPM_CONFIG_REGISTRY`` (later wins)."""
        url = NPM
        for file in (*global_files, home / ".npmrc"):
            try:
                lines = file.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "registry":
                    url = value.strip()
        url = environ.get("NPM_CONFIG_REGISTRY") or environ.get("npm_config_registry") or url
        return cls(url=url)

    def network(self) -> tuple[NetworkRule, ...]:
        rule = _rule(self.url)
        return () if rule is None else (rule,)


async def run_install(
    argv: Sequence[str],
    *,
    environment: Path,
    settings: Settings,
    what: str,
    network: tuple[NetworkRule, ...] = (),
    mounts: Sequence[Mount] = (),
    env: dict[str, str] | None = None,
) -> None:
    """Run one install command in the sandbox with ``environment`` writable at its own path."""
    # The index hosts come from the operator's pip / npm configuration, never from the skill, and
    # package mirrors commonly live on private addresses: the proxy may connect to them. npm fetches
    # many tarballs at once, hence the higher connection and rate caps than an agent's sandbox gets.
    policy = SandboxPolicy(
        network=network,
        memory=2 << 30,
        pids=256,
        timeout=900.0,
        disk=2 << 30,
        nofile=1024,
        network_private=True,
        egress_connections=64,
        egress_rate=200.0,
    )
    try:
        if select_backend(policy, settings).name == "none" and os.geteuid() == 0:
            raise SkillDependencyError(
                f"{what}: refused: the sandbox backend is 'none' and this process is root, so the "
                "installer would run as root; set sandbox.backend to a confining backend"
            )
        request = ExecRequest(
            policy=policy,
            command=Command(argv=tuple(argv), env=env),
            workspace=environment,
            tenant=INSTALL_TENANT,
            mounts=(*mounts, Mount(host_path=environment, sandbox_path=str(environment), read_only=False)),
        )
        result = await run_sandboxed(request, settings=settings)
    except SandboxError as exc:
        raise SkillDependencyError(f"{what}: the sandbox could not run the installer: {exc}") from exc
    if result.killed_by is not None:
        raise SkillDependencyError(f"{what}: stopped by the sandbox ({result.killed_by} limit)")
    if result.exit_code != 0:
        output = (result.stderr or result.stdout).decode("utf-8", errors="replace").strip()
        tail = "\n".join(output.splitlines()[-15:])
        raise SkillDependencyError(f"{what} failed (exit {result.exit_code}):\n{tail}")

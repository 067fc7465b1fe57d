"""The index installs use is the operator's pip and npm configuration, turned into flags, network rules
and read-only mounts; nothing of it comes from a skill."""

from __future__ import annotations

from pathlib import Path

from shopfloor.sandbox import Mount, NetworkRule
from shopfloor.skills._install import NpmRegistry, PackageIndex


def _home(tmp_path: Path, pip_conf: str) -> Path:
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(pip_conf)
    return home


def test_pip_configuration_files_then_variables(tmp_path: Path) -> None:
    local = tmp_path / "mirror"
    (local / "simple").mkdir(parents=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    home = _home(
        tmp_path,
        "[global]\nindex-url = https://mirror.example:8443/simple\n"
        f"extra-index-url = file://{local}/simple\ncert = /opt/ca/corp.pem\n"
        "[install]\nfind-links = /nowhere\n",
    )
    index = PackageIndex.from_pip_config({"PIP_FIND_LINKS": str(wheels)}, home, global_files=())
    assert index == PackageIndex(
        index_url="https://mirror.example:8443/simple",
        extra_index_urls=(f"file://{local}/simple",),
        find_links=(str(wheels),),
        cert="/opt/ca/corp.pem",
    )
    assert index.pip_flags() == [
        "--index-url",
        "https://mirror.example:8443/simple",
        "--extra-index-url",
        f"file://{local}/simple",
        "--find-links",
        str(wheels),
        "--cert",
        "/opt/ca/corp.pem",
    ]
    assert index.network() == (NetworkRule(host="mirror.example", port=8443),)
    # A local simple index is shown with its parent (its links point at ../files/); the missing cert is not.
    assert index.mounts() == (
        Mount(host_path=local, sandbox_path=str(local)),
        Mount(host_path=wheels, sandbox_path=str(wheels)),
    )


def test_defaults_to_pypi_and_its_file_host(tmp_path: Path) -> None:
    index = PackageIndex.from_pip_config({}, tmp_path / "nobody", global_files=())
    assert index.pip_flags() == ["--index-url", "https://pypi.org/simple"]
    assert index.network() == (
        NetworkRule(host="files.pythonhosted.org", port=443),
        NetworkRule(host="pypi.org", port=443),
    )


def test_no_index_drops_every_index(tmp_path: Path) -> None:
    home = _home(tmp_path, "[global]\nextra-index-url = https://extra.example/simple\n")
    index = PackageIndex.from_pip_config(
        {"PIP_NO_INDEX": "true", "PIP_FIND_LINKS": "/srv/wheels"}, home, global_files=()
    )
    assert index.pip_flags() == ["--no-index", "--find-links", "/srv/wheels"]
    assert index.network() == ()


def test_npm_registry_from_configuration_then_variables(tmp_path: Path) -> None:
    (tmp_path / ".npmrc").write_text("registry=https://npm.example/\n//npm.example/:_authToken=secret\n")
    assert NpmRegistry.from_npm_config({}, tmp_path, global_files=()).network() == (
        NetworkRule(host="npm.example", port=443),
    )
    overridden = NpmRegistry.from_npm_config(
        {"NPM_CONFIG_REGISTRY": "http://10.0.0.5:4873/"}, tmp_path, global_files=()
    )
    assert overridden.url == "http://10.0.0.5:4873/"
    assert overridden.network() == (NetworkRule(host="10.0.0.5", port=4873),)

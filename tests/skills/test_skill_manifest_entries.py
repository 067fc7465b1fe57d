"""Only signed regular files may be in a signed skill: anything else added after signing is refused, named."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from shopfloor.errors import SkillError, SkillSignatureError
from shopfloor.skills import KeyPair, TrustPolicy, open_skill, sign_skill


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers


def _empty_dir(path: Path) -> None:
    path.mkdir()


def _symlink(path: Path) -> None:
    path.symlink_to("/etc/hostname")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_fifo, "a FIFO"),
        (_socket, "a socket"),
        (_device, "a device"),
        (_empty_dir, "an empty directory"),
        (_symlink, "symbolic links"),
    ],
    ids=["fifo", "socket", "device", "empty-dir", "symlink"],
)
@pytest.mark.parametrize("where", ["top", "scripts"])
def test_an_entry_that_is_not_a_signed_file_fails_verification(
    skill_dir: Path,
    key: KeyPair,
    policy: TrustPolicy,
    make: Callable[[Path], None],
    words: str,
    where: str,
) -> None:
    sign_skill(skill_dir, key.private_path)
    parent = skill_dir if where == "top" else skill_dir / "scripts"
    make(parent / "planted")
    with pytest.raises(SkillError) as info:
        open_skill(skill_dir, policy)
    message = str(info.value)
    assert "planted" in message and words in message


def test_a_nested_empty_directory_is_named(skill_dir: Path, key: KeyPair, policy: TrustPolicy) -> None:
    sign_skill(skill_dir, key.private_path)
    (skill_dir / "assets" / "deep").mkdir(parents=True)
    with pytest.raises(SkillSignatureError, match=r"added: assets/deep/ \(an empty directory"):
        open_skill(skill_dir, policy)


def test_a_skill_with_an_empty_directory_cannot_be_signed(skill_dir: Path, key: KeyPair) -> None:
    (skill_dir / "assets").mkdir()
    with pytest.raises(SkillSignatureError, match=r"empty directories cannot be signed \(assets\)"):
        sign_skill(skill_dir, key.private_path)
    assert not (skill_dir / "shopfloor.sig").exists()

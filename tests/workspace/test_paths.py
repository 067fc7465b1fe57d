from __future__ import annotations

import pytest

from shopfloor.errors import WorkspacePathError
from shopfloor.workspace._paths import glob_regex, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b.txt", "a/b.txt"),
        ("./a//b/", "a/b"),
        ("", ""),
        (".", ""),
        ("dir/./x", "dir/x"),
        ("naïve é.txt", "naïve é.txt"),
    ],
)
def test_normalize_accepts_relative_paths(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("a\x00b", "NUL"),
        ("x" * 256, "longer than 255"),
        ("é" * 128, "longer than 255"),  # 256 bytes in UTF-8
        ("/".join(["abcdefgh"] * 500), "longer than 4096"),
    ],
)
def test_normalize_refuses_escapes_and_malformed_paths(raw: str, why: str) -> None:
    with pytest.raises(WorkspacePathError, match=why):
        normalize(raw)


def test_root_is_refused_where_a_file_is_needed() -> None:
    with pytest.raises(WorkspacePathError, match="file path is required"):
        normalize("./", allow_root=False)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "d/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "d/e/a.py", True),
        ("d/**", "d/e/a.py", True),
        ("d/?.txt", "d/a.txt", True),
        ("d/?.txt", "d/ab.txt", False),
        ("[ab].md", "b.md", True),
        ("[!ab].md", "b.md", False),
        ("a+b.txt", "a+b.txt", True),
    ],
)
def test_glob(pattern: str, path: str, matches: bool) -> None:
    assert glob_regex(pattern).fullmatch(path) is matches

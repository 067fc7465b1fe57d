"""Tests never touch the real home directory: not ~, not ~/.shopfloor, not to install a model."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from home_support import REAL_SETTINGS, model_for_tests, snapshot
from shopfloor.config import Settings, load_settings
from shopfloor.models import Catalogue, CatalogueEntry, ModelPart


def test_home_and_data_dir_are_this_tests_own(tmp_path: Path) -> None:
    assert Path.home() == tmp_path / "home" == Path(os.environ["HOME"])
    assert load_settings().home == tmp_path / "shopfloor-home"


def test_installed_models_are_read_in_place_without_writing(tmp_path: Path) -> None:
    """The old fixture ran `install_model` against the real data dir, which takes a lock file there."""
    real = Settings(home=tmp_path / "real-home")
    content = b"GGUF tiny model"
    entry = CatalogueEntry(
        name="tiny",
        description="a few bytes",
        parts=(ModelPart(package="shopfloor-testmodel", version="1.0.0", member="tiny.gguf"),),
        size=len(content),
        sha256="ab" * 32,
    )
    real.models_dir.mkdir(parents=True)
    (real.models_dir / "tiny.gguf").write_bytes(content)
    (real.models_dir / "tiny.json").write_text(json.dumps({"name": "tiny", "sha256": entry.sha256}))
    before = snapshot(real.home)
    path = model_for_tests(
        "tiny", installed=real, scratch=Settings(home=tmp_path / "scratch"), catalogue=Catalogue([entry])
    )
    assert path == real.models_dir / "tiny.gguf"
    assert snapshot(real.home) == before
    assert not (tmp_path / "scratch").exists()


def test_the_embedded_model_fixture_leaves_the_real_data_dir_as_it_was(
    embedded_model: Callable[[str], Path],
) -> None:
    """With the default model installed (`make test` installs it), the fixture reads it in place."""
    real = REAL_SETTINGS.models_dir
    if not (real / "qwen2.5-coder-0.5b.json").is_file():
        pytest.skip(f"qwen2.5-coder-0.5b is not installed in {real}")
    before = snapshot(real)
    assert embedded_model("qwen2.5-coder-0.5b") == real / "qwen2.5-coder-0.5b.gguf"
    assert snapshot(real) == before

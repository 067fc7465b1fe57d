"""Settings: defaults, then the config file, then the environment; clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.config import Settings, load_settings
from shopfloor.errors import ConfigError


def test_defaults_follow_shopfloor_home(tmp_path: Path) -> None:
    settings = load_settings({"SHOPFLOOR_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.db_url == f"sqlite:///{tmp_path / 'shopfloor.db'}"
    assert settings.models_dir == tmp_path / "models"
    assert settings.workspace_url == f"file://{tmp_path / 'workspaces'}"
    assert settings.models.default == "local:qwen2.5-coder-0.5b"
    assert settings.trust.require_signed is True


def test_home_defaults_to_dot_shopfloor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings({}).home == tmp_path / ".shopfloor"


def test_config_file_in_home(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'database_url = "postgresql://postgres@127.0.0.1:5432/test"\n'
        "[openai]\nbase_url = 'http://127.0.0.1:8000/v1'\ntimeout = 5\n"
        "[sandbox]\nuid_base = 300000\n"
    )
    settings = load_settings({"SHOPFLOOR_HOME": str(tmp_path)})
    assert settings.db_url == "postgresql://postgres@127.0.0.1:5432/test"
    assert settings.openai.base_url == "http://127.0.0.1:8000/v1"
    assert settings.openai.timeout == 5.0
    assert settings.openai.max_retries == 3
    assert settings.sandbox.uid_base == 300000


def test_shopfloor_config_names_another_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text("[models]\ncontext_length = 8192\n")
    settings = load_settings({"SHOPFLOOR_HOME": str(tmp_path / "home"), "SHOPFLOOR_CONFIG": str(other)})
    assert settings.models.context_length == 8192


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[openai]\nbase_url = 'http://file/v1'\napi_key = 'from-file'\n")
    env = {
        "SHOPFLOOR_HOME": str(tmp_path),
        "OPENAI_BASE_URL": "http://short/v1",
        "SHOPFLOOR_OPENAI__API_KEY": "from-env",
        "SHOPFLOOR_MODELS__THREADS": "3",
        "SHOPFLOOR_MODEL": "openai:gpt-x",
        "SHOPFLOOR_DATABASE_URL": "postgresql://db/x",
        "SHOPFLOOR_TELEMETRY__RECORD_CONTENT": "true",
    }
    settings = load_settings(env)
    assert settings.openai.base_url == "http://short/v1"
    assert settings.openai.api_key == "from-env"
    assert settings.models.threads == 3
    assert settings.models.default == "openai:gpt-x"
    assert settings.database_url == "postgresql://db/x"
    assert settings.telemetry.record_content is True


def test_empty_environment_values_are_ignored(tmp_path: Path) -> None:
    settings = load_settings({"SHOPFLOOR_HOME": str(tmp_path), "OPENAI_API_KEY": ""})
    assert settings.openai.api_key is None


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[openai\nbase_url = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings({"SHOPFLOOR_HOME": str(tmp_path)})
    message = str(info.value)
    assert str(tmp_path / "config.toml") in message
    assert "invalid TOML" in message
    assert "line 1" in message


def test_bad_value_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[openai]\ntimeout = 'soon'\n")
    with pytest.raises(ConfigError) as info:
        load_settings({"SHOPFLOOR_HOME": str(tmp_path)})
    message = str(info.value)
    assert "openai.timeout" in message
    assert str(tmp_path / "config.toml") in message


def test_bad_environment_value_and_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sandbox\.uid_base"):
        load_settings({"SHOPFLOOR_HOME": str(tmp_path), "SHOPFLOOR_SANDBOX__UID_BASE": "many"})
    with pytest.raises(ConfigError, match=r"openai\.base_ur"):
        load_settings({"SHOPFLOOR_HOME": str(tmp_path), "SHOPFLOOR_OPENAI__BASE_UR": "http://x"})


@pytest.mark.parametrize("value", ["-1", "1000000000000", "lots"])
def test_a_gc_threshold_out_of_range_names_the_setting(tmp_path: Path, value: str) -> None:
    # 10**12 would reach gc.set_threshold as an OverflowError when the executor starts
    with pytest.raises(ConfigError, match=r"runtime\.gc_threshold"):
        load_settings({"SHOPFLOOR_HOME": str(tmp_path), "SHOPFLOOR_RUNTIME__GC_THRESHOLD": value})


def test_override_below_a_plain_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="database_url is not a section"):
        env = {"SHOPFLOOR_DATABASE_URL": "sqlite:///x", "SHOPFLOOR_DATABASE_URL__X": "1"}
        load_settings({"SHOPFLOOR_HOME": str(tmp_path), **env})


def test_settings_are_plain_validated_values(tmp_path: Path) -> None:
    settings = load_settings({"SHOPFLOOR_HOME": str(tmp_path)})
    assert isinstance(settings, Settings)
    home = settings.ensure_home()
    assert home.is_dir()

"""``[gateway.routes]`` in config.toml: typos and missing values are errors naming the key."""

from __future__ import annotations

import pytest
from inference_support import KeyAuthenticator
from prometheus_client import CollectorRegistry

from shopfloor.config import load_settings
from shopfloor.errors import ConfigError
from shopfloor.gateway.inference import build_inference_app


def _settings(tmp_path, text: str):
    config = tmp_path / "config.toml"
    config.write_text(text)
    return load_settings({"SHOPFLOOR_HOME": str(tmp_path / "home"), "SHOPFLOOR_CONFIG": str(config)})


def test_routes_load_from_config_toml(tmp_path) -> None:
    settings = _settings(
        tmp_path,
        """
[gateway.routes.gpt]
upstreams = [
  { url = "http://127.0.0.1:9/v1", model = "gpt-4o-mini", api_key = "secret:OPENAI", weight = 2 },
  { url = "http://127.0.0.1:10/v1", model = "gpt-4o-mini" },
]
balance = "least-busy"
fallbacks = ["local"]

[gateway.routes.local]
upstreams = [{ kind = "model", model = "test" }]

[gateway.aliases]
fast = "gpt"
""",
    )
    route = settings.gateway.routes["gpt"]
    assert (route.balance, route.fallbacks, route.upstreams[0].weight) == ("least-busy", ["local"], 2)
    seen = []

    def resolve(name: str) -> str:
        seen.append(name)
        return "sk-resolved"

    build_inference_app(
        settings,
        authenticator=KeyAuthenticator(),
        registry=CollectorRegistry(),
        resolve_secret=resolve,
        meter=False,
    )
    assert seen == ["OPENAI"]
    with pytest.raises(ConfigError, match="secret store"):
        build_inference_app(
            settings, authenticator=KeyAuthenticator(), registry=CollectorRegistry(), meter=False
        )


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[gateway.routes.a]\nupstreams = [{ url = "http://x/v1", model = "m", wieght = 2 }]', "wieght"),
        ('[gateway.routes.a]\nupstreams = [{ model = "m" }]', "needs url"),
        ("[gateway.routes.a]\nupstreams = []", "gateway.routes.a.upstreams"),
        (
            '[gateway.routes.a]\nupstreams = [{ url = "http://x/v1", model = "m" }]\nbalance = "random"',
            "balance",
        ),
    ],
)
def test_bad_route_settings_name_the_key(tmp_path, text: str, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        _settings(tmp_path, text)


def test_a_fallback_or_alias_to_no_route_is_refused(tmp_path) -> None:
    settings = _settings(
        tmp_path,
        '[gateway.routes.a]\nupstreams = [{ url = "http://x/v1", model = "m" }]\nfallbacks = ["b"]\n',
    )
    with pytest.raises(ConfigError, match="fallbacks: 'b' is no route"):
        build_inference_app(
            settings, authenticator=KeyAuthenticator(), registry=CollectorRegistry(), meter=False
        )
    settings = _settings(
        tmp_path,
        '[gateway.routes.a]\nupstreams = [{ url = "http://x/v1", model = "m", kind = "grpc" }]\n',
    )
    with pytest.raises(ConfigError, match="unknown kind 'grpc'"):
        build_inference_app(
            settings, authenticator=KeyAuthenticator(), registry=CollectorRegistry(), meter=False
        )


def test_an_upstream_is_named_without_the_credentials_of_its_url(tmp_path) -> None:
    from shopfloor.gateway.inference import OpenAIBackend

    settings = _settings(
        tmp_path,
        '[gateway.routes.a]\nupstreams = [{ url = "http://bob:hunter2@127.0.0.1:9/v1", model = "m" }]\n',
    )
    app = build_inference_app(
        settings, authenticator=KeyAuthenticator(), registry=CollectorRegistry(), meter=False
    )
    (backend,) = app.routes.backends
    assert isinstance(backend, OpenAIBackend)
    assert backend.name == "http://127.0.0.1:9/v1#m"

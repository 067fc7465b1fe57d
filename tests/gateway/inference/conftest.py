"""Fixtures of the gateway tests: fake upstreams and a gateway in front of them, both on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import openai
import pytest
from inference_support import KEY, FakeUpstream, KeyAuthenticator, serve
from prometheus_client import CollectorRegistry

from shopfloor.config import GatewaySettings, Settings, load_settings
from shopfloor.gateway.inference import InferenceApp, build_inference_app, standalone_app
from shopfloor.security import Admission


class Gateway:
    """A running gateway: its URL, app, metrics registry, and an ``openai`` client for it."""

    def __init__(self, url: str, app: InferenceApp, registry: CollectorRegistry) -> None:
        self.url = url
        self.app = app
        self.registry = registry

    def client(self, key: str = KEY, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **options)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})


@pytest.fixture
def upstreams() -> Iterator[Callable[[str], tuple[FakeUpstream, str]]]:
    """Start fake upstreams: ``upstreams(name) -> (fake, base URL ending in /v1)``."""
    with ExitStack() as stack:

        def start(name: str) -> tuple[FakeUpstream, str]:
            fake = FakeUpstream(name=name)
            url = stack.enter_context(serve(fake))
            return fake, f"{url}/v1"

        yield start


@pytest.fixture
def gateway() -> Iterator[Callable[..., Gateway]]:
    """Start a gateway: ``gateway(routes={...}, aliases=..., admission=..., **gateway settings)``."""
    with ExitStack() as stack:

        def start(
            *,
            admission: Admission | None = None,
            make_model: Callable[[str], Any] | None = None,
            **options: Any,
        ) -> Gateway:
            options.setdefault("serve_local_models", False)
            options.setdefault("meter_flush_interval", 0.05)
            options.setdefault("retry_base_delay", 0.01)
            # the test's own SHOPFLOOR_HOME (root conftest), where embedded models are found
            settings = Settings(home=load_settings().home, gateway=GatewaySettings.model_validate(options))
            settings.ensure_home()
            registry = CollectorRegistry()
            app = build_inference_app(
                settings,
                authenticator=KeyAuthenticator(),
                registry=registry,
                admission=admission,
                make_model=make_model,
            )
            url = stack.enter_context(serve(standalone_app(app, registry)))
            return Gateway(url, app, registry)

        yield start

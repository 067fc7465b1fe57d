"""The docs connector's research tool routed: a connector over two collections (two chapters of the shipped
Python Tutorial corpus, real MiniLM) searches those the question names, deep questions ask the ``hard``
model route, the run's budget degrades depth, and the decision is in the tool's result."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shopfloor.connectors import Secrets
from shopfloor.connectors._docs import DocsConnector
from shopfloor.connectors.docs import DocCollections, DocIndex, MiniLM, collection_path
from shopfloor.spec import CollectionSpec, ConnectorSpec, DocsConnectorSpec, ResearchModelsSpec, ResearchSpec
from shopfloor.tools import Budget, Tool, ToolContext, ToolServices

pytestmark = pytest.mark.slow  # the embedding model runs on the CPU

CORPUS = Path(__file__).resolve().parents[3] / "examples" / "researcher" / "corpus" / "tutorial"
PLENTY = Budget(tokens_left=100_000, seconds_left=3_600.0, step_seconds=900.0)


class Model:
    """A model at its seam, named: plans one sub-question, writes the second passage's first long sentence."""

    def __init__(self, name: str, asked: list[str]) -> None:
        self.name = name
        self.asked = asked

    async def __call__(
        self, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str:
        props = schema["properties"]
        if "sub_questions" in props:
            self.asked.append(f"{self.name}:plan")
            return json.dumps({"sub_questions": ["virtual environment"]})
        if "claims" in props:
            self.asked.append(f"{self.name}:write")
            block = prompt.split("[1] (", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
            return json.dumps({"claims": [{"sentence": block.replace("\n", " ")[:200], "source": 1}]})
        raise AssertionError(f"unexpected schema {schema}")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("home")
    minilm = MiniLM()
    for name, page in (("errors", "errors.html"), ("venvs", "venv.html")):
        pages = root / "pages" / name
        pages.mkdir(parents=True)
        shutil.copy(CORPUS / page, pages / page)
        with DocIndex(collection_path(root, name), minilm) as index:
            assert index.add([pages], base=pages).added == 1
    return root


@pytest.fixture
async def connector(home: Path) -> AsyncIterator[DocsConnector]:
    docs = DocsConnectorSpec(
        collection="errors",
        description="Errors and exceptions",
        keywords=["exception", "try statement"],
        collections=[CollectionSpec(collection="venvs", keywords=["virtual environment", "pip"])],
        research=ResearchSpec(models=ResearchModelsSpec(hard="function:hard"), report_dir=None),
    )
    made = DocsConnector(
        ConnectorSpec(name="docs", docs=docs), Secrets(None), collections=DocCollections.under(home)
    )
    yield made
    await made.aclose()


async def research(connector: DocsConnector, question: str, budget: Budget, asked: list[str]) -> Any:
    routes: list[str] = []

    async def ask_model(
        route: str, prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
    ) -> str:
        routes.append(route)
        return await Model(route.partition(":")[2], asked)(prompt, schema=schema, system=system)

    tools: dict[str, Tool] = {tool.name: tool for tool in await connector.tools()}
    services = ToolServices(ask=Model("easy", asked), ask_model=ask_model, budget=budget)
    ctx = ToolContext(run_id="run-r", step=1, call_id="c1", idempotency_key="run-r:1", services=services)
    return await tools["docs__research"].call({"question": question}, ctx)


async def test_a_question_naming_a_collection_searches_only_that_one(connector: DocsConnector) -> None:
    asked: list[str] = []
    out = await research(connector, "How does pip install a package?", PLENTY, asked)
    route = out["route"]
    assert (route["depth"], route["model"], route["model_ref"]) == ("shallow", "easy", None)
    assert route["collections"] == ["venvs"] and "keyword 'pip'" in route["collections_reason"]
    assert {r["doc"] for r in out["results"]} == {"venv.html"} and asked == ["easy:write"]
    # no collection named: both are searched, merged by score
    both = await research(connector, "When does the finally clause run?", PLENTY, [])
    assert both["route"]["collections"] == [] and "all searched" in both["route"]["collections_reason"]
    assert {r["id"].partition(":")[0] for r in both["results"]} == {"errors", "venvs"}


async def test_a_deep_question_asks_the_hard_route_unless_the_budget_cannot_fit_it(
    connector: DocsConnector,
) -> None:
    asked: list[str] = []
    question = "Compare the try statement's else clause and a virtual environment"
    deep = await research(connector, question, PLENTY, asked)
    assert deep["depth"] == "deep" and deep["route"]["model_ref"] == "function:hard"
    assert asked == ["hard:plan", "hard:write"], "planned and written by the hard route"
    asked.clear()
    poor = Budget(tokens_left=1_000, seconds_left=3_600.0, step_seconds=900.0)
    shallow = await research(connector, question, poor, asked)
    assert shallow["depth"] == "shallow" and shallow["route"]["model"] == "easy"
    assert shallow["route"]["degraded"].startswith(
        "a deep pass needs about 3900 tokens and the run has 1000 left"
    )
    assert asked[0] == "easy:write"


async def test_a_sum_is_answered_direct_without_searching(connector: DocsConnector) -> None:
    asked: list[str] = []
    out = await research(connector, "What is 6 * 7?", PLENTY, asked)
    assert out["depth"] == "direct" and out["answer"].startswith("42 ") and not out["results"] and not asked

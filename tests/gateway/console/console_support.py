"""Helpers of the console tests: signing in with a real form post, hostile data in the real stores."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx

from shopfloor.config import Settings
from shopfloor.runtime import RunRecord, RunStore
from shopfloor.workspace import Workspaces

#: markup a model, a tool or a file name could hold; none of it may run or render as markup
SCRIPT = "<script>window.__pwned = 1; document.title = 'pwned'</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'
HOSTILE = f"{SCRIPT}{IMG}<b>bold</b>"
#: a 1x1 PNG (the analyst's charts are PNG files)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc000000301010018dd8db40000000049454e44ae426082"
)


def csrf_of(html: str, field: str = "csrf") -> str:
    found = re.search(rf'name="{field}" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: httpx.Client, key: str) -> str:
    """Sign in through the form; the session's CSRF token (the client keeps the cookie)."""
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    answer = client.post(
        "/console/login",
        data={"api_key": key, "login_csrf": csrf_of(page.text, "login_csrf"), "next": "/console/"},
    )
    assert answer.status_code == 303, answer.text
    landing = client.get("/console/approvals")
    assert landing.status_code == 200, landing.text
    return csrf_of(landing.text)


def hostile_run(settings: Settings, *, status: str = "completed") -> str:
    """A run whose task, output, error, caller, agent and stop reason hold markup, in the real store."""
    store = RunStore.open(settings.db_url)
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    try:
        store.create(
            RunRecord(
                run_id=run_id,
                agent="evil<i>agent</i>",
                spec_path="/nowhere/agent.yaml",
                release_digest="sha256:" + "0" * 64,
                release="evil<i>agent</i>@<script>1</script>",
                track="candidate",
                caller=HOSTILE,
                status=status,  # type: ignore[arg-type]
                task=HOSTILE,
                output=f"The answer: {HOSTILE}",
                stop_reason=HOSTILE,
                error=HOSTILE,
                created_at=time.time(),
                started_at=time.time() - 2,
                finished_at=time.time(),
            )
        )
    finally:
        store.close()
    return run_id


async def hostile_workspace(settings: Settings, name: str = "reports") -> tuple[str, str]:
    """A workspace with a report (Markdown holding raw HTML and a javascript: link), a chart, and a
    file whose name is markup; two commits (their ids)."""
    repo = Workspaces.from_settings(settings)
    try:
        ws = repo.workspace(name)
        view = await ws.open()
        await view.write("report.md", "# Sales\n\nplain first\n")
        first = await view.commit("first draft")
        view = await ws.open()
        await view.write(
            "report.md",
            f"# Sales <script>x</script>\n\n{SCRIPT}\n\n{IMG}\n\n[click](javascript:window.__pwned=3)\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n",
        )
        await view.write("charts/sales.png", PNG)
        await view.write("<img src=x onerror=window.__pwned=4>.txt", HOSTILE)
        second = await view.commit(f"final {SCRIPT}")
        return first, second
    finally:
        repo.close()


def evaluation(
    settings: Settings,
    *,
    model: str,
    scores: list[float],
    run_ids: list[str] | None = None,
    agent_digest: str = "sha256:" + "3" * 64,
) -> str:
    """A finished evaluation of the suite ``qa`` in the harness's real store: one item per score
    (``exact`` passes at 0.5), its summary as the harness computes it, of the agent at ``agent_digest``."""
    from shopfloor.evals import EvalRecord, EvalStore, summarise

    store = EvalStore.open(settings.db_url)
    eval_id = f"ev-{uuid.uuid4().hex[:12]}"
    try:
        items = [
            (f"q{i}", 0, {"input": f"question {i} <script>x</script>", "tags": []})
            for i in range(len(scores))
        ]
        store.create(
            EvalRecord(
                eval_id=eval_id,
                suite="qa",
                suite_path="/suites/qa.yaml",
                suite_digest="sha256:" + "1" * 64,
                dataset_digest="sha256:" + "2" * 64,
                agent="ticker",
                agent_path="/agents/ticker",
                agent_digest=agent_digest,
                model=model,
                repeat=1,
                executor_id=None,
                status="running",
                config={},
                created_at=time.time(),
            ),
            items,
        )
        for i, score in enumerate(scores):
            run_id = run_ids[i] if run_ids and i < len(run_ids) else None
            metrics = [{"name": "exact", "value": score, "passed": score >= 0.5, "detail": {}}]
            store.update_item(eval_id, f"q{i}", 0, status="done", metrics=metrics, run_id=run_id)
        store.update(
            eval_id, status="done", summary=summarise(store.items(eval_id), []), finished_at=time.time()
        )
    finally:
        store.close()
    return eval_id


def release_of(settings: Settings, agent_dir: Path, version: str, *, actor: str = "alice") -> str:
    """A signed release of the agent at ``agent_dir`` (with a key this machine trusts) and the finished
    evaluations of its files attached, as ``shopfloor release create`` makes it; its agent digest."""
    from shopfloor.cli._releases import eval_finder
    from shopfloor.ops.releases import Releases
    from shopfloor.runtime import compose
    from shopfloor.skills import generate_key

    key = settings.home / "keys" / "releaser.key"
    if not key.is_file():
        generate_key("releaser", key.parent)
    services = compose(settings)
    try:
        with Releases(services) as releases:
            made, _ = releases.create(
                agent_dir, key=key, actor=actor, version=version, evaluations=eval_finder(services)
            )
            return made.agent_digest
    finally:
        services.close()

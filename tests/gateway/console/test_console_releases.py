"""Releases and deployments through the console, against a real server on loopback and the real registry:
the releases with their verification state, one release's diff against another version and its attached
evaluations, deploy / canary / promote / roll back from an agent's page (CSRF, audited as the person), and
each page and action refused to a role without its permission or on another team's agent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_support import HOSTILE, SCRIPT, evaluation, release_of, sign_in
from gateway_support import Keys, LiveServer

from shopfloor.config import Settings
from shopfloor.gateway import build_server
from shopfloor.ops.releases import Deployments, Releases
from shopfloor.runtime import compose
from shopfloor.security import KeyStore, build_audit_log


@pytest.fixture
def url(settings: Settings, keys: Keys, live: list[LiveServer]) -> Iterator[str]:
    live.append(LiveServer(build_server(settings, worker=False)))
    yield live[-1].url


def _deployment(settings: Settings, agent: str) -> tuple[str, str | None, int]:
    services = compose(settings)
    try:
        with Releases(services) as releases:
            found = Deployments(releases).get(agent)
            return found.stable, found.candidate, found.canary
    finally:
        services.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_deploy_canary_promote_and_roll_back_from_the_console(
    url: str, keys: Keys, settings: Settings, agent_dir: Path
) -> None:
    release_of(settings, agent_dir, "1.0.0")
    (agent_dir / "agent_tools.py").write_text((agent_dir / "agent_tools.py").read_text() + "# 2.0\n")
    spec = agent_dir / "agent.yaml"
    spec.write_text(spec.read_text().replace("max_steps: 10", "max_steps: 12"))
    services = compose(settings)
    try:
        source = services.load_spec(agent_dir).digest
    finally:
        services.close()
    # an evaluation of these files: attached to the release made of them
    evaluated = evaluation(settings, model="small", scores=[0.0, 1.0], agent_digest=source)
    digest = release_of(settings, agent_dir, "2.0.0", actor=HOSTILE)
    with httpx.Client(base_url=url, timeout=30) as person:
        assert person.get("/console").headers["location"] == "/console/"
        sign_in(person, keys.admin)
        index = person.get("/console/releases")
        assert index.status_code == 200
        assert index.text.count("verified</span>") == 2 and "ticker@1.0.0" in index.text
        assert "No agent is deployed" in index.text
        assert SCRIPT not in index.text and "&lt;script&gt;" in index.text  # who made it: escaped
        # One release: what changed since 1.0.0, its digest, its files.
        shown = person.get("/console/releases/ticker/2.0.0", params={"against": "1.0.0"})
        assert shown.status_code == 200 and digest in shown.text
        assert "spec.limits.max_steps: 10 -&gt; 12" in shown.text
        assert "file agent_tools.py: changed" in shown.text
        assert f'href="/console/evals/{evaluated}"' in shown.text and "passed</span>" in shown.text
        assert "No evaluation was attached" in person.get("/console/releases/ticker/1.0.0").text
        page = person.get("/console/releases/ticker")
        assert "Not deployed" in page.text and 'class="deploy"' in page.text
        csrf = _csrf(page.text)
        # The metrics of one release (its runs: none yet), and of one that does not exist.
        metrics = person.get("/console/metrics", params={"release": "ticker@2.0.0"})
        assert metrics.status_code == 200 and "0 runs in the last 24 hours of ticker@2.0.0" in metrics.text
        assert '<option value="ticker@2.0.0" selected>' in metrics.text
        assert person.get("/console/metrics", params={"release": "ticker@7"}).status_code == 400
        # Without the session's token nothing changes.
        refused = person.post("/console/releases/ticker/deploy", data={"version": "1.0.0"})
        assert refused.status_code == 403
        assert "not deployed" in person.get("/console/releases/ticker").text.lower()
        deployed = person.post(
            "/console/releases/ticker/deploy", data={"csrf": csrf, "version": "1.0.0", "reason": "first"}
        )
        assert deployed.status_code == 303 and deployed.headers["location"] == "/console/releases/ticker"
        assert _deployment(settings, "ticker") == ("1.0.0", None, 0)
        bad = person.post(
            "/console/releases/ticker/deploy", data={"csrf": csrf, "version": "2.0.0", "canary": "half"}
        )
        assert bad.status_code == 400 and "whole percentage" in bad.text
        canary = person.post(
            "/console/releases/ticker/deploy", data={"csrf": csrf, "version": "2.0.0", "canary": "30"}
        )
        assert canary.status_code == 303 and _deployment(settings, "ticker") == ("1.0.0", "2.0.0", 30)
        page = person.get("/console/releases/ticker").text
        assert "2.0.0 to 30% of callers" in page and 'class="promote"' in page
        # what the canary evaluator would decide now, from both releases' runs (none yet)
        assert "wait: 0 of the" in page and "ticker@2.0.0 (candidate)" in page
        promoted = person.post("/console/releases/ticker/promote", data={"csrf": csrf})
        assert promoted.status_code == 303 and _deployment(settings, "ticker") == ("2.0.0", None, 0)
        back = person.post("/console/releases/ticker/rollback", data={"csrf": csrf, "reason": "too slow"})
        assert back.status_code == 303 and _deployment(settings, "ticker") == ("1.0.0", None, 0)
        history = person.get("/console/releases/ticker").text
        for action in ("deploy", "canary", "promote", "rollback"):
            assert f"<td>{action}</td>" in history, action
        assert "too slow" in history
        # An unknown version: refused, saying which.
        unknown = person.post("/console/releases/ticker/deploy", data={"csrf": csrf, "version": "9.9"})
        assert unknown.status_code == 400 and "no release &#39;ticker@9.9&#39;" in unknown.text
    with build_audit_log(settings) as audit:
        kinds = [(e.kind, e.actor) for e in audit.entries() if e.kind.startswith("release.")]
    admin = next(actor for kind, actor in kinds if kind == "release.deploy")
    assert admin.startswith("key:")  # the person signed in, not the server
    assert [k for k, a in kinds if a == admin] == [
        "release.deploy",
        "release.canary",
        "release.promoted",
        "release.rolled_back",
    ]


def test_release_pages_ask_their_permissions_and_the_agent_team(
    url: str, keys: Keys, settings: Settings, agent_dir: Path
) -> None:
    spec = agent_dir / "agent.yaml"
    spec.write_text(spec.read_text().replace("permissions:\n", "permissions:\n  team: research\n"))
    release_of(settings, agent_dir, "1.0.0")
    store = KeyStore.open(settings.db_url)
    try:
        ours = store.create("mlops research", role="mlops-engineer", team="research", created_by="t")[1]
        theirs = store.create("mlops ops", role="mlops-engineer", team="ops", created_by="t")[1]
    finally:
        store.close()
    base = url
    with (
        httpx.Client(base_url=base, timeout=30) as developer,
        httpx.Client(base_url=base, timeout=30) as other,
        httpx.Client(base_url=base, timeout=30) as owner,
    ):
        # An ai-developer holds no releases:* at all: no page, no action, no link.
        dev_csrf = sign_in(developer, keys.developer)
        assert 'href="/console/releases"' not in developer.get("/console/approvals").text
        for path in ("/console/releases", "/console/releases/ticker", "/console/releases/ticker/1.0.0"):
            answer = developer.get(path)
            assert answer.status_code == 403 and "releases:read" in answer.text, path
        form = {"csrf": dev_csrf, "version": "1.0.0"}
        denied = developer.post("/console/releases/ticker/deploy", data=form)
        assert denied.status_code == 403 and "releases:deploy" in denied.text
        # An mlops engineer of another team: the release is not listed, its pages and actions refused.
        other_csrf = sign_in(other, theirs)
        assert "ticker@1.0.0" not in other.get("/console/releases").text
        assert other.get("/console/releases/ticker").status_code == 403
        assert other.get("/console/releases/ticker/1.0.0").status_code == 403
        taken = other.post("/console/releases/ticker/deploy", data={"csrf": other_csrf, "version": "1.0.0"})
        assert taken.status_code == 403
        # The agent's own team deploys it.
        owner_csrf = sign_in(owner, ours)
        assert "ticker@1.0.0" in owner.get("/console/releases").text
        done = owner.post("/console/releases/ticker/deploy", data={"csrf": owner_csrf, "version": "1.0.0"})
        assert done.status_code == 303
    assert _deployment(settings, "ticker") == ("1.0.0", None, 0)


def test_a_release_whose_signer_is_no_longer_trusted_shows_why(
    url: str, keys: Keys, settings: Settings, agent_dir: Path
) -> None:
    release_of(settings, agent_dir, "1.0.0")
    for public in (settings.home / "keys").glob("*.pub"):
        public.unlink()  # the signer's key is no longer trusted on this machine
    with httpx.Client(base_url=url, timeout=30) as person:
        csrf = sign_in(person, keys.admin)
        shown = person.get("/console/releases/ticker/1.0.0").text
        assert "does not verify" in shown and "ticker@1.0.0" in shown
        refused = person.post("/console/releases/ticker/deploy", data={"csrf": csrf, "version": "1.0.0"})
        assert refused.status_code >= 400 and "ticker@1.0.0" in refused.text
    services = compose(settings)
    try:
        with Releases(services) as releases:
            assert Deployments(releases).store.deployment("ticker") is None
    finally:
        services.close()


def test_the_runs_list_names_each_runs_release_and_cost(
    keys: Keys, live: list[LiveServer], agent_dir: Path
) -> None:
    from shopfloor.config import load_settings
    from shopfloor.runtime import RunRecord, RunStore

    settings = load_settings()
    settings.ensure_home()
    # USD per million input and output tokens of the agent's model
    prices = '[telemetry.prices]\n"function:agent_tools:script" = [1000.0, 2000.0]\n'
    (settings.home / "config.toml").write_text(prices)
    settings = load_settings()
    digest = release_of(settings, agent_dir, "1.0.0")
    store = RunStore.open(settings.db_url)
    try:
        for run_id, release_digest in (("released-run", digest), ("unreleased-run", "sha256:" + "9" * 64)):
            store.create(
                RunRecord(
                    run_id=run_id,
                    agent="ticker",
                    spec_path=str(agent_dir / "agent.yaml"),
                    release_digest=release_digest,
                    caller="someone",
                    status="completed",
                    task="ticks=1",
                    input_tokens=1000,
                    output_tokens=500,
                    created_at=1.0 if run_id == "released-run" else 2.0,
                )
            )
    finally:
        store.close()
    live.append(LiveServer(build_server(settings, worker=False)))
    with httpx.Client(base_url=live[-1].url, timeout=30) as person:
        sign_in(person, keys.admin)
        rows = person.get("/console/runs/rows").text
    row = {chunk.split('"', 1)[0]: chunk for chunk in rows.split('<tr data-run="')[1:]}
    assert "<code>ticker@1.0.0</code>" in row["released-run"] and "$2.0000" in row["released-run"]
    # a run of files no release holds: its digest; its model is its spec's, priced the same
    assert "<code>sha256:999999999999</code>" in row["unreleased-run"] and "$2.0000" in row["unreleased-run"]

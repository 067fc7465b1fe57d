"""The console over HTTP against a real server on loopback: sign-in sessions (cookie flags, expiry,
revocation, sign-out), CSRF, security headers, escaping of hostile data, permissions per page."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_support import (
    HOSTILE,
    IMG,
    SCRIPT,
    csrf_of,
    evaluation,
    hostile_run,
    hostile_workspace,
    sign_in,
)
from gateway_support import Keys, LiveServer

import shopfloor.skills
from shopfloor.config import Settings, load_settings
from shopfloor.gateway import CONSOLE_PERMISSIONS, build_server
from shopfloor.gateway.console import CSP
from shopfloor.security import PRESET_ROLES, KeyStore, build_audit_log


@pytest.fixture
def url(settings: Settings, keys: Keys, live: list[LiveServer]) -> Iterator[str]:
    live.append(LiveServer(build_server(settings, worker=False)))
    yield live[-1].url


def test_sign_in_opens_a_server_side_session_and_sign_out_ends_it(
    url: str, keys: Keys, settings: Settings
) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        root = client.get("/")
        assert root.status_code == 303 and root.headers["location"] == "/console/"
        page = client.get("/console/runs?status=running")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/login?next=/console/runs%3Fstatus%3Drunning"
        form = client.get("/console/login")
        token = csrf_of(form.text, "login_csrf")
        # A wrong key: refused, audited, never echoed.
        wrong = client.post("/console/login", data={"api_key": "sf_nope_" + "A" * 40, "login_csrf": token})
        assert wrong.status_code == 401 and "not accepted" in wrong.text and "sf_nope_" not in wrong.text
        assert "sf_console=" not in wrong.headers.get("set-cookie", "")
        # The login form's own token is required (login CSRF).
        forged = client.post("/console/login", data={"api_key": keys.admin, "login_csrf": "made-up"})
        assert forged.status_code == 403
        signed = client.post(
            "/console/login",
            data={"api_key": keys.admin, "login_csrf": token, "next": "/console/runs?status=running"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/console/runs?status=running"
        cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("sf_console="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/", "max-age=28800"} <= flags
        assert "secure" not in flags  # plain http on loopback; https gets Secure
        assert keys.admin not in cookie
        runs = client.get("/console/runs")
        assert runs.status_code == 200 and "<h1>Runs</h1>" in runs.text
        csrf = csrf_of(runs.text)
        # The refused sign-in is in the audit log, as the console shows it (filtered by kind).
        audit = client.get("/console/audit", params={"kind": "authentication.failed"}).text
        assert audit.count("<td>authentication.failed</td>") == 1 and "sf_nope_" not in audit
        # Sign-out needs the session's CSRF token.
        assert client.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
        assert client.get("/console/runs").status_code == 200
        out = client.post("/console/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
        session = cookie.split(";")[0].split("=", 1)[1]
    # The old cookie opens nothing any more.
    with httpx.Client(base_url=url, timeout=30, cookies={"sf_console": session}) as replay:
        assert replay.get("/console/runs").status_code == 303
    # An open redirect is not possible through `next`.
    with httpx.Client(base_url=url, timeout=30) as client:
        token = csrf_of(client.get("/console/login").text, "login_csrf")
        answer = client.post(
            "/console/login", data={"api_key": keys.admin, "login_csrf": token, "next": "//evil.example/x"}
        )
        assert answer.headers["location"] == "/console/"
    with build_audit_log(settings) as audit:
        kinds = [e.kind for e in audit.entries()]
    assert "authentication.failed" in kinds and "authentication.succeeded" in kinds


def test_a_revoked_key_ends_its_sessions(url: str, settings: Settings) -> None:
    store = KeyStore.open(settings.db_url)
    try:
        made, key = store.create("temp", role="viewer", created_by="test")
        with httpx.Client(base_url=url, timeout=30) as client:
            sign_in(client, key)
            assert client.get("/console/runs").status_code == 200
            store.revoke(made.key_id)
            assert client.get("/console/runs").status_code == 303
            assert (
                client.get("/console/runs/rows").status_code == 401
            )  # a fragment: the script signs in again
    finally:
        store.close()


def test_every_answer_carries_the_security_headers(url: str, keys: Keys) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for answer in (
            client.get("/"),
            client.get("/console/login"),
            client.get("/console/static/console.js"),
        ):
            assert answer.headers["content-security-policy"] == CSP
            assert (
                "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
            )
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["x-content-type-options"] == "nosniff"
        assert client.get("/console/static/console.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/console/static/..%2Fconsole.py").status_code == 404
        sign_in(client, keys.admin)
        page = client.get("/console/runs")
        assert page.headers["cache-control"] == "no-store"
        # no inline script or style anywhere in a page: scripts come from /console/static only
        assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/console/static/console.js" defer>']
        assert (
            " style=" not in page.text
            and "<style" not in page.text
            and " on" not in page.text.split("<main")[0]
        )


def test_hostile_run_and_files_are_shown_as_text(url: str, keys: Keys, settings: Settings) -> None:
    run_id = hostile_run(settings, status="failed")
    first, second = asyncio.run(hostile_workspace(settings))
    spec = f"name: evil\ninstructions: |\n  {SCRIPT}\nmodel: test\n"
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        assert api.post("/v1/agents", json={"spec": spec}).status_code == 201
    with httpx.Client(base_url=url, timeout=30) as client:
        sign_in(client, keys.admin)
        pages = [
            client.get("/console/runs"),
            client.get("/console/runs/rows"),
            client.get(f"/console/runs/{run_id}"),
            client.get(f"/console/runs/{run_id}/live"),
            client.get("/console/workspaces/reports"),
            client.get("/console/workspaces/reports/file", params={"path": "report.md"}),
            client.get("/console/workspaces/reports/diff", params={"a": first, "b": second}),
            client.get("/console/audit"),
            client.get("/console/"),
            client.get("/console/agents"),
            client.get("/console/agents/evil"),
        ]
        for page in pages:
            assert page.status_code == 200, (page.url, page.text)
            assert SCRIPT not in page.text and IMG not in page.text and "<b>bold</b>" not in page.text, (
                page.url
            )
            assert 'href="javascript' not in page.text.lower(), page.url
        run_page = pages[2].text
        assert "&lt;script&gt;window.__pwned = 1;" in run_page and "evil&lt;i&gt;agent&lt;/i&gt;" in run_page
        assert "@&lt;script&gt;1&lt;/script&gt; (candidate track)" in run_page  # the run's release, as text
        assert "&lt;img src=x onerror=window.__pwned=4&gt;.txt" in pages[4].text  # a file name
        diff = pages[6].text  # side by side: the old first line beside the new one, additions after
        assert '<tr class="row-chg">' in diff and '<tr class="row-add">' in diff
        assert "<pre># Sales</pre>" in diff and "<pre># Sales &lt;script&gt;x&lt;/script&gt;</pre>" in diff
        assert "Binary or too long" in diff  # the chart
        assert "instructions: |\n  &lt;script&gt;window.__pwned = 1;" in pages[-1].text  # the spec's text
        home = pages[-3].text  # the role's home: the failure among the last runs, by status
        assert "The last 1 runs" in home and f"/console/runs/{run_id}" in home and "Failed recently" in home
        (by_status,) = _charts(home)  # bars the charting library draws, the counts in a table beside
        assert by_status["kind"] == "bars" and by_status["series"][0]["label"] == "runs"
        counts = dict(zip(by_status["labels"], by_status["series"][0]["y"], strict=True))
        assert counts["failed"] == 1 and counts["completed"] == 0
        assert '<tr><th scope="row">failed</th><td>1</td></tr>' in home and "<svg" not in home
        report = pages[5].text
        # Markdown rendered (a heading, a table), its raw HTML shown as text, the javascript: link not a link.
        assert "<table>" in report and "<h1>Sales &lt;script&gt;x&lt;/script&gt;</h1>" in report
        assert "<p>[click](javascript:window.__pwned=3)</p>" in report
        chart = client.get(
            "/console/workspaces/reports/raw", params={"path": "charts/sales.png", "rev": second}
        )
        assert chart.headers["content-type"] == "image/png" and chart.content.startswith(b"\x89PNG")
        assert "sandbox" in chart.headers.get_list("content-security-policy")[0]
        text = client.get("/console/workspaces/reports/raw", params={"path": "report.md"})
        assert text.headers["content-type"] == "application/octet-stream"
        assert text.headers["content-disposition"].startswith("attachment")
        missing = client.get("/console/runs/no-such-run")
        assert missing.status_code == 404 and "no-such-run" in missing.text
        assert HOSTILE not in client.get("/console/runs/" + "%3Cscript%3E").text


def test_evaluations_are_listed_shown_and_compared(url: str, keys: Keys, settings: Settings) -> None:
    run_id = hostile_run(settings)
    a = evaluation(settings, model="small", scores=[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], run_ids=[run_id])
    b = evaluation(settings, model="large", scores=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    with httpx.Client(base_url=url, timeout=30) as client:
        sign_in(client, keys.admin)
        listed = client.get("/console/evals").text
        assert a[:12] in listed and b[:12] in listed and "Compare A and B" in listed
        shown = client.get(f"/console/evals/{a}").text
        assert f'href="/console/runs/{run_id}"' in shown and "exact=1.0 (pass)" in shown
        assert "<td>exact</td><td>0.125</td>" in shown and "<td>12%</td>" in shown  # mean, pass rate
        compared = client.get("/console/evals/compare", params={"a": a, "b": b})
        assert compared.status_code == 200, compared.text
        assert "<h1>B against A: better</h1>" in compared.text
        assert "7 / 0 / 1" in compared.text and "q0: fail → pass" in compared.text
        # the means charted: bars the charting library draws, A beside B, the values in a table too
        (means,) = _charts(compared.text)
        assert means["labels"] == ["exact"] and [s["label"] for s in means["series"]] == ["A", "B"]
        assert [s["y"] for s in means["series"]] == [[0.125], [1.0]]
        assert '<tr><th scope="row">exact</th><td>0.125</td><td>1</td></tr>' in compared.text
        assert _charts(shown) == [
            {
                "kind": "bars",
                "name": "Mean of each metric",
                "group": "metric",
                "labels": ["exact"],
                "series": [{"label": "mean", "y": [0.125]}],
            }
        ]
        assert "/console/static/uplot.js" in shown and "<svg" not in shown + compared.text
        missing = client.get("/console/evals/compare", params={"a": a, "b": "nope"})
        assert missing.status_code == 400 and "no evaluation &#39;nope&#39;" in missing.text


def test_home_is_tailored_to_the_role(url: str, keys: Keys, settings: Settings) -> None:
    run_id = hostile_run(settings, status="failed")
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        api.post(f"/v1/runs/{run_id}/feedback", json={"rating": -1}).raise_for_status()
    store = KeyStore.open(settings.db_url)
    try:
        network = store.create("console network", role="network-admin", team="research", created_by="t")[1]
        approver = store.create("console approver", role="approver", team="research", created_by="t")[1]
    finally:
        store.close()
    sections = {"Health, the last 1 hour": "h", "Budgets": "b", "Latest evaluations": "e", "The last ": "r"}
    seen = {}
    for name, key in (
        ("admin", keys.admin),
        ("viewer", keys.viewer),
        ("developer", keys.developer),
        ("network", network),
        ("approver", approver),
    ):
        with httpx.Client(base_url=url, timeout=30) as client:
            sign_in(client, key)
            home = client.get("/console/")
            assert home.status_code == 200, home.text
            seen[name] = "".join(mark for heading, mark in sections.items() if f">{heading}" in home.text)
            if name == "admin":
                # operations: each component's faults; business: the people's feedback on each agent's runs
                assert "<caption>Faults per component</caption>" in home.text
                assert "<td>1</td><td>0</td><td>1</td><td>0</td><td>0 / 1</td></tr>" in home.text
                assert HOSTILE not in home.text
    # operations (dashboards:read, routes:read), developers (evals:read), runs for those who read them
    assert seen == {"admin": "hber", "viewer": "hr", "developer": "hber", "network": "hb", "approver": "r"}


def _charts(page: str) -> list[dict[str, object]]:
    """The charts of a page: what each figure hands the charting library (``data-chart``)."""
    return [json.loads(html.unescape(found)) for found in re.findall(r"data-chart='([^']*)'", page)]


PAGES = sorted(
    (m, p) for (m, p) in CONSOLE_PERMISSIONS if m == "GET" and "{" not in p and p != "/console/login"
)


@pytest.mark.parametrize("role", sorted(PRESET_ROLES))
def test_each_page_asks_its_permission(role: str, url: str, settings: Settings) -> None:
    store = KeyStore.open(settings.db_url)
    try:
        key = store.create(f"console {role}", role=role, team="research", created_by="test")[1]
    finally:
        store.close()
    grants = PRESET_ROLES[role].permissions()
    with httpx.Client(base_url=url, timeout=30) as client:
        sign_in(client, key)
        for method, path in PAGES:
            permission = CONSOLE_PERMISSIONS[(method, path)]
            # streamed: the runs list's event stream answers at once and goes on (its body is not read)
            with client.stream(method, path) as answer:
                if permission is None or permission in grants:
                    # (422: a page that needs query parameters, asked without: past its permission)
                    assert answer.status_code in (200, 303, 422), (role, path)
                    continue
                text = answer.read().decode()
            assert answer.status_code == 403, (role, path, text)
            assert f"lacks the permission &#39;{permission}&#39;" in text
        nav = client.get("/console/approvals").text
        assert ('href="/console/audit"' in nav) == ("audit:read" in grants)
        assert ('href="/console/runs"' in nav) == ("runs:read" in grants)


def test_gateway_page_shows_routes_and_budgets_never_keys(keys: Keys, live: list[LiveServer]) -> None:
    settings = load_settings()
    settings.ensure_home()
    (settings.home / "config.toml").write_text(
        "[gateway.routes.fast]\nupstreams = [{ url = 'http://127.0.0.1:9/v1', model = 'small<b>', "
        "api_key = 'sk-very-secret-upstream-key' }]\nfallbacks = ['slow']\n"
        "[gateway.routes.slow]\nupstreams = [{ url = 'http://127.0.0.1:9/v1', model = 'large' }]\n"
        "[[security.limits]]\nscope = 'team:research'\ntokens_per_day = 100000\n"
    )
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    with httpx.Client(base_url=live[-1].url, timeout=30) as client:
        sign_in(client, keys.admin)
        page = client.get("/console/gateway")
        assert page.status_code == 200, page.text
        assert "<td>fast</td>" in page.text and "small&lt;b&gt;" in page.text and "with a key" in page.text
        assert "<td>team:research</td>" in page.text and "100000" in page.text
        assert "sk-very-secret-upstream-key" not in page.text


def test_audit_pages_go_back_in_time_and_filter_by_kind(url: str, keys: Keys, settings: Settings) -> None:
    with build_audit_log(settings) as audit:
        for n in range(130):
            audit.append("test.thing" if n % 2 else "test.other", actor="tester", resource=f"r/<{n}>")
    with httpx.Client(base_url=url, timeout=30) as client:
        sign_in(client, keys.admin)
        newest = client.get("/console/audit").text
        seqs = [int(s) for s in re.findall(r"<tr>\s*<td>(\d+)</td>", newest)]
        assert len(seqs) == 100 and seqs == sorted(seqs, reverse=True) and "r/&lt;129&gt;" in newest
        older_link = re.search(r'href="/console/audit\?upto=(\d+)">Older', newest)
        assert older_link is not None
        older = client.get("/console/audit", params={"upto": older_link.group(1)}).text
        older_seqs = [int(s) for s in re.findall(r"<tr>\s*<td>(\d+)</td>", older)]
        assert older_seqs == list(range(min(seqs) - 1, 0, -1))  # the rest, no overlap
        assert "Older" not in older and "Newer" in older
        things = client.get("/console/audit", params={"kind": "test.thing"}).text
        assert things.count("<td>test.thing</td>") == 65 and "<td>test.other</td>" not in things


def test_behind_a_tls_proxy_the_cookie_is_secure(
    keys: Keys, live: list[LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOOR_SERVER__CONSOLE__SECURE_COOKIES", "true")
    monkeypatch.setenv("SHOPFLOOR_SERVER__CONSOLE__SESSION_SECONDS", "600")
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    with httpx.Client(base_url=live[-1].url, timeout=30) as client:
        form = client.get("/console/login")
        login_cookie = form.headers["set-cookie"]
        assert "; secure" in login_cookie.lower()  # so the client keeps it only for https: sent by hand
        token = csrf_of(form.text, "login_csrf")
        signed = client.post(
            "/console/login",
            data={"api_key": keys.admin, "login_csrf": token},
            headers={"Cookie": login_cookie.split(";")[0]},
        )
        cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("sf_console="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "samesite=strict", "max-age=600"} <= flags


def test_an_agents_page_shows_each_skills_signature_status(
    url: str, keys: Keys, agent_dir: Path, tmp_path: Path
) -> None:
    shipped = Path(shopfloor.skills.__file__).parent / "builtin" / "data-analysis"
    copy = tmp_path / "copied-skill"
    shutil.copytree(shipped, copy)
    spec = agent_dir / "agent.yaml"
    spec.write_text(spec.read_text() + f"skills:\n  - ref: {shipped}\n  - ref: {copy}\n")
    with httpx.Client(base_url=url, timeout=30) as person:
        registered = person.post(
            "/v1/agents", json={"path": str(agent_dir)}, headers={"Authorization": f"Bearer {keys.admin}"}
        )
        assert registered.status_code in (200, 201), registered.text
        (copy / "SKILL.md").write_text((copy / "SKILL.md").read_text() + "\nOne more line.\n")
        sign_in(person, keys.admin)
        page = person.get("/console/agents/ticker").text
    shipped_state, copy_state = re.findall(r"<span class=\"(signature-ok|error)\">([^<]*)</span>", page)
    assert shipped_state[0] == "signature-ok" and shipped_state[1].endswith(", verified")
    assert copy_state[0] == "error" and "changed since it was signed" in copy_state[1]

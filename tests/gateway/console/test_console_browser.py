"""The console as a person uses it: Debian's headless Chromium driven by Selenium against a real server
(the run worker in it, runs of the scripted test agent): sign in, watch the runs list update live through
its event stream, open a run and approve its waiting call, follow it to its end and its trace, replay it,
fork it and follow the fork live on its own page, compare two evaluations, read an agent, the metrics
charted by the vendored charting library, the home page, a diff, a report and a chart in a workspace,
deploy a release and promote its canary, and find that none of the markup in a hostile run, file name or
report executes and that nothing broke the Content-Security-Policy. Each page is checked with axe-core
(no serious or critical violation); screenshots go to the test's tmp dir (``screenshots/``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_support import evaluation, hostile_run, hostile_workspace, release_of
from gateway_support import Keys, LiveServer, grant_research, wait_status, wait_trace
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from shopfloor.config import load_settings
from shopfloor.gateway import build_server

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parents[3]
#: where scripts/bootstrap.sh installs npm packages of the tests (as tests/connectors does)
NODE_PREFIX = REPO / ".venv" / "node"
AXE = "axe-core@4.14.1"
#: the charting library the console serves, vendored from npm by scripts/bootstrap.sh
UPLOT = REPO / "src" / "shopfloor" / "gateway" / "console" / "static" / "vendor" / "uplot.js"


@pytest.fixture(scope="session")
def charts() -> Path:
    """The console's charting library in the package (vendored from npm if not there yet)."""
    if not UPLOT.is_file():
        assert shutil.which("npm") is not None, (
            "npm is missing: scripts/bootstrap.sh installs Node.js and npm"
        )
        script = REPO / "scripts" / "vendor_console.sh"
        subprocess.run([str(script), str(NODE_PREFIX)], check=True, timeout=300, capture_output=True)
    return UPLOT


@pytest.fixture(scope="session")
def axe_js() -> str:
    """axe-core (the accessibility checker, from npm), installed under .venv/node if not there yet."""
    entry = NODE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"
    if not entry.is_file():
        npm = shutil.which("npm")
        assert npm is not None, "npm is missing: scripts/bootstrap.sh installs Node.js and npm"
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_PREFIX), AXE],
            check=True,
            timeout=300,
            capture_output=True,
        )
    return entry.read_text()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if CHROMIUM is None or DRIVER is None:
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (scripts/bootstrap.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1366,900",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations are logged there
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: WebDriver, tmp_path: Path, name: str) -> None:
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 1000


def _accessible(driver: WebDriver, axe: str) -> None:
    """axe-core finds no serious or critical violation on the page (WCAG 2 A/AA rules)."""
    driver.execute_script(axe)  # through the driver: the page's CSP does not apply to it
    found = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']})"
        ".then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.map(n => n.target.join(' '))])));"
    )
    serious = [v for v in found if v[1] in ("serious", "critical")]
    assert serious == [], (driver.current_url, serious)


def _csp_kept(driver: WebDriver) -> None:
    """Nothing on the pages visited since the last call was blocked by the Content-Security-Policy (the
    console's own scripts, styles and the charting library stay within it)."""
    blocked = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert blocked == [], blocked


def _confirm(driver: WebDriver, wait: WebDriverWait[WebDriver]) -> None:
    """Accept the dialog of a form marked data-confirm."""
    wait.until(ec.alert_is_present())
    driver.switch_to.alert.accept()


#: counts the times the run page's live part (#run-live) has its children replaced (window.__replaced)
_COUNT_REPLACEMENTS = """
window.__replaced = 0;
document.addEventListener("DOMContentLoaded", () => {
  const part = document.getElementById("run-live");
  if (part) {
    const count = (records) => { window.__replaced += records.length; };
    new MutationObserver(count).observe(part, { childList: true });
  }
});
"""


class _LiveWait(WebDriverWait[WebDriver]):
    """A wait whose condition may read a live part of the page (replaced as it changes): an element that
    went stale, or was taken out of the document while a command on it ran (Chromium's driver then answers
    'Node with given id does not belong to the document'), is looked for again instead of failing."""

    def until(self, method: Callable[[WebDriver], Any], message: str = "") -> Any:
        def settled(driver: WebDriver) -> Any:
            try:
                return method(driver)
            except StaleElementReferenceException:
                return False
            except WebDriverException as error:
                if "does not belong to the document" in (error.msg or ""):
                    return False
                raise

        return super().until(settled, message)


def _untouched(driver: WebDriver) -> None:
    """Nothing a hostile value carried ran: no flag set, no title changed, no dialog open."""
    assert driver.execute_script("return window.__pwned === undefined") is True
    assert "pwned" not in driver.title
    with pytest.raises(Exception, match="no such alert"):
        driver.switch_to.alert.text  # noqa: B018 - reading it raises when none is open


@pytest.mark.parametrize("fast_runtime", ["sqlite"], indirect=True)
def test_a_person_signs_in_follows_a_run_approves_it_and_reads_a_report(
    fast_runtime: None,
    keys: Keys,
    live: list[LiveServer],
    agent_dir: Path,
    browser: WebDriver,
    tmp_path: Path,
    axe_js: str,
    charts: Path,
) -> None:
    settings = load_settings()
    live.append(LiveServer(build_server(settings, worker=True)))
    url = live[-1].url
    hostile = hostile_run(settings, status="failed")
    asyncio.run(hostile_workspace(settings))
    # the live parts of a page are replaced as they change: an element found may go stale, so look again
    wait = _LiveWait(browser, 30, poll_frequency=0.1)
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()

        # Sign in through the form; the page asked for comes back after it.
        browser.get(f"{url}/console/runs")
        wait.until(ec.presence_of_element_located((By.ID, "api_key"))).send_keys(keys.admin)
        _shot(browser, tmp_path, "login")
        _accessible(browser, axe_js)
        # An inline script, as injected markup would carry one: the CSP refuses it, and the browser's log
        # (what _csp_kept reads) says so.
        browser.execute_script(
            "const s = document.createElement('script'); s.textContent = 'window.__pwned = 9';"
            "document.head.appendChild(s);"
        )
        _untouched(browser)
        with pytest.raises(AssertionError, match="Content Security Policy"):
            _csp_kept(browser)
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        wait.until(ec.presence_of_element_located((By.ID, "runs-body")))
        assert browser.current_url.endswith("/console/runs")
        _untouched(browser)  # the hostile run is in the list

        # A run started elsewhere shows up in the list without a reload, through the list's event stream
        # (while the stream is open, the list is not polled).
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#runs-body[data-stream="open"]')))
        marker = browser.execute_script("window.__same_page = 'yes'; return window.__same_page")
        run_id = api.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1 tool=transfer"}).json()[
            "run_id"
        ]
        row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-run="{run_id}"]')))
        assert browser.execute_script("return window.__same_page") == marker
        wait_status(api, run_id, "waiting_approval")
        wait.until(
            lambda d: "waiting_approval" in d.find_element(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]').text
        )
        _shot(browser, tmp_path, "runs")
        _accessible(browser, axe_js)

        # The run's page: its waiting call, approved with one click; the state follows live. An observer put
        # in before the page's own script counts the replacements of the page's live part.
        browser.execute_cdp_cmd(  # type: ignore[attr-defined]  # the fixture's driver is Chrome's
            "Page.addScriptToEvaluateOnNewDocument", {"source": _COUNT_REPLACEMENTS}
        )
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-run="{run_id}"] a').click() is None)
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "waiting_approval"))
        wait.until(lambda d: "transfer" in d.find_element(By.CSS_SELECTOR, ".approval").text)
        _shot(browser, tmp_path, "run-waiting")
        _accessible(browser, axe_js)
        # A refresh that finds the live part unchanged leaves it be (replacing it anyway would take away a
        # button being clicked): after two fetches of the part, the page's observer saw no replacement.
        fetches = "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/live'))"
        fetches += ".length"
        wait.until(lambda d: d.execute_script(fetches) >= 2)
        assert browser.execute_script("return window.__replaced") == 0
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "form.decide button.approve").click() is None)
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))
        fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert f"{url}/console/runs/{run_id}/events" in fetched, fetched  # followed through its events
        wait.until(lambda d: "run finished" in d.find_element(By.CSS_SELECTOR, "ol.timeline").text)
        assert "approval decided" in browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
        _shot(browser, tmp_path, "run-completed")
        _accessible(browser, axe_js)
        assert row is not None
        decided = api.get(f"/v1/runs/{run_id}").json()
        assert decided["status"] == "completed"
        # Its trace as a waterfall, once the run's root span reached the trace store: spans go in batches, so
        # the spans before the approval can be there while the root (it ends last) is still on its way.
        wait_trace(api, run_id)
        browser.refresh()
        bars = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "svg.waterfall g.span")))
        names = [bar.find_element(By.TAG_NAME, "text").text for bar in bars]
        assert any(name.startswith("invoke_agent") for name in names), names
        browser.execute_script("arguments[0].scrollIntoView()", bars[0])
        _shot(browser, tmp_path, "run-trace")

        # The metrics of the trace store: the run among them, each metric charted over time.
        browser.get(f"{url}/console/metrics?agent=ticker")
        captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "figure.chart figcaption")]
        assert "runs: 1" in captions and any(c.startswith("completion rate: 100") for c in captions), captions
        assert any(c.startswith("model latency p50: ") for c in captions), captions  # per component
        # drawn by the charting library (served by the console itself), one chart per metric
        plots = wait.until(
            ec.presence_of_all_elements_located((By.CSS_SELECTOR, "figure.chart .plot canvas"))
        )
        assert len(plots) == len(captions), (len(plots), captions)
        assert browser.execute_script("return typeof window.uPlot") == "function"
        _shot(browser, tmp_path, "metrics")
        _accessible(browser, axe_js)
        _csp_kept(browser)

        # Replay the run on its recorded outputs: every step the same. Then fork it at its last step: a
        # durable run of the worker (after the metrics above, which count one run), whose page the browser
        # lands on and which it follows live like any run.
        browser.get(f"{url}/console/runs/{run_id}")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "form.replay button").click() is None)
        verdict = wait.until(ec.presence_of_element_located((By.ID, "replay-verdict")))
        assert verdict.text.startswith("same"), verdict.text
        assert not browser.find_elements(By.CSS_SELECTOR, "tr.check-differs")
        _shot(browser, tmp_path, "replay")
        _accessible(browser, axe_js)
        browser.back()
        # (the fork form is in the live part of the page: read and sent each in one go)
        names = wait.until(lambda d: [o.text for o in Select(d.find_element(By.ID, "fork-step")).options])
        assert names[-1].endswith("model:2"), names
        at = str(len(names))
        (agent_dir / "block-model-2").touch()  # the fork's live step waits: its page shows it running
        browser.execute_script(
            "const s = document.getElementById('fork-step'); s.value = arguments[0];"
            "s.form.querySelector('button').click();",
            at,
        )
        _confirm(browser, wait)
        wait.until(lambda d: f"at step {at}" in d.find_element(By.ID, "fork-of").text)
        fork_id = browser.current_url.rpartition("/")[2]
        assert fork_id != run_id and browser.current_url == f"{url}/console/runs/{fork_id}"
        assert browser.find_element(By.CSS_SELECTOR, "#fork-of a").get_attribute("href").endswith(run_id)
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "running"))
        _shot(browser, tmp_path, "fork-running")
        _accessible(browser, axe_js)
        marker = browser.execute_script("window.__same_page = 'fork'; return window.__same_page")
        (agent_dir / "block-model-2").unlink()
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-output"), "done after 1 ticks"))
        assert browser.execute_script("return window.__same_page") == marker  # followed without a reload
        fork = api.get(f"/v1/runs/{fork_id}").json()
        assert (fork["parent_run_id"], fork["fork_step"], fork["status"]) == (run_id, int(at), "completed")
        _shot(browser, tmp_path, "fork")
        _csp_kept(browser)

        # The agent: its spec, its tool that needs approval, its latest runs.
        browser.get(f"{url}/console/agents")
        browser.find_element(By.LINK_TEXT, "ticker").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "pre.text")))
        assert "tool transfer (agent_tools.py:transfer) · needs approval" in browser.page_source.replace(
            "<code>", ""
        ).replace("</code>", "")
        assert browser.find_element(By.CSS_SELECTOR, f'a[href="/console/runs/{run_id}"]')
        _shot(browser, tmp_path, "agent")
        _accessible(browser, axe_js)

        # Two evaluations of a suite compared: picked in the list, the verdict and the plot.
        older = evaluation(
            settings, model="small", scores=[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], run_ids=[run_id]
        )
        newer = evaluation(settings, model="large", scores=[1.0] * 8)
        browser.get(f"{url}/console/evals")
        browser.find_element(By.CSS_SELECTOR, f'input[name="a"][value="{older}"]').click()
        browser.find_element(By.CSS_SELECTOR, f'input[name="b"][value="{newer}"]').click()
        _accessible(browser, axe_js)
        browser.find_element(By.XPATH, "//button[text()='Compare A and B']").click()
        # (waited for by its text: the list's own heading is there until the new page replaces it)
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "B against A"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "B against A: better"
        # the means as bars drawn by the charting library, A beside B (the legend names both)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "figure.chart-bars .plot canvas")))
        legend = wait.until(
            ec.presence_of_all_elements_located((By.CSS_SELECTOR, "figure.chart-bars .u-label"))
        )
        assert [label.text for label in legend] == ["metric", "A", "B"]
        _shot(browser, tmp_path, "evals-compared")
        _accessible(browser, axe_js)
        browser.find_element(By.LINK_TEXT, older[:12]).click()
        browser.find_element(By.CSS_SELECTOR, f'a[href="/console/runs/{run_id}"]').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))

        # The gateway's routes and budgets, and the audit log: readable to a person.
        for page in ("gateway", "audit", "approvals", "workspaces"):
            browser.get(f"{url}/console/{page}")
            wait.until(ec.presence_of_element_located((By.TAG_NAME, "h1")))
            _untouched(browser)
            _shot(browser, tmp_path, page)
            _accessible(browser, axe_js)

        # The home page: the runs by status, the failure among them.
        browser.get(f"{url}/console/")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "figure.chart-bars .plot canvas")))
        counts = browser.find_element(By.CSS_SELECTOR, "figure.chart-bars table.values").text
        assert "failed 1" in counts and "completed 2" in counts, counts
        _untouched(browser)
        _shot(browser, tmp_path, "home")
        _accessible(browser, axe_js)

        # The hostile run: shown, nothing of it runs.
        browser.get(f"{url}/console/runs/{hostile}")
        wait.until(ec.presence_of_element_located((By.ID, "run-output")))
        assert "<script>window.__pwned = 1;" in browser.find_element(By.ID, "run-output").text
        _untouched(browser)
        _shot(browser, tmp_path, "run-hostile")
        _accessible(browser, axe_js)

        # The workspace: a file with markup for a name, the report rendered, the chart shown.
        browser.get(f"{url}/console/workspaces/reports")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.files")))
        assert (
            "<img src=x onerror=window.__pwned=4>.txt"
            in browser.find_element(By.CSS_SELECTOR, "table.files").text
        )
        _untouched(browser)
        browser.find_element(By.LINK_TEXT, "report.md").click()
        rendered = wait.until(ec.presence_of_element_located((By.ID, "rendered")))
        assert rendered.find_element(By.TAG_NAME, "table").is_displayed()
        assert "<script>x</script>" in rendered.find_element(By.TAG_NAME, "h1").text
        _untouched(browser)
        _shot(browser, tmp_path, "report")
        _accessible(browser, axe_js)
        # The history: the last commit against its parent, side by side.
        browser.get(f"{url}/console/workspaces/reports")
        browser.find_element(By.LINK_TEXT, "diff").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.sbs tr.row-chg")))
        _untouched(browser)
        _shot(browser, tmp_path, "diff")
        _accessible(browser, axe_js)
        browser.get(f"{url}/console/workspaces/reports?path=charts")
        browser.find_element(By.LINK_TEXT, "sales.png").click()
        image = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "img.shown")))
        wait.until(
            lambda d: (
                d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 1
            )
        )
        _shot(browser, tmp_path, "chart")
        _accessible(browser, axe_js)

        # Releases: two signed versions, the first deployed from the agent's page, the second as a canary
        # to 40% of callers, then promoted.
        release_of(settings, agent_dir, "1.0.0")
        (agent_dir / "agent_tools.py").write_text((agent_dir / "agent_tools.py").read_text() + "# 2\n")
        release_of(settings, agent_dir, "2.0.0")
        browser.get(f"{url}/console/releases")
        assert len(browser.find_elements(By.XPATH, "//span[text()='verified']")) == 2
        _shot(browser, tmp_path, "releases")
        _accessible(browser, axe_js)
        browser.find_element(By.LINK_TEXT, "ticker@2.0.0").click()
        wait.until(ec.presence_of_element_located((By.ID, "verification")))
        Select(browser.find_element(By.ID, "against")).select_by_value("1.0.0")
        browser.find_element(By.XPATH, "//button[text()='Compare']").click()
        changes = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.release-diff")))
        assert "file agent_tools.py: changed" in changes.text
        _shot(browser, tmp_path, "release")
        _accessible(browser, axe_js)
        browser.find_element(By.LINK_TEXT, "ticker").click()
        Select(wait.until(ec.presence_of_element_located((By.ID, "deploy-version")))).select_by_value("1.0.0")
        browser.find_element(By.CSS_SELECTOR, "form.deploy button").click()
        _confirm(browser, wait)
        wait.until(ec.text_to_be_present_in_element((By.ID, "stable"), "1.0.0"))
        Select(browser.find_element(By.ID, "deploy-version")).select_by_value("2.0.0")
        browser.find_element(By.ID, "deploy-canary").send_keys("40")
        browser.find_element(By.CSS_SELECTOR, "form.deploy button").click()
        _confirm(browser, wait)
        wait.until(ec.text_to_be_present_in_element((By.ID, "canary"), "2.0.0 to 40% of callers"))
        _shot(browser, tmp_path, "release-canary")
        _accessible(browser, axe_js)
        browser.find_element(By.CSS_SELECTOR, "form.promote button").click()
        _confirm(browser, wait)
        wait.until(ec.text_to_be_present_in_element((By.ID, "stable"), "2.0.0"))
        assert browser.find_element(By.ID, "canary").text == "none"
        _csp_kept(browser)

        # Sign out: the console asks for a key again.
        browser.find_element(By.CSS_SELECTOR, "form.who button").click()
        wait.until(ec.presence_of_element_located((By.ID, "api_key")))
        browser.get(f"{url}/console/runs")
        wait.until(ec.presence_of_element_located((By.ID, "api_key")))


@pytest.mark.parametrize("fast_runtime", ["sqlite"], indirect=True)
def test_a_person_edits_a_plan_in_the_approval_form_before_approving_it(
    fast_runtime: None,
    keys: Keys,
    live: list[LiveServer],
    agent_dir: Path,
    browser: WebDriver,
    tmp_path: Path,
    axe_js: str,
) -> None:
    """The plan's sub-questions (hostile markup, as a model reading hostile documents could write them) are
    inputs holding that text, inert; one is rewritten, one emptied (dropped), and the call runs that plan."""
    grant_research(agent_dir)
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    url = live[-1].url
    wait = _LiveWait(browser, 30, poll_frequency=0.1)
    planned = ["<script>window.__pwned = 1</script>", '<img src=x onerror="window.__pwned = 2">']
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        api.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
        task = f"ticks=1 tool=research question={planned[0]} and {planned[1]}"
        run_id = api.post("/v1/runs", json={"agent": "ticker", "input": task}).json()["run_id"]
        wait_status(api, run_id, "waiting_approval")

        browser.get(f"{url}/console/runs/{run_id}")
        wait.until(ec.presence_of_element_located((By.ID, "api_key"))).send_keys(keys.admin)
        browser.find_element(By.CSS_SELECTOR, "form.login button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "waiting_approval"))
        inputs = wait.until(
            ec.presence_of_all_elements_located((By.CSS_SELECTOR, "form.decide fieldset.edit input"))
        )
        assert [i.get_attribute("value") for i in inputs] == [*planned, ""]
        _untouched(browser)
        _shot(browser, tmp_path, "plan-edit")
        _accessible(browser, axe_js)

        first = browser.find_element(By.NAME, "edit.plan.0")
        first.clear()
        first.send_keys("python venv module")
        browser.find_element(By.NAME, "edit.plan.1").clear()
        browser.find_element(By.NAME, "edit.plan.2").send_keys("pip install")
        browser.find_element(By.CSS_SELECTOR, "form.decide button.approve").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))
        _untouched(browser)
        events = api.get(f"/v1/runs/{run_id}/events", params={"follow": "false"}).text
    result = next(line for line in events.splitlines() if line.startswith("data: ") and "tool_result" in line)
    assert json.loads(result[6:])["data"]["output"] == {"searched": ["python venv module", "pip install"]}

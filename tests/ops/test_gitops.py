"""The GitOps controller against real git repositories the tests make: sync, drift, prune, a bad commit,
a force-push, rollback pinned until git moves on, signed commits, one transaction per sync."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.errors import ConfigError, DeploymentError, GitOpsError, SpecError
from shopfloor.ops.gitops import GitOpsController, GitSource, read_desired, shown_url
from shopfloor.ops.releases import Deployment, Deployments, Releases
from shopfloor.skills import new_skill, sign_skill

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class Repo:
    """A git repository holding the echo agent at two versions and a desired-state file."""

    def __init__(self, path: Path, agent_dir: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")
        shutil.copytree(agent_dir, path / "agents" / "echo")
        shutil.copytree(agent_dir, path / "agents" / "echo-next")
        tools = path / "agents" / "echo-next" / "tools.py"
        tools.write_text(tools.read_text() + "# 1.1\n")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.path, env={**os.environ, **GIT_ENV}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def commit(self, desired: str, message: str, *extra: str) -> str:
        (self.path / "deploy.yaml").write_text(desired)
        self.git("add", "-A")
        self.git("commit", "-q", *extra, "-m", message)
        return self.git("rev-parse", "HEAD")


RELEASES = """\
releases:
  - agent: agents/echo
    version: 1.0.0
  - agent: agents/echo-next
    version: 1.1.0
"""


TOOLS_NEXT = 'def shout(text: str) -> str:\n    """Shout the text."""\n    return text.upper() + "!"\n'


def _deploy(stable: str, canary: str = "") -> str:
    return RELEASES + f"deployments:\n  - agent: echo\n    release: {stable}\n" + canary


@pytest.fixture
def repo(tmp_path: Path, agent_dir: Path) -> Repo:
    return Repo(tmp_path / "desired", agent_dir)


def _controller(releases: Releases, repo: Repo, key: Path, **options: object) -> GitOpsController:
    source = GitSource(str(repo.path), releases.settings.home / "gitops" / "repos")
    return GitOpsController(releases, source, actor="gitops:test", key=lambda: key, **options)  # type: ignore[arg-type]


def _objects(result: object) -> dict[str, tuple[str, str, str]]:
    return {o.key: (o.sync, o.health, o.action) for o in result.objects}  # type: ignore[attr-defined]


def test_sync_applies_the_repository_then_reports_it_synced(
    releases: Releases, repo: Repo, key: Path
) -> None:
    first = repo.commit(_deploy("1.0.0"), "echo 1.0.0")
    controller = _controller(releases, repo, key)
    planned = controller.sync(dry_run=True)
    assert planned.status == "planned"
    assert _objects(planned)["Deployment/echo"][0] == "OutOfSync"
    assert releases.store.deployment("echo") is None  # a dry run changes nothing
    result = controller.sync()
    assert (result.status, result.revision) == ("synced", first)
    assert _objects(result) == {
        "Release/echo@1.0.0": ("Synced", "Healthy", "created"),
        "Release/echo@1.1.0": ("Synced", "Healthy", "created"),
        "Deployment/echo": ("Synced", "Healthy", "deployed"),
    }
    deployed = releases.store.deployment("echo")
    assert deployed is not None and (deployed.stable, deployed.updated_by) == ("1.0.0", "gitops:test")
    again = controller.sync()
    assert again.status == "unchanged" and all(o.action == "" for o in again.objects)
    # A canary declared in git is Progressing; its removal promotes nothing by itself.
    canary = "    canary: {release: 1.1.0, percent: 25}\n"
    repo.commit(_deploy("1.0.0", canary), "canary 1.1.0")
    progressing = controller.sync()
    assert _objects(progressing)["Deployment/echo"] == ("Synced", "Progressing", "deployed")
    live = releases.store.deployment("echo")
    assert live is not None and (live.candidate, live.canary) == ("1.1.0", 25) and live.candidate_since
    history = controller.history()
    assert [r.status for r in history] == ["synced", "unchanged", "synced"]
    assert history[0].changes and history[0].actor == "gitops:test"
    kinds = [e.kind for e in releases.audit.tail(50)]
    assert kinds.count("gitops.synced") == 2 and "gitops.deployed" in kinds


def test_a_bad_commit_is_reported_with_file_and_line_and_changes_nothing(
    releases: Releases, repo: Repo, key: Path
) -> None:
    repo.commit(_deploy("1.0.0"), "good")
    controller = _controller(releases, repo, key)
    assert controller.sync().status == "synced"
    bad = repo.commit(_deploy("1.1.0").replace("release: 1.1.0", "release: 1.1.0\n    replicas: 3"), "bad")
    result = controller.sync()
    assert result.status == "failed" and result.revision == bad
    assert "deploy.yaml:9:5" in result.message and "replicas" in result.message
    live = releases.store.deployment("echo")
    assert live is not None and live.stable == "1.0.0"  # the previous state is kept
    # A release that is not declared, and an agent outside the repository, fail the same way.
    repo.commit("deployments:\n  - agent: echo\n    release: 9.9.9\n", "undeclared")
    assert "echo@9.9.9 is not released" in controller.sync().message
    repo.commit("releases:\n  - agent: ../../../../etc\n", "escape")
    escaped = controller.sync()
    assert escaped.status == "failed" and "deploy.yaml:2" in escaped.message
    assert releases.store.deployment("echo").stable == "1.0.0"  # type: ignore[union-attr]
    assert controller.history()[0].status == "failed"
    assert "gitops.sync_failed" in [e.kind for e in releases.audit.tail(10)]


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ('deployments:\n  - agent: "echo<NL>"\n    release: 1.0.0\n', "deploy.yaml:2"),
        ('deployments:\n  - agent: echo\n    release: "1.0.0<NL>"\n', "deploy.yaml:3"),
        (
            "deployments:\n  - agent: echo\n    release: 1.0.0\n"
            '    canary: {release: "1.1.0<NL>", percent: 5}\n',
            "deploy.yaml:4",
        ),
        ('releases:\n  - agent: agents/echo\n    version: "1.0.0<NL>"\n', "deploy.yaml:3"),
    ],
)
def test_a_name_or_version_ending_in_a_newline_is_refused_at_its_line(
    tmp_path: Path, template: str, where: str
) -> None:
    """pydantic's ``pattern`` is matched by Rust's regex, where ``$`` is the end of the text."""
    path = tmp_path / "deploy.yaml"
    path.write_text(template.replace("<NL>", ""))
    assert read_desired(tmp_path, tmp_path).policy == {}
    path.write_text(template.replace("<NL>", "\\n"))
    with pytest.raises(SpecError) as info:
        read_desired(tmp_path, tmp_path)
    assert len(info.value.problems) == 1 and str(info.value).startswith(f"{where}:"), str(info.value)
    assert "should match pattern" in str(info.value)


def test_drift_is_healed_or_reported_and_prune_is_behind_a_flag(
    releases: Releases, repo: Repo, key: Path
) -> None:
    repo.commit(_deploy("1.0.0"), "echo 1.0.0")
    assert _controller(releases, repo, key).sync().status == "synced"
    Deployments(releases).deploy("echo@1.1.0", actor="bob")  # by hand, outside git
    reported = _controller(releases, repo, key, self_heal=False).sync()
    deployment = next(o for o in reported.objects if o.key == "Deployment/echo")
    assert deployment.sync == "OutOfSync" and "drift: changed outside git" in deployment.diff
    assert releases.store.deployment("echo").stable == "1.1.0"  # type: ignore[union-attr]
    healed = _controller(releases, repo, key).sync()
    assert _objects(healed)["Deployment/echo"] == ("Synced", "Healthy", "healed")
    assert releases.store.deployment("echo").stable == "1.0.0"  # type: ignore[union-attr]
    assert "gitops.drift_healed" in [e.kind for e in releases.audit.tail(20)]
    # Deleted from git: kept (and reported) until a sync with --prune.
    repo.commit(RELEASES, "echo no longer deployed")
    kept = _controller(releases, repo, key).sync()
    assert _objects(kept)["Deployment/echo"][0] == "OutOfSync"
    assert releases.store.deployment("echo") is not None
    pruned = _controller(releases, repo, key, prune=True).sync()
    assert _objects(pruned)["Deployment/echo"] == ("Synced", "Missing", "pruned")
    assert releases.store.deployment("echo") is None
    assert next(e.action for e in releases.store.history("echo")) == "undeploy"


def test_a_force_push_is_followed_and_a_rollback_holds_until_git_moves_on(
    releases: Releases, repo: Repo, key: Path
) -> None:
    first = repo.commit(_deploy("1.0.0"), "1.0.0")
    controller = _controller(releases, repo, key)
    controller.sync()
    second = repo.commit(_deploy("1.1.0"), "1.1.0")
    assert controller.sync().revision == second
    rolled = controller.rollback()
    assert (rolled.revision, rolled.pinned) == (first, True)
    assert releases.store.deployment("echo").stable == "1.0.0"  # type: ignore[union-attr]
    held = controller.sync()  # automatic sync does not fight the rollback
    assert (held.revision, held.pinned) == (first, True)
    assert releases.store.deployment("echo").stable == "1.0.0"  # type: ignore[union-attr]
    third = repo.commit(_deploy("1.1.0", "") + "# moved on\n", "moved on")
    moved = controller.sync()
    assert (moved.revision, moved.pinned) == (third, False) and "pin is released" in moved.message
    assert releases.store.deployment("echo").stable == "1.1.0"  # type: ignore[union-attr]
    # A force-push rewrites history back to 1.0.0 under a new commit: the new head is applied.
    repo.git("reset", "-q", "--hard", first)
    forced = repo.commit(_deploy("1.0.0") + "# rewritten\n", "rewritten")
    after = controller.sync()
    assert after.revision == forced and not controller.source.is_ancestor(third, forced)
    assert releases.store.deployment("echo").stable == "1.0.0"  # type: ignore[union-attr]


def _ssh_key(tmp_path: Path, name: str) -> tuple[Path, str]:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text().strip()


def test_only_commits_signed_by_an_allowed_signer_are_applied(
    releases: Releases, repo: Repo, key: Path, tmp_path: Path
) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.fail("ssh-keygen (openssh-client) is needed to sign commits")
    alice, alice_pub = _ssh_key(tmp_path, "alice")
    mallory, _ = _ssh_key(tmp_path, "mallory")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"alice@example.com {alice_pub}\n")
    repo.git("config", "gpg.format", "ssh")
    signed = repo.commit(_deploy("1.0.0"), "signed", f"--gpg-sign={alice}")
    controller = _controller(releases, repo, key, allowed_signers=signers)
    assert controller.sync().revision == signed
    repo.commit(_deploy("1.1.0"), "unsigned")
    refused = controller.sync()
    assert refused.status == "failed" and "not signed by an allowed signer" in refused.message
    repo.commit(_deploy("1.1.0") + "# m\n", "mallory", f"--gpg-sign={mallory}")
    assert controller.sync().status == "failed"
    assert releases.store.deployment("echo").stable == "1.0.0"  # type: ignore[union-attr]


def test_every_deployment_change_of_a_sync_is_one_transaction(
    releases: Releases, agent_dir: Path, key: Path
) -> None:
    """A controller that dies between two deployments' writes must leave neither: the changes and the
    controller's bookkeeping commit together or not at all."""
    releases.create(agent_dir, key=key, actor="t", version="1.0.0")
    Deployments(releases).deploy("echo@1.0.0", actor="t")
    before = releases.store.deployment("echo")
    other = Deployment(agent="other", stable="1.0.0")

    def dies(_conn: object) -> None:
        raise RuntimeError("the controller died here")

    with pytest.raises(RuntimeError):
        releases.store.save_all(
            [(None, other), (before, Deployment(agent="echo", stable="2.0.0"))],
            action="gitops",
            reason="test",
            actor="t",
            also=dies,
        )
    assert releases.store.deployment("other") is None
    assert releases.store.deployment("echo") == before
    with pytest.raises(DeploymentError, match="changed while"):  # compare-and-set on each
        releases.store.save_all(
            [(None, other), (None, Deployment(agent="echo", stable="2.0.0"))],
            action="gitops",
            reason="t",
            actor="t",
        )
    assert releases.store.deployment("other") is None


def test_hostile_repository_inputs_are_refused_and_credentials_never_shown(
    releases: Releases, repo: Repo, key: Path, tmp_path: Path
) -> None:
    assert shown_url("https://bob:s3cret@git.example.com/x.git") == "https://git.example.com/x.git"
    with pytest.raises(GitOpsError, match="not a repository"):
        GitSource("--upload-pack=touch /tmp/x", tmp_path)
    with pytest.raises(GitOpsError, match="not a repository"):
        GitSource("ext::sh -c touch% /tmp/pwned", tmp_path)
    with pytest.raises(GitOpsError, match="a directory inside the repository"):
        _controller(releases, repo, key, path="../..")
    missing = GitSource(str(tmp_path / "nowhere"), tmp_path / "cache")
    with pytest.raises(GitOpsError, match="failed"):
        missing.fetch()
    repo.commit("deployments: {not: [a, list}\n", "broken yaml")
    broken = _controller(releases, repo, key).sync()
    assert broken.status == "failed" and "deploy.yaml:1" in broken.message


def test_the_cli_syncs_reports_and_rolls_back(repo: Repo, key: Path, releases: Releases) -> None:
    cli = CliRunner()
    repo.commit(_deploy("1.0.0"), "1.0.0")
    synced = cli.invoke(app, ["gitops", "sync", str(repo.path), "--key", str(key), "--json"])
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.stdout)["status"] == "synced"
    repo.commit(_deploy("1.1.0"), "1.1.0")
    status = cli.invoke(app, ["gitops", "status", str(repo.path), "--json"])
    assert status.exit_code == 0, status.output
    objects = {o["key"]: o for o in json.loads(status.stdout)["objects"]}
    assert objects["Deployment/echo"]["sync"] == "OutOfSync"
    assert objects["Deployment/echo"]["diff"] == ["stable: '1.0.0' -> '1.1.0'"]
    watched = cli.invoke(app, ["gitops", "watch", str(repo.path), "--key", str(key), "--count", "1"])
    assert watched.exit_code == 0 and "synced" in watched.stdout
    rolled = cli.invoke(app, ["gitops", "rollback", str(repo.path), "--json"])
    assert rolled.exit_code == 0 and json.loads(rolled.stdout)["pinned"] is True
    history = cli.invoke(app, ["gitops", "history", str(repo.path), "--json"])
    assert [h["status"] for h in json.loads(history.stdout)][:2] == ["synced", "synced"]
    # The policy in config.toml: only signed commits (none is signed here).
    signers = releases.settings.home / "allowed_signers"
    signers.write_text("")
    (releases.settings.home / "config.toml").write_text(f'[gitops]\nallowed_signers = "{signers}"\n')
    repo.commit(_deploy("1.0.0") + "# unsigned\n", "unsigned")
    refused = cli.invoke(app, ["gitops", "sync", str(repo.path), "--key", str(key), "--json"])
    assert (
        refused.exit_code == 2 and "not signed by an allowed signer" in json.loads(refused.stdout)["message"]
    )
    bad = cli.invoke(app, ["gitops", "watch", str(repo.path), "--interval", "0"])
    assert isinstance(bad.exception, ConfigError) and "--interval '0'" in str(bad.exception)


def test_signed_skills_declared_in_git_are_published_once_and_a_changed_version_refused(
    releases: Releases, repo: Repo, key: Path
) -> None:
    skill = new_skill("hello", repo.path / "skills")
    sign_skill(skill, key)
    repo.commit("skills:\n  - path: skills/hello\n", "a skill")
    controller = _controller(releases, repo, key)
    assert _objects(controller.sync(dry_run=True))["Skill/hello@0.1.0"][0] == "OutOfSync"
    assert _objects(controller.sync())["Skill/hello@0.1.0"] == ("Synced", "Healthy", "published")
    assert _objects(controller.sync())["Skill/hello@0.1.0"] == ("Synced", "Healthy", "")
    (skill / "scripts" / "run.py").write_text("print('changed')\n")
    sign_skill(skill, key)
    repo.commit("skills:\n  - path: skills/hello\n# same version, other content\n", "changed")
    refused = controller.sync()
    assert refused.status == "failed" and "deploy.yaml:2" in refused.message
    assert "already published with other content" in refused.message
    unsigned = new_skill("unsigned", repo.path / "skills")
    repo.commit(f"skills:\n  - path: skills/{unsigned.name}\n", "unsigned")
    assert controller.sync().status == "failed"


@pytest.mark.slow
def test_a_controller_killed_mid_sync_leaves_the_old_or_the_new_state(
    releases: Releases, repo: Repo, key: Path, agent_dir: Path
) -> None:
    """``kill -9`` of ``shopfloor gitops sync`` at spread-out moments while it heals two deployments:
    never one agent on the new release and the other on the old; the next sync finishes the job."""
    second = repo.path / "agents" / "echo2"
    shutil.copytree(agent_dir, second)
    (second / "agent.yaml").write_text(
        (second / "agent.yaml").read_text().replace("name: echo", "name: echo2")
    )
    shutil.copytree(second, repo.path / "agents" / "echo2-next")
    (repo.path / "agents" / "echo2-next" / "tools.py").write_text(TOOLS_NEXT)
    both = (
        RELEASES
        + "  - agent: agents/echo2\n    version: 1.0.0\n  - agent: agents/echo2-next\n    version: 1.1.0\n"
        + "deployments:\n"
        + "".join(f"  - agent: {name}\n    release: 1.1.0\n" for name in ("echo", "echo2"))
    )
    repo.commit(both, "both on 1.1.0")
    controller = _controller(releases, repo, key)
    assert controller.sync().status == "synced"
    deployments = Deployments(releases)
    command = [sys.executable, "-m", "shopfloor.cli", "gitops", "sync", str(repo.path), "--key", str(key)]

    def drift() -> None:  # by hand, outside git: the sync heals both in one transaction
        for name in ("echo", "echo2"):
            deployments.deploy(f"{name}@1.0.0", actor="bob")

    def stables() -> tuple[str, ...]:
        return tuple(releases.store.deployment(name).stable for name in ("echo", "echo2"))  # type: ignore[union-attr]

    drift()
    started = time.monotonic()
    whole = subprocess.run(command, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert whole.returncode == 0, whole.stderr
    assert stables() == ("1.1.0", "1.1.0")
    seen: set[tuple[str, ...]] = set()
    for share in (0.3, 0.6, 0.8, 0.9, 0.95, 1.0):
        drift()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=took * share)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        assert stables() in {("1.0.0", "1.0.0"), ("1.1.0", "1.1.0")}, f"a mix after {share:.0%} of a sync"
        seen.add(stables())
    assert controller.sync().status in ("synced", "unchanged")
    assert stables() == ("1.1.0", "1.1.0")
    assert ("1.0.0", "1.0.0") in seen  # the early kills came before the sync changed anything


POLICY = """\
roles:
  auditor: {permissions: ["audit:read"], description: reads the audit log}
bindings:
  - {principal: "key:ab12", role: auditor, team: research}
limits:
  - {scope: "team:research", tokens_per_day: 1000000}
routes:
  big:
    upstreams: [{url: "http://127.0.0.1:9/v1", model: llama-70b, api_key: "secret:BIG"}]
aliases: {default: big}
"""


def test_roles_bindings_limits_and_routes_from_git_reach_every_process_settings(
    releases: Releases, repo: Repo, key: Path
) -> None:
    from shopfloor.config import load_settings

    repo.commit(POLICY, "policy")
    controller = _controller(releases, repo, key)
    planned = _objects(controller.sync(dry_run=True))
    assert planned["Role/auditor"][0] == "OutOfSync" and planned["Route/big"][0] == "OutOfSync"
    result = controller.sync()
    assert _objects(result)["Role/auditor"] == ("Synced", "Healthy", "applied")
    assert {"Binding/key:ab12->auditor@research", "Limit/team:research", "Alias/default"} <= set(
        _objects(result)
    )
    settings = load_settings()  # what a new process (the CLI, the server) reads
    assert settings.security.roles["auditor"].permissions == ["audit:read"]
    assert settings.security.limits[0].tokens_per_day == 1_000_000
    assert settings.gateway.routes["big"].upstreams[0].api_key == "secret:BIG"
    assert settings.gateway.aliases == {"default": "big"}
    assert controller.sync().status == "unchanged"
    # A literal upstream key in git is refused with its place; nothing changes.
    repo.commit(POLICY.replace('"secret:BIG"', "sk-live-123"), "a leaked key")
    leaked = controller.sync()
    assert (
        leaked.status == "failed"
        and "deploy.yaml:9" in leaked.message
        and "sk-live-123" not in leaked.message
    )
    assert load_settings().gateway.routes["big"].upstreams[0].api_key == "secret:BIG"
    # A route config.toml defines too is refused before anything is written.
    (releases.settings.home / "config.toml").write_text(
        '[gateway.routes.big]\nupstreams = [{url = "http://127.0.0.1:9/v1", model = "x"}]\n'
    )
    repo.commit(POLICY.replace("default: big", "default: big, fast: big"), "another alias")
    clash = controller.sync()
    assert clash.status == "failed" and "defined in" in clash.message and "remove one" in clash.message
    (releases.settings.home / "config.toml").unlink()
    # Removed from git: kept until --prune.
    repo.commit(POLICY.split("routes:")[0], "no routes")
    kept = controller.sync()
    assert _objects(kept)["Route/big"][0] == "OutOfSync" and "big" in load_settings().gateway.routes
    pruned = _controller(releases, repo, key, prune=True).sync()
    assert _objects(pruned)["Route/big"] == ("Synced", "Missing", "pruned")
    assert load_settings().gateway.routes == {} and load_settings().gateway.aliases == {}
    kinds = [e.kind for e in releases.audit.tail(40)]
    assert "gitops.policy_applied" in kinds and "gitops.policy_pruned" in kinds

"""``shopfloor skill keygen | sign | verify | publish | ls | show | new | prepare``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shopfloor.cli._app import app, console, err_console, get_services, get_settings, print_json
from shopfloor.errors import SkillSignatureError
from shopfloor.skills import (
    TrustPolicy,
    builtin_skill_names,
    fingerprint,
    generate_key,
    load_skill,
    new_skill,
    open_skill,
    prepare_environment,
    resolve_skill,
    sign_skill,
    verify_skill,
)

skill_app = typer.Typer(
    help="Agent Skills: create, sign, verify, publish and inspect skills.", no_args_is_help=True
)
app.add_typer(skill_app, name="skill")

JsonFlag = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def _keys_dir() -> Path:
    return get_settings().home / "keys"


def _private_key(key: str | None) -> Path:
    if key is not None and Path(key).is_file():
        return Path(key)
    keys = sorted(_keys_dir().glob("*.key"))
    if key is not None:
        path = _keys_dir() / f"{key}.key"
        if not path.is_file():
            raise SkillSignatureError(
                f"no key {key!r} in {_keys_dir()}; create it with `shopfloor skill keygen {key}`"
            )
        return path
    if len(keys) != 1:
        found = ", ".join(p.stem for p in keys) or "none"
        raise SkillSignatureError(
            f"choose a key with --key (keys in {_keys_dir()}: {found}); or `shopfloor skill keygen`"
        )
    return keys[0]


def _warn(skill_warnings: Any) -> None:
    for problem in skill_warnings:
        err_console.print(f"[yellow]warning:[/] {problem}", soft_wrap=True)


@skill_app.command("keygen")
def keygen_cmd(
    name: Annotated[str, typer.Argument(help="key name (files NAME.key and NAME.pub)")] = "default",
    json_output: JsonFlag = False,
) -> None:
    """Create an Ed25519 signing key under $SHOPFLOOR_HOME/keys (private key mode 0600)."""
    pair = generate_key(name, _keys_dir())
    result = {
        "name": pair.name,
        "private_key": str(pair.private_path),
        "public_key_file": str(pair.public_path),
        "public_key": pair.public_key,
        "fingerprint": fingerprint(pair.public_key),
    }
    if json_output:
        print_json(result)
        return
    console.print(f"created {pair.private_path} (private, 0600) and {pair.public_path}", soft_wrap=True)
    console.print(f"public key: {pair.public_key}", soft_wrap=True)
    console.print(
        "keys under $SHOPFLOOR_HOME/keys are trusted on this machine; elsewhere add to config.toml:"
    )
    console.print(f'  [trust]\n  trusted_keys = ["{pair.public_key}"]', markup=False)


@skill_app.command("sign")
def sign_cmd(
    path: Annotated[Path, typer.Argument(help="the skill directory")],
    key: Annotated[
        str | None, typer.Option("--key", help="key name under $SHOPFLOOR_HOME/keys, or a file")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Sign every file of the skill and its front matter; writes shopfloor.sig."""
    info = sign_skill(path, _private_key(key))
    if json_output:
        print_json({"path": str(path), "digest": info.digest, "key": info.key})
    else:
        console.print(f"signed {path} {info.digest} with key {fingerprint(info.key)}", soft_wrap=True)


@skill_app.command("verify")
def verify_cmd(
    path: Annotated[Path, typer.Argument(help="the skill directory")], json_output: JsonFlag = False
) -> None:
    """Check the signature under the trust policy; exit 1 and say what changed if it fails."""
    policy = TrustPolicy.from_settings(get_settings())
    required = TrustPolicy(trusted_keys=policy.trusted_keys, require_signed=True, strict=policy.strict)
    try:
        skill = open_skill(path, required)
        info = verify_skill(skill, required)
    except SkillSignatureError as exc:
        if json_output:
            print_json({"ok": False, "path": str(path), "error": str(exc)})
        else:
            err_console.print(f"[bold red]refused:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    key = info.key if info is not None else ""
    if json_output:
        print_json(
            {"ok": True, "name": skill.name, "version": skill.version, "digest": skill.digest, "key": key}
        )
    else:
        _warn(skill.warnings)
        console.print(
            f"[green]ok[/] {skill.name} {skill.version or ''} {skill.digest} key {fingerprint(key)}"
        )


@skill_app.command("publish")
def publish_cmd(
    path: Annotated[Path, typer.Argument(help="the skill directory")], json_output: JsonFlag = False
) -> None:
    """Store a signed skill version in the local registry (same version, other content: refused)."""
    registry = get_services().skill_registry()
    try:
        published = registry.publish(path)
    finally:
        registry.close()
    if json_output:
        print_json(published.to_json())
    else:
        console.print(f"published {published.name}@{published.version} {published.digest}", soft_wrap=True)


@skill_app.command("ls")
def ls_cmd(
    name: Annotated[str | None, typer.Argument(help="only versions of this skill")] = None,
    json_output: JsonFlag = False,
) -> None:
    """List published skill versions (and the built-in skills)."""
    registry = get_services().skill_registry()
    try:
        rows = registry.list(name)
        rows += [registry.get(n) for n in builtin_skill_names() if name in (None, n)]
    finally:
        registry.close()
    if json_output:
        print_json([row.to_json() for row in rows])
        return
    table = Table("skill", "version", "digest", "signer", "description")
    for row in rows:
        signer = "builtin" if row.builtin else (fingerprint(row.signer) if row.signer else "unsigned")
        table.add_row(row.name, row.version, row.digest[:19], signer, row.description[:60])
    console.print(table)


@skill_app.command("show")
def show_cmd(
    ref: Annotated[str, typer.Argument(help="name, name@version, name@sha256:DIGEST or a skill directory")],
    json_output: JsonFlag = False,
) -> None:
    """Show a skill's front matter, schemas, files and instructions."""
    if Path(ref).is_dir():
        skill = load_skill(ref, strict=False)
    else:
        registry = get_services().skill_registry()
        try:
            skill = open_skill(registry.resolve(ref), registry.policy)
        finally:
            registry.close()
    files = [f.path for f in skill.manifest.files]
    result: dict[str, Any] = {
        "name": skill.name,
        "version": skill.version,
        "digest": skill.digest,
        "path": str(skill.path),
        "front_matter": skill.front_matter,
        "runtime": skill.config.runtime if skill.config else None,
        "entry": skill.config.entry if skill.config else None,
        "input_schema": skill.input_schema,
        "output_schema": skill.output_schema,
        "files": files,
        "warnings": [str(w) for w in skill.warnings],
        "body": skill.body,
    }
    if json_output:
        print_json(result)
        return
    _warn(skill.warnings)
    console.print(
        f"[bold]{skill.name}[/] {skill.version or ''}  {skill.digest}\n{skill.description}\n", soft_wrap=True
    )
    console.print(f"path: {skill.path}\nfiles: {', '.join(files)}", soft_wrap=True)
    if skill.config:
        console.print(
            f"entry: {skill.config.entry} ({skill.config.runtime}), timeout {skill.config.timeout:g}s"
        )
    console.print()
    console.print(skill.body, markup=False)


@skill_app.command("new")
def new_cmd(
    name: Annotated[str, typer.Argument(help="the skill name (lowercase letters, digits, hyphens)")],
    directory: Annotated[Path, typer.Option("--dir", help="where to create it")] = Path("."),
    json_output: JsonFlag = False,
) -> None:
    """Scaffold a valid skill: SKILL.md, shopfloor.yaml, scripts/run.py."""
    path = new_skill(name, directory)
    if json_output:
        print_json({"path": str(path), "name": name})
    else:
        console.print(
            f"created {path}; next: `shopfloor skill sign {path}` then `shopfloor skill publish {path}`"
        )


@skill_app.command("prepare")
def prepare_cmd(
    ref: Annotated[str, typer.Argument(help="name, name@version, name@sha256:DIGEST or a skill directory")],
    json_output: JsonFlag = False,
) -> None:
    """Install a skill's dependencies now (once per dependency set), so its first call does not wait."""
    settings = get_settings()
    skill = resolve_skill(ref, settings)
    env = asyncio.run(prepare_environment(skill, settings))
    result = {
        "name": skill.name,
        "digest": skill.digest,
        "environment": str(env.path or ""),
        "installed": env.installed,
    }
    if json_output:
        print_json(result)
    elif env.path is None:
        console.print(f"{skill.name}: no dependencies to install", soft_wrap=True)
    else:
        state = "installed" if env.installed else "already installed"
        console.print(f"{skill.name}: dependencies {state} in {env.path}", soft_wrap=True)

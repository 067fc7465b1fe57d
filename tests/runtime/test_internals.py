"""DBOS's private internals are used in one module, checked against the DBOS they were written for."""

from __future__ import annotations

import ast
import collections
import datetime
import decimal
import enum
import json
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOSContextSetAuth, DBOSPortableJSONSerializer
from dbos import _context as dbos_context

from shopfloor.errors import DurableEngineError
from shopfloor.runtime._dbos_internals import (
    DBOS_VERSION,
    FINGERPRINTS,
    _check_key,
    _serialization,
    _snapshot_step_context,
    check_dbos,
    fingerprints,
    serialize_output,
)

SRC = Path(__file__).resolve().parents[2] / "src"
OWNER = SRC / "shopfloor" / "runtime" / "_dbos_internals.py"


def _private_dbos_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            # ``from dbos import _core`` reaches a private module too.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [f"{path.relative_to(SRC)}:{node.lineno}: {name}" for name in names if _private(name)]
    return found


def _private(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "dbos" and any(part.startswith("_") for part in parts[1:])


def test_only_the_internals_module_imports_private_dbos_modules() -> None:
    offenders = [
        hit for path in sorted(SRC.rglob("*.py")) if path != OWNER for hit in _private_dbos_imports(path)
    ]
    assert offenders == [], "import these through shopfloor.runtime._dbos_internals:\n" + "\n".join(offenders)
    assert _private_dbos_imports(OWNER), "the rule looks at the module that does import them"


def test_the_rule_sees_every_form_of_private_import(tmp_path: Path) -> None:
    probe = SRC / "probe_never_committed.py"
    forms = [
        "import dbos._core",
        "from dbos._error import X",
        "from dbos import _sys_db",
        "from dbos import DBOS",
    ]
    try:
        probe.write_text("\n".join(forms) + "\n")
        hits = _private_dbos_imports(probe)
    finally:
        probe.unlink()
    assert [hit.partition(": ")[2] for hit in hits] == [
        "dbos._core",
        "dbos._error",
        "dbos._error.X",
        "dbos._sys_db",
    ]


def test_the_installed_dbos_is_the_one_the_internals_were_written_for() -> None:
    check_dbos()
    assert set(FINGERPRINTS) == set(fingerprints())


def test_another_dbos_version_is_refused_by_name() -> None:
    with pytest.raises(DurableEngineError, match=rf"dbos 3\.5\.0 is installed.*install dbos=={DBOS_VERSION}"):
        check_dbos(installed="3.5.0")


def test_a_changed_internal_is_refused_by_name() -> None:
    found = fingerprints()
    found["SystemDatabase._check_owner_txn"] = "0" * 16
    del found["dbos._outcome.Pending._wrap"]
    with pytest.raises(DurableEngineError) as caught:
        check_dbos(installed=DBOS_VERSION, found=found)
    message = str(caught.value)
    assert "SystemDatabase._check_owner_txn" in message and "dbos._outcome.Pending._wrap" in message
    assert "SystemDatabase.record_operation_result," not in message  # only what changed is named


def test_a_passed_check_is_remembered_only_for_the_files_it_read(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    check_dbos(cache_dir=cache)
    remembered = json.loads((cache / "dbos-check.json").read_text())
    assert remembered == {"passed": _check_key(DBOS_VERSION)}
    check_dbos(cache_dir=cache)  # from the cache: the same pass, nothing rewritten
    assert json.loads((cache / "dbos-check.json").read_text()) == remembered
    # What was remembered never stands in for a check of other sources or another version.
    found = fingerprints()
    found["SystemDatabase._check_owner_txn"] = "0" * 16
    with pytest.raises(DurableEngineError, match=r"SystemDatabase\._check_owner_txn"):
        check_dbos(installed=DBOS_VERSION, found=found, cache_dir=cache)
    with pytest.raises(DurableEngineError, match=r"dbos 3\.5\.0 is installed"):
        check_dbos(installed="3.5.0", cache_dir=cache)
    # A pass remembered for other files (another key) is checked again, then replaced.
    (cache / "dbos-check.json").write_text(json.dumps({"passed": "0" * 64}))
    check_dbos(cache_dir=cache)
    assert json.loads((cache / "dbos-check.json").read_text()) == remembered
    (cache / "dbos-check.json").write_text("not json")
    check_dbos(cache_dir=cache)
    assert json.loads((cache / "dbos-check.json").read_text()) == remembered


class _Level(enum.IntEnum):
    HIGH = 3


class _Ordered(collections.OrderedDict[str, Any]):
    pass


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"result": {"text": '{"tool": "calculator"}', "usage": {"input_tokens": 3}}, "elapsed": 0.25},
        {"result": [1, 2.5, True, None, 'caf\u00e9 \u2603 "q" \\ \n'], "elapsed": 1e300},
        {"result": (1, (2, 3)), "elapsed": 0.0},  # tuples: DBOS's path (written as lists)
        {"result": {1: "a"}},  # a number key: refused by DBOS's portable JSON
        {"result": {None: "a"}},
        {"result": {"at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)}},
        {"result": {"set": {3}, "amount": decimal.Decimal("1.50")}},
        {"result": float("nan")},
        {"result": _Level.HIGH, "big": 10**40, "neg": -0.0},
        {"result": _Ordered(b=1, a=2)},
        {"result": object()},
        "\ufeff a text that starts with a BOM ",  # read back without ``json.loads``'s checks
        [" ", "\t\n", 1.5],
    ],
)
def test_a_step_output_is_serialised_as_dbos_serialises_it(value: Any) -> None:
    """The lean path's record of a step's output: DBOS's own text and format name, or its own error."""
    serializer = DBOSPortableJSONSerializer()
    try:
        expected: Any = _serialization.serialize_value(value, None, serializer)
    except Exception as exc:
        with pytest.raises(type(exc)):
            serialize_output(value, serializer)
        return
    assert serialize_output(value, serializer) == expected


def _workflow_context(roles: list[str] | None) -> Any:
    ctx = dbos_context.DBOSContext()
    ctx.workflow_id, ctx.function_id, ctx.owner_xid, ctx.shard_key = "wf", 3, "xid", "shard"
    ctx.authenticated_user, ctx.authenticated_roles, ctx.assumed_role = "alice", roles, "auditor"
    ctx.parent_workflow_id, ctx.workflow_deadline_epoch_ms = "parent", 1_700_000_000_000
    ctx.executor_id, ctx.app_id = "executor-7", "app-9"
    ctx.serialization_type = _serialization.WorkflowSerializationFormat.PORTABLE
    return ctx


def _snapshot(ctx: Any, take: Any, scope: tuple[str, list[str]] | None) -> Any:
    token = dbos_context._dbos_context_var.set(ctx)
    try:
        if scope is None:
            return take()
        with DBOSContextSetAuth(*scope):
            return take()
    finally:
        dbos_context._dbos_context_var.reset(token)


@pytest.mark.parametrize("roles", [None, ["admin", "ops"]])
@pytest.mark.parametrize("scope", [None, ("bob", ["guest"])])
def test_a_steps_context_is_the_one_dbos_snapshots(
    roles: list[str] | None, scope: tuple[str, list[str]] | None
) -> None:
    """The lean ``DBOS.run_step_async``'s step context: DBOS's own snapshot, field for field and in
    the same order, the workflow's step counter moved on alike, the roles copied, not shared."""
    blank = dict(vars(dbos_context.DBOSContext()))
    ours_of, theirs_of = _workflow_context(roles), _workflow_context(roles)
    ours = _snapshot(ours_of, lambda: _snapshot_step_context(blank), scope)
    theirs = _snapshot(theirs_of, lambda: dbos_context.snapshot_step_context(reserve_sleep_id=False), scope)
    assert type(ours) is type(theirs)
    assert list(vars(ours).items()) == list(vars(theirs).items())
    assert vars(ours_of) == vars(theirs_of) and ours_of.function_id == 4
    assert ours.function_id == 4 and ours.parent_workflow_fid == 3
    assert ours.authenticated_user == ("alice" if scope is None else "bob")
    for mutable in ("authenticated_roles", "used_datasources", "context_spans"):
        if getattr(ours, mutable) is not None:
            assert getattr(ours, mutable) is not getattr(ours_of, mutable)
            assert getattr(ours, mutable) is not blank.get(mutable)


def test_outside_a_workflow_the_context_is_handed_over_as_it_is() -> None:
    blank = dict(vars(dbos_context.DBOSContext()))
    assert _snapshot_step_context(blank) is None
    in_step = _workflow_context(None)
    in_step.curr_step_function_id = 3
    plain = dbos_context.DBOSContext()
    for ctx in (in_step, plain):
        assert _snapshot(ctx, lambda: _snapshot_step_context(blank), None) is ctx
        assert ctx.function_id in (3, -1)

"""The Berkeley Function Calling Leaderboard (BFCL) through the harness: its questions, functions and
possible answers read from the files of the installed PyPI package ``bfcl-eval``, and its own AST
checker loaded from the same package.

``bfcl-eval`` pins dependencies that conflict with ours (numpy, provider SDKs) and importing its
package pulls every model handler, so it is never imported: the set-up installs it without its
dependencies into a folder of its own (``scripts/bootstrap.sh``: ``pip install --no-deps --target
.venv/share/shopfloor/bfcl-eval bfcl-eval==2026.3.23``; ``[evals] bfcl_path`` in the settings names
another), the data files are read as files, and the checker's few modules (pure Python) are loaded
from their files, with the one constant the checker takes from the handlers' configuration
(``MODEL_CONFIG_MAPPING``) given for the prompting mode this harness runs.

Each item is run in BFCL's prompting mode: the agent is asked, in one user message, BFCL's default
system prompt (its own template, with the functions as JSON) followed by the question, and answers with
Python call syntax ``[f(a=1), g(b=2)]``, which ``decode_calls`` parses without evaluating anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Literal

from pydantic import Field

from shopfloor.config import Settings
from shopfloor.errors import EvalError, SourceLocation, SpecError
from shopfloor.evals._dataset import MAX_DATASET_BYTES, Dataset, Item
from shopfloor.evals._sources import DatasetSource, SourceOptions

__all__ = ["BFCL_CATEGORIES", "BfclPackage", "BfclSource", "bfcl_prompt"]

#: the single-turn Python categories BFCL scores with its AST checker
BFCL_CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
#: the data files' version prefix in the package pinned by the set-up
BFCL_VERSION = "BFCL_v4"
#: the model name handed to the checker; its configuration says names keep their dots (prompting mode)
CHECKER_MODEL = "shopfloor-prompting"
_PACKAGES = (
    "bfcl_eval",
    "bfcl_eval.constants",
    "bfcl_eval.eval_checker",
    "bfcl_eval.eval_checker.ast_eval",
    "bfcl_eval.eval_checker.ast_eval.type_convertor",
)
#: the checker's modules, in the order they import each other
_CHECKER_MODULES = (
    "bfcl_eval.constants.enums",
    "bfcl_eval.constants.type_mappings",
    "bfcl_eval.eval_checker.ast_eval.type_convertor.java_type_converter",
    "bfcl_eval.eval_checker.ast_eval.type_convertor.js_type_converter",
    "bfcl_eval.eval_checker.ast_eval.ast_checker",
)


def bfcl_install_dir() -> Path:
    """Where the set-up installs the package: beside this interpreter's environment, so that it is
    found whatever the user's home (``<venv>/share/shopfloor/bfcl-eval``)."""
    return Path(sys.prefix) / "share" / "shopfloor" / "bfcl-eval"


#: held while the package's modules are staged in ``sys.modules`` (itself process-global): a dataset
#: read in a worker thread and a checker loaded on the event loop must not see each other's staging
_STAGING = threading.Lock()


def default_package_dirs(settings: Settings) -> list[Path]:
    """Where the ``bfcl_eval`` package is looked for: the configured folder, the set-up's folder,
    then this interpreter's path (found without importing it)."""
    dirs = []
    if settings.evals.bfcl_path is not None:
        dirs.append(Path(settings.evals.bfcl_path).expanduser() / "bfcl_eval")
    dirs.append(bfcl_install_dir() / "bfcl_eval")
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    return dirs


@dataclass(frozen=True, kw_only=True)
class BfclPackage:
    """The files of an installed ``bfcl_eval`` package."""

    root: Path

    @classmethod
    def locate(cls, settings: Settings) -> BfclPackage:
        tried = default_package_dirs(settings)
        for folder in tried:
            if (folder / "data" / f"{BFCL_VERSION}_simple_python.json").is_file():
                return cls(root=folder)
        raise EvalError(
            "the BFCL data (PyPI bfcl-eval) is not installed; looked in "
            + ", ".join(map(str, tried))
            + ": run scripts/bootstrap.sh, or `pip install --no-deps --target DIR bfcl-eval==2026.3.23`"
            " and set [evals] bfcl_path = DIR"
        )

    def question_file(self, category: str) -> Path:
        return self.root / "data" / f"{BFCL_VERSION}_{category}.json"

    def answer_file(self, category: str) -> Path:
        return self.root / "data" / "possible_answer" / f"{BFCL_VERSION}_{category}.json"

    def module(self, name: str, *, extra: dict[str, ModuleType] | None = None) -> ModuleType:
        """Load the package's module ``name`` (dotted) and the modules it imports from ``_CHECKER_MODULES``
        from their files, registered in ``sys.modules`` only while they load."""
        wanted = _CHECKER_MODULES[: _CHECKER_MODULES.index(name) + 1] if name in _CHECKER_MODULES else (name,)
        staged: dict[str, ModuleType] = {}
        # the packages as bare namespaces: none of their ``__init__`` files runs
        for package in _PACKAGES:
            staged[package] = _namespace(package, self.root)
        staged |= extra or {}
        with _STAGING:
            return self._stage(wanted, staged)

    def _stage(self, wanted: tuple[str, ...], staged: dict[str, ModuleType]) -> ModuleType:
        saved = {
            key: sys.modules[key] for key in sys.modules if key == "bfcl_eval" or key.startswith("bfcl_eval.")
        }
        loaded: ModuleType | None = None
        try:
            for key in saved:
                del sys.modules[key]
            sys.modules.update(staged)
            for dotted in wanted:
                loaded = _load(dotted, self.root)
        finally:
            for key in [k for k in sys.modules if k == "bfcl_eval" or k.startswith("bfcl_eval.")]:
                del sys.modules[key]
            sys.modules.update(saved)
        assert loaded is not None
        return loaded

    def checker(self) -> ModuleType:
        """BFCL's ``ast_checker`` module, its model configuration given for the prompting mode."""
        config = ModuleType("bfcl_eval.constants.model_config")
        config.MODEL_CONFIG_MAPPING = {CHECKER_MODEL: SimpleNamespace(underscore_to_dot=False)}  # type: ignore[attr-defined]
        return self.module("bfcl_eval.eval_checker.ast_eval.ast_checker", extra={config.__name__: config})

    def prompts(self) -> ModuleType:
        """BFCL's prompt templates (``constants/default_prompts.py``: constants only)."""
        return self.module("bfcl_eval.constants.default_prompts")


def _namespace(name: str, root: Path) -> ModuleType:
    module = ModuleType(name)
    module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
    return module


def _load(dotted: str, root: Path) -> ModuleType:
    path = root.joinpath(*dotted.split(".")[1:]).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(dotted, path)
    if spec is None or spec.loader is None:
        raise EvalError(f"cannot load {path} of the BFCL package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[dotted] = module
    try:
        spec.loader.exec_module(module)
    except (OSError, SyntaxError, ImportError) as exc:
        raise EvalError(f"cannot load {path} of the BFCL package: {exc}") from exc
    return module


def bfcl_prompt(prompts: ModuleType, functions: list[dict[str, Any]]) -> str:
    """BFCL's default system prompt (``DEFAULT_SYSTEM_PROMPT_FORMAT``: Python calls, no tag, functions
    as JSON, plain text, the classic style), built from the package's own templates."""
    style = prompts.PROMPT_STYLE_TEMPLATES["classic"]
    tool_call_format = style["tool_call_no_tag"].format(
        output_format=prompts.OUTPUT_FORMAT_MAPPING["python"],
        param_types=prompts.PARAM_TYPE_MAPPING["python"],
    )
    template: str = prompts.PROMPT_TEMPLATE_MAPPING["plaintext"]
    return template.format(
        persona=style["persona"],
        task=style["task"],
        tool_call_format=tool_call_format,
        multiturn_behavior=style["multiturn_behavior"],
        available_tools=style["available_tools"].format(
            format="json", functions=json.dumps(functions, indent=4)
        ),
    )


class BfclOptions(SourceOptions):
    category: Literal[BFCL_CATEGORIES] = Field(description="a BFCL single-turn Python category")  # type: ignore[valid-type]


def _read_jsonl(path: Path) -> tuple[bytes, list[tuple[int, dict[str, Any]]]]:
    file = str(path)
    try:
        if path.stat().st_size > MAX_DATASET_BYTES:
            raise SpecError(
                [(SourceLocation(file=file), f"over the {MAX_DATASET_BYTES} byte limit of a dataset")]
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError([(SourceLocation(file=file), f"cannot read BFCL's file: {exc.strerror}")]) from None
    rows = []
    for number, line in enumerate(raw.decode().splitlines(), start=1):
        if line.strip():
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SpecError(
                    [(SourceLocation(file=file, line=number), f"invalid JSON: {exc.msg}")]
                ) from None
            if not isinstance(value, dict) or "id" not in value:
                raise SpecError([(SourceLocation(file=file, line=number), "expected an object with an id")])
            rows.append((number, value))
    return raw, rows


class BfclSource(DatasetSource):
    """A bounded subset of one BFCL category: ``{source: bfcl, category: simple_python, limit: 20}``."""

    Options = BfclOptions

    def load(self) -> Dataset:
        opts = self.options
        assert isinstance(opts, BfclOptions)
        package = BfclPackage.locate(self.settings)
        questions_raw, questions = _read_jsonl(package.question_file(opts.category))
        answers_raw, answers = _read_jsonl(package.answer_file(opts.category))
        truth = {str(row["id"]): row.get("ground_truth") for _, row in answers}
        if opts.ids is not None:
            wanted = set(opts.ids)
            missing = sorted(wanted - {str(row["id"]) for _, row in questions})
            if missing:
                raise EvalError(f"BFCL {opts.category} has no items {', '.join(missing[:10])}")
            questions = [(n, row) for n, row in questions if str(row["id"]) in wanted]
        end = None if opts.limit is None else opts.offset + opts.limit
        questions = questions[opts.offset : end]
        if not questions:
            raise EvalError(f"BFCL {opts.category}: the selection (offset {opts.offset}) has no items")
        prompts = package.prompts()
        items = []
        answer_file = package.answer_file(opts.category).name
        for number, row in questions:
            item_id = str(row["id"])
            if item_id not in truth:
                raise SpecError(
                    [
                        (
                            SourceLocation(file=str(package.question_file(opts.category)), line=number),
                            f"item {item_id} has no possible answer in {answer_file}",
                        )
                    ]
                )
            functions = row.get("function") or []
            turns = row.get("question") or [[]]
            question = "\n\n".join(
                str(message.get("content", "")) for message in turns[0] if isinstance(message, dict)
            )
            items.append(
                Item(
                    id=item_id,
                    input=f"{bfcl_prompt(prompts, functions)}\n{question}",
                    expected=truth[item_id],
                    metadata={"benchmark": "bfcl", "category": opts.category, "functions": functions},
                    tags=(opts.category,),
                )
            )
        selection = json.dumps([opts.category, [item.id for item in items]]).encode()
        digest = hashlib.sha256()
        for part in (questions_raw, answers_raw, selection):
            digest.update(hashlib.sha256(part).digest())
        return Dataset(
            path=package.question_file(opts.category),
            digest=f"sha256:{digest.hexdigest()}",
            items=tuple(items),
        )

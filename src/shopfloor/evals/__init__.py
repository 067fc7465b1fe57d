"""The evaluation harness: suites (YAML) over datasets, each item a durable run of the agent in a
fresh workspace, scored from what it recorded; results with confidence intervals, comparisons,
gates and a self-contained report. ``build_harness(services)`` makes the ``Harness``."""

from shopfloor.evals._agentdojo import (
    AGENTDOJO_ATTACKS,
    AGENTDOJO_SUITES,
    SCENARIO_FILE,
    STATE_FILE,
    AgentDojoSource,
    Scenario,
    initial_environment,
    task_suite,
)
from shopfloor.evals._agentdojo_scorer import AgentDojoScorer
from shopfloor.evals._agentdojo_tools import AgentDojoTool, agentdojo_tools
from shopfloor.evals._benchmarks import benchmark_tables, published_bfcl
from shopfloor.evals._bfcl import BFCL_CATEGORIES, BfclPackage, BfclSource, bfcl_prompt
from shopfloor.evals._bfcl_scorer import BfclScorer, decode_calls
from shopfloor.evals._canary import RunQualityJudge, finished_evaluations
from shopfloor.evals._case import build_case, calls_of
from shopfloor.evals._compare import compare, sign_test
from shopfloor.evals._dataset import (
    MAX_DATASET_BYTES,
    Dataset,
    Item,
    check_item_path,
    dataset_loaders,
    load_dataset,
    load_datasets,
)
from shopfloor.evals._harness import EvalOptions, Harness, ProgressFn, build_harness, score_case
from shopfloor.evals._report import report_html, report_json
from shopfloor.evals._results import ResultWriter
from shopfloor.evals._scorer import (
    Case,
    Metric,
    ScoreOptions,
    Scorer,
    ScorerEnv,
    ToolCallRecord,
    eval_scorers,
    expected_value,
)
from shopfloor.evals._sources import DatasetSource, SourceEntry, SourceOptions, dataset_sources, load_source
from shopfloor.evals._stats import bootstrap_ci, evaluate_gates, item_values, pass_at_k, pass_hat_k, summarise
from shopfloor.evals._store import EvalItemRow, EvalRecord, EvalStore, ItemResult, ItemState, item_run_id
from shopfloor.evals._suite import GateSpec, LoadedSuite, ScorerEntry, SuiteSpec, build_scorers, load_suite

__all__ = [
    "AGENTDOJO_ATTACKS",
    "AGENTDOJO_SUITES",
    "BFCL_CATEGORIES",
    "MAX_DATASET_BYTES",
    "SCENARIO_FILE",
    "STATE_FILE",
    "AgentDojoScorer",
    "AgentDojoSource",
    "AgentDojoTool",
    "BfclPackage",
    "BfclScorer",
    "BfclSource",
    "Case",
    "Dataset",
    "DatasetSource",
    "EvalItemRow",
    "EvalOptions",
    "EvalRecord",
    "EvalStore",
    "GateSpec",
    "Harness",
    "Item",
    "ItemResult",
    "ItemState",
    "LoadedSuite",
    "Metric",
    "ProgressFn",
    "ResultWriter",
    "RunQualityJudge",
    "Scenario",
    "ScoreOptions",
    "Scorer",
    "ScorerEntry",
    "ScorerEnv",
    "SourceEntry",
    "SourceOptions",
    "SuiteSpec",
    "ToolCallRecord",
    "agentdojo_tools",
    "benchmark_tables",
    "bfcl_prompt",
    "bootstrap_ci",
    "build_case",
    "build_harness",
    "build_scorers",
    "calls_of",
    "check_item_path",
    "compare",
    "dataset_loaders",
    "dataset_sources",
    "decode_calls",
    "eval_scorers",
    "evaluate_gates",
    "expected_value",
    "finished_evaluations",
    "initial_environment",
    "item_run_id",
    "item_values",
    "load_dataset",
    "load_datasets",
    "load_source",
    "load_suite",
    "pass_at_k",
    "pass_hat_k",
    "published_bfcl",
    "report_html",
    "report_json",
    "score_case",
    "sign_test",
    "summarise",
    "task_suite",
]

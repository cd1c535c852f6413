"""Evaluation: first-stage and re-ranked runs, metrics (ranx), significance, and the results table's rows."""

from .choice import (
    Candidate,
    SystemChoice,
    candidate_run,
    choose_in_steps,
    choose_system,
    gate_folds,
    test_comparison,
)
from .metrics import RunDict, evaluate_run, per_query_metrics, ranked
from .rows import Row
from .runs import ALPHAS, first_stage_run, read_trec, rerank_run, tune_alpha, write_trec
from .stats import Comparison, adjust_pvalues, analyse, bootstrap_ci, compare_systems, paired_test

__all__ = ["ALPHAS", "Candidate", "Comparison", "SystemChoice", "candidate_run", "choose_in_steps", "choose_system", "gate_folds", "test_comparison", "Row", "RunDict", "adjust_pvalues", "analyse", "bootstrap_ci", "compare_systems",
           "evaluate_run", "first_stage_run", "paired_test", "per_query_metrics", "ranked", "read_trec", "rerank_run",
           "tune_alpha", "write_trec"]

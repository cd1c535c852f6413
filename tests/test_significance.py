"""The paired tests behind every "significant" in hardneg's reports: seeded, so a rerun gives the same p-values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ttest_rel

from hardneg.evaluate import compare_systems, evaluate_run, paired_test


def test_fisher_matches_the_exact_sign_flip_distribution():
    # three equal differences: |mean| reaches the observed 1 only when all signs agree, 2 of the 8 assignments
    p = paired_test([0, 0, 0], [1, 1, 1], "fisher", permutations=20000, seed=7)
    assert p == pytest.approx(0.25, abs=0.01)
    # a mixed case enumerated by hand: differences (2, -1, 1), observed |mean| 2/3; of the 8 sign assignments
    # |2a - b + c| >= 2 for all but (+,+,-) and (-,-,+) -> 6/8
    assert paired_test([0, 1, 0], [2, 0, 1], "fisher", permutations=20000, seed=7) == pytest.approx(0.75, abs=0.01)


def test_fisher_is_reproducible_and_bounded():
    rng = np.random.default_rng(0)
    control = rng.random(300)
    treatment = control + rng.normal(0.02, 0.2, 300)
    first = paired_test(control, treatment, "fisher", 5000, seed=42)
    assert first == paired_test(control, treatment, "fisher", 5000, seed=42)  # ranx's numba test was not
    assert 0 < first <= 1
    # a difference no flip can reach still gets the smallest estimate, never 0
    assert paired_test(np.zeros(40), np.ones(40), "fisher", 999, seed=1) == pytest.approx(1 / 1000)
    assert paired_test([0.5, 0.2], [0.5, 0.2]) == 1.0


def test_student_is_scipys_paired_t_test():
    control, treatment = [0.1, 0.5, 0.3, 0.9], [0.2, 0.7, 0.2, 1.0]
    assert paired_test(control, treatment, "student") == pytest.approx(ttest_rel(treatment, control).pvalue)
    with pytest.raises(ValueError, match="fisher or student"):
        paired_test(control, treatment, "wilcoxon")


def test_compare_systems_counts_wins_and_corrects():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    good = {"q1": {"d1": 2.0, "d9": 1.0}, "q2": {"d2": 2.0, "d9": 1.0}, "q3": {"d9": 2.0, "d3": 1.0}}
    bad = {"q1": {"d9": 2.0, "d1": 1.0}, "q2": {"d9": 2.0, "d2": 1.0}, "q3": {"d9": 2.0, "d3": 1.0}}
    same = {q: dict(docs) for q, docs in bad.items()}
    [bad_good, bad_same, good_same] = compare_systems(qrels, {"bad": bad, "good": good, "same": same}, ["mrr@10"])
    assert (bad_good.wins, bad_good.ties, bad_good.losses) == (2, 1, 0)
    expected = evaluate_run(qrels, good, ["mrr@10"])["mrr@10"] - evaluate_run(qrels, bad, ["mrr@10"])["mrr@10"]
    assert bad_good.delta == pytest.approx(expected)
    assert bad_same.p_value == 1.0 and bad_same.delta == 0 and not bad_same.significant
    assert good_same.delta == pytest.approx(-expected) and good_same.losses == 2
    assert all(c.p_adjusted >= c.p_value for c in (bad_good, bad_same, good_same))

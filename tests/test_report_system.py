"""The report's first section, the system a run hands over: what it tells a user whose fine-tuned first stage
gained on dev but was not handed over."""

from __future__ import annotations

from types import SimpleNamespace

from hardneg.report.build import system_section
from hardneg.report.labels import unclear_tuning
from hardneg.report.results import system_markdown

UNTRAINED, TUNED = "ensemble", "ensemble (fine-tuned)"


def step(kept: str, cv_gain: float | None, dev_queries: int = 81) -> dict:
    return {"first_stage": kept, "reranker": None, "mode": "first stage", "baseline": UNTRAINED, "metric": "ndcg@10",
            "dev_queries": dev_queries, "cv_gain": cv_gain,
            "best_candidate": {"first_stage": TUNED, "reranker": None, "weight": 0.0, "mode": "first stage"}}


def choice(kept: str, cv_gain: float | None, steps: bool = True) -> dict:
    first = step(kept, cv_gain)
    return {**first, "reason": "in two steps. ...", "weight": None, "depth": None,
            **({"steps": [first, step(kept, 0.01)]} if steps else {})}


def settings(**config) -> dict:
    return {"config": {"dev_fraction": 0.1, **config}}


def test_an_unclear_gain_of_the_tuned_first_stage_says_how_to_weigh_it_on_more_queries():
    narrow = settings(embedder={"dev_fraction": None})  # dev_fraction's 10% only
    hint = unclear_tuning(choice(UNTRAINED, 0.031), narrow)
    assert "+0.031 ndcg@10" in hint and "81 dev queries" in hint and "`embedder.dev_fraction: 0.2`" in hint
    lines = system_markdown({"choice": choice(UNTRAINED, 0.031)}, ["ndcg@10"], narrow)
    assert hint in lines and lines[0] == "## The trained system"


def test_a_run_whose_dev_split_is_already_wide_is_told_to_add_queries():
    hints = [unclear_tuning(choice(UNTRAINED, 0.031), s)
             for s in (settings(), settings(embedder={"dev_fraction": 0.3}), settings(dev_fraction=0.25))]
    for hint in hints:  # the first: the embedder section left out of the dump at its defaults (0.2)
        assert "+0.031" in hint and "add training queries" in hint and "`embedder.dev_fraction" not in hint


def test_no_hint_when_the_tuned_stage_was_handed_over_lost_on_dev_or_the_choice_had_one_step():
    assert unclear_tuning(choice(TUNED, 0.031), settings()) == ""
    assert unclear_tuning(choice(UNTRAINED, -0.004), settings()) == ""
    assert unclear_tuning(choice(UNTRAINED, None), settings()) == ""
    assert unclear_tuning(choice(UNTRAINED, 0.031, steps=False), settings()) == ""
    assert not any("dev_fraction" in line for line in system_markdown({"choice": choice(TUNED, 0.031)}, ["ndcg@10"]))


def test_both_reports_say_when_the_gain_on_test_is_not_clear_or_is_a_loss():
    def test(low: float, high: float) -> dict:
        return {"ndcg@10": {"first_stage": 0.70, "system": 0.71, "gain": 0.01, "low": low, "high": high,
                            "p_value": 0.3, "queries": 80}}

    def texts(low: float, high: float) -> str:
        system = {"choice": choice(TUNED, 0.05), "test": test(low, high)}
        html = system_section(SimpleNamespace(system=system, settings=settings()))
        paragraphs = [str(part) for block in html.blocks for part in getattr(block, "parts", ())]
        return "\n".join(system_markdown(system, ["ndcg@10"])) + "\n" + "\n".join(paragraphs)

    unclear, worse, clear = texts(-0.01, 0.03), texts(-0.05, -0.01), texts(0.01, 0.03)
    assert unclear.count("the gain is not clear") == 2 and "Warning" not in unclear
    assert worse.count("worse than the first stage") == 2
    assert "not clear" not in clear and "Warning" not in clear

"""How metrics and systems are named in results.md, the report and its figures."""

from __future__ import annotations

from ..evaluate import Row
from ..first_stage_config import EmbedderConfig

METRIC_LABELS = {"mrr@3": "MRR@3", "mrr@10": "MRR@10", "ndcg@10": "nDCG@10", "precision@1": "P@1",
                 "precision@5": "P@5", "recall@10": "R@10", "recall@100": "R@100", "map": "MAP"}

# The metric the report's intervals, bar charts and wins/losses are drawn for.
PRIMARY = "ndcg@10"

# The order of a first stage's rows in every table and chart.
MODES = ("first stage", "rerank", "interpolated")


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def system_of(row: Row) -> str:
    """The name analysis.json gives a results row's system."""
    if row.mode == "first stage":
        return "first stage"
    return f"{row.reranker} + first stage" if row.mode == "interpolated" else row.reranker


def system_label(system: str, row: Row | None = None) -> str:
    """How a system of analysis.json reads in the report."""
    if system == "first stage":
        return "first stage alone"
    if system == "base":
        return "none (base model, no fine-tuning)"
    if system.endswith(" + first stage") and row is not None and row.alpha is not None:
        return f"{system} (alpha={row.alpha:.1f})"
    return system


def rows_of(rows: list[Row], first_stage: str) -> list[Row]:
    """One first stage's rows: the first stage alone, then re-ranked, then interpolated."""
    return [r for mode in MODES for r in rows if r.first_stage == first_stage and r.mode == mode]


def chosen_system_label(choice: dict) -> str:
    """What a run hands over, in words (``choice``: a SystemChoice as results.json stores it)."""
    first, baseline = choice["first_stage"], choice.get("baseline", choice["first_stage"])
    if choice["reranker"] is None and first == baseline:
        return f"the untrained first stage alone ({first})"
    if choice["reranker"] is None:
        return f"the tuned first stage {first} alone"
    top = f", re-ranking its top {choice['depth']}" if choice.get("depth") else ""
    if choice["mode"] == "rerank":
        return f"re-ranker `{choice['reranker']}` alone over the {first} first stage{top}"
    return (f"re-ranker `{choice['reranker']}` interpolated with the {first} first stage "
            f"(re-ranker weight {choice['weight']:.1f}{top})")


def hands_over_training(choice: dict) -> bool:
    """Whether the chosen system is anything but the untrained first stage."""
    return choice["reranker"] is not None or choice["first_stage"] != choice.get("baseline", choice["first_stage"])


def test_verdict(choice: dict, test: dict) -> tuple[str, bool] | None:
    """What both reports say under the test table of a system that hands over training: (sentence, is a warning)
    when the primary metric's interval on test lies below zero or includes it; None otherwise."""
    if not hands_over_training(choice):
        return None
    primary = test.get(PRIMARY) or next(iter(test.values()))
    if primary["high"] < 0:
        return "Warning: on test the chosen system is worse than the first stage it started from.", True
    if primary["low"] <= 0:
        return "On test the gain is not clear: its interval includes no gain.", False
    return None


def unclear_tuning(choice: dict, settings: dict) -> str:
    """A sentence for a run whose tuned first stage gained on dev but not clearly enough to be handed over: then
    the dev split's size, not the tuning, may be what kept it back, and the user can weigh it on more queries."""
    steps = choice.get("steps") or []
    first = steps[0] if steps else {}
    gain = first.get("cv_gain")
    if first.get("first_stage") != choice.get("baseline") or not first.get("best_candidate") or not gain or gain <= 0:
        return ""
    config = settings.get("config", {})
    # a run's config leaves the embedder section out while it is at its defaults
    default = EmbedderConfig().dev_fraction
    embedder_dev = (config.get("embedder") or {}).get("dev_fraction", default)
    held_out = max(config.get("dev_fraction", 0.0), embedder_dev or 0.0)
    if held_out < default:
        more = (f"`embedder.dev_fraction: {default}` (the default) holds out a larger dev split to weigh it on (the "
                "embedder then trains on fewer queries)")
    else:
        more = "add training queries, or raise embedder.dev_fraction (the embedder then trains on fewer queries)"
    return (f"The fine-tuned first stage gained {gain:+.3f} {first.get('metric', '')} over the untrained one on "
            f"{first.get('dev_queries')} dev queries (cross-validated), not clearly enough to hand it over: the gain "
            f"may be real and the dev queries too few to show it. To weigh it on more, {more}.")


def fine_tuned_members(settings: dict) -> str:
    """A sentence for the run's introduction when ``embedder.enabled: auto`` decided whether to fine-tune."""
    tuning = settings.get("fine_tuning")
    if not tuning:
        return ""
    verdict = "fine-tuned" if tuning["fine_tuned"] else "not fine-tuned"
    return f" The first stage's dense members were {verdict} ({tuning['reason']})."


def cross_fitted(settings: dict) -> str:
    """A clause for the run's introduction when the system was chosen on cross-fitted training queries."""
    fit = settings.get("cross_fit")
    if not fit:
        return ""
    return (f"; the system, and the interpolation weights of {', '.join(fit['strategies'])}, chosen on "
            f"{fit['queries']} training queries, each scored by a re-ranker trained without it "
            f"({fit['folds']}-fold cross-fitting)")

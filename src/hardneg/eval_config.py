"""Settings for evaluation: the ``evaluate:`` section (what is evaluated, how the re-rankers score, and how the
system a run hands over is chosen)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from .train_config import AddedKeysOmitted


class EvalConfig(AddedKeysOmitted):
    """What is evaluated: first stages, each re-ranker re-scoring them, and optionally the two interpolated."""

    split: str = Field("test", description="qrels split whose queries are evaluated (never the training split)")
    first_stages: list[str] = Field(default_factory=lambda: ["ensemble"],
                                    description="'ensemble', 'bm25' or a model name; each is re-ranked")
    rerank: list[str] | None = Field(None, description="which of first_stages the re-rankers re-score "
                                     "(default all; re-ranking is the slow part on a CPU)")
    include_base: bool = Field(False, description="also evaluate the untuned base model as a re-ranker: worth it "
                               "when train.base_model is already a re-ranker (a trained cross-encoder), to see what "
                               "fine-tuning added; the bundled minilm starts with an untrained scoring head, whose "
                               "row would cost a model's scoring and show noise")
    depth: int = Field(100, ge=1, description="first-stage candidates kept per query")
    rerank_depth: int = Field(20, ge=1, description="how many of them each re-ranker re-scores (the deepest the gate "
                              "can hand a re-ranker over at; docs/RESULTS.md, Re-rank depth)")
    max_queries: int | None = Field(None, ge=1, description="evaluate on a seeded sample of the split's queries")
    max_dev_queries: int | None = Field(
        500, ge=1, description="dev queries (a seeded sample) that choose the system handed over and the "
        "interpolation weight: each is re-ranked by every re-ranker, so a large query log is capped here; null: all")

    cross_fit: Literal["auto", "always", "never"] = Field(
        "auto", description="choose the system on every training query, each scored by a re-ranker trained "
        "without it (k-fold cross-fitting; costs one more training per fold and cross-fitted strategy): "
        "auto when the dev split has fewer than 100 queries, too few to see a gain of +.02 nDCG@10 (fewer than 30 "
        "when the run tunes its first stage). While cross-fitting, first stages tuned on the training queries "
        "(embedder, fusion_weights) are not candidates; never lets them compete on the dev split")
    cross_fit_folds: int | None = Field(
        None, ge=2, description="folds of the training queries when cross-fitting, each one more training per "
        "cross-fitted strategy; default: 2, or 5 under 30 cross-fitted queries, where a model trained on half of "
        "them stands in poorly for the one trained on all (docs/RESULTS.md, Cross-fitting)")
    selection: Literal["best", "one_se"] = Field(
        "best", description="how the gate picks among the candidate systems on dev queries: best (the highest mean) "
        "or one_se (the simplest candidate within one paired standard error of the best: a first stage alone before "
        "any re-ranker, a lower re-ranker weight before a higher: steadier folds, no better systems on test, so far: "
        "docs/RESULTS.md, First-stage tuning)")
    choose_in_steps: bool = Field(
        True, description="with tuned first stages (a fine-tuned member, weights learned on dev): choose the first "
        "stage first (each tuned one alone against the untrained), then a re-ranker over the one kept, each step "
        "with its own cross-validated gate; false: every first stage and re-ranker combination competes at once, "
        "whose scattered fold picks can hide a clearly better first stage (docs/RESULTS.md, The embedder by "
        "default)")
    gate_depths: list[int] = Field(
        default_factory=lambda: [10, 20, 50, 100], description="re-rank depths the gate may hand a re-ranker over "
        "at (its top k re-ordered, the rest in first-stage order), chosen on dev queries with its weight: those "
        "below rerank_depth, and rerank_depth itself; they cost no extra scoring (docs/RESULTS.md, Re-rank depth)")
    cross_fit_strategies: list[str] | None = Field(
        None, description="strategies whose re-rankers are cross-fitted (the others cannot be the system handed "
        "over while cross-fitting); default: 'ensemble' when the run has it, else every strategy")

    _added_keys: ClassVar[tuple[str, ...]] = ("max_dev_queries", "cross_fit", "cross_fit_folds",
                                              "cross_fit_strategies", "engine",
                                              "selection", "choose_in_steps")
    metrics: list[str] = Field(default_factory=lambda: ["mrr@3", "mrr@10", "ndcg@10", "precision@1", "precision@5",
                                                        "recall@10", "recall@100", "map"],
                               description="ranx metric names")
    extra_rerankers: list[str] = Field(default_factory=list, description="re-rankers hardneg did not train (any "
                                       "CrossEncoder folder or hub id), evaluated on the same footing")
    significance: Literal["fisher", "student"] = Field("fisher", description="paired test between systems, per "
                                                       "query: Fisher's randomisation (seeded) or Student's "
                                                       "paired t-test")
    correction: Literal["holm", "bonferroni", "none"] = Field("holm", description="multiple-comparison correction "
                                                              "over all pairs of systems, per metric")
    bootstrap: int = Field(1000, ge=100, description="bootstrap resamples (of queries) for the 95% intervals")
    interpolate: bool = Field(True, description="also report re-ranker + first-stage score mix, weight tuned on dev")
    interpolation_weight: float | None = Field(
        None, ge=0, le=1, description="a fixed re-ranker weight for the mix instead of tuning it on dev (needs no "
        "dev queries; docs/RESULTS.md compares fixed and tuned weights)")
    batch_size: int = Field(64, ge=1, description="(query, document) pairs per re-ranker forward pass")
    engine: Literal["auto", "torch", "openvino"] = Field(
        "auto", description="how re-rankers score here: openvino (converted in memory, run at the CPU's precision, "
        "bf16 where it has it: two to three times the speed on 2 cores; scores within about 1e-4 of torch's, 1e-3 at "
        "most; CPU only, a GPU keeps torch; needs hardneg[openvino]), torch, or auto: openvino on a CPU where "
        "hardneg[openvino] is installed, else torch")

    @field_validator("gate_depths")
    @classmethod
    def _positive_depths(cls, value: list[int]) -> list[int]:
        if any(d < 1 for d in value):
            raise ValueError(f"gate_depths must be at least 1 each, got {value}")
        return value

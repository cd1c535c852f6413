"""Settings for tuning the first stage itself: the ``embedder:`` section (bi-encoders fine-tuned on the mined
negatives) and the ``fusion_weights:`` section (ensemble weights and fusion learned on the training queries).

The embedder is on where the dev split can weigh it (``enabled: auto``), fusion learning off;
:class:`hardneg.config.RunConfig` leaves a section at its default out of its dump,
so configs written before these sections existed keep their fingerprints (their finished stages are reused).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .train_config import AddedKeysOmitted

# The fusions a weight grid can be learned for: those that fuse the members' own scores in fused order
# (concat-pca and union change the representation or the picking, not just the weights).
LearnableFusion = Literal["zscore", "minmax", "rrf", "mean"]
EmbedderLoss = Literal["auto", "mnrl", "cached_mnrl", "gist", "cached_gist"]


class EmbedderConfig(AddedKeysOmitted):
    """Fine-tuning the ensemble's dense members (sentence-transformers bi-encoders) on the mined (query,
    positive, negatives) with ``SentenceTransformerTrainer``; each fine-tuned model is saved as a folder that
    ``SentenceTransformer(folder)`` loads and can join the ensemble by its folder name. The defaults are the recipe
    measured on SciFact (3 seeds) and the other five collections (docs/RESULTS.md, First-stage tuning)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | Literal["auto"] = Field(
        "auto", description="fine-tune the dense members on the mined negatives: true, false (the first stage as "
        "given) or auto: only where the dev split holds at least 30 queries (evaluate.max_dev_queries at most), the "
        "fewest the system is chosen on; with fewer, the system is chosen cross-fitted on the training queries, which "
        "a fine-tuned member trained on, so it could never be handed over")
    dev_fraction: float | None = Field(
        0.2, ge=0, lt=1, description="the share of the training queries held out for dev when the run fine-tunes "
        "(instead of dev_fraction, never fewer; evaluate.max_dev_queries at most; whether it fine-tunes is still "
        "decided on dev_fraction's split), since the fine-tuned first stage is chosen on the dev split alone; null: "
        "dev_fraction (was the default). SciFact, 3 seeds: at 0.2 the gate handed the fine-tuned ensemble over at "
        "every seed (+.032 to +.043 nDCG@10 on test), at dev_fraction's 10% at one of three (docs/RESULTS.md, The "
        "embedder by default)")
    members: list[str] | None = Field(
        None, description="the dense members to fine-tune; null: every sentence-transformers member of the "
        "ensemble (not bm25, wordllama, hash or e5-small)")
    strategy: str = Field("ensemble", description="the strategy whose mined negatives train the embedders")
    loss: EmbedderLoss = Field(
        "auto", description="auto (the default: mnrl where a step's activations fit in a third of the memory free, "
        "else cached_mnrl; the run logs and the model card records which), mnrl (softmax over the positive, the "
        "hard negatives and the batch's other documents; holds every layer's activations for the whole batch), "
        "cached_mnrl (the same loss and gradient computed in mini-batches: bounded memory, a second forward "
        "pass, about 1.4x the time; docs/RESULTS.md, First-stage tuning), gist (GISTEmbedLoss: a guide model "
        "drops in-batch negatives it scores above the positive) or cached_gist")
    scale: float = Field(20.0, gt=0, description="mnrl, cached_mnrl: similarity scale (inverse temperature)")
    mini_batch_size: int = Field(16, ge=1, description="cached_mnrl, cached_gist: rows embedded at a time (memory "
                                 "grows with it, the loss does not change)")
    guide_model: str | None = Field(None, description="gist: the guide model (name, folder or hub id); null: the "
                                    "base model itself, frozen")
    num_negatives: int | None = Field(
        1, ge=0, description="hard negatives per row (pairs with fewer are left out; 0: in-batch negatives "
        "only); null: the most common count among the mined pairs. One: a step costs about a third of four's, and "
        "the batch's other rows add 31 negatives each (docs/RESULTS.md, First-stage tuning)")
    query_prompt: str | None = Field(None, description="text put before every query; null: the model's own "
                                     "'query' prompt, if it has one")
    document_prompt: str | None = Field(None, description="text put before every document; null: the model's "
                                        "own 'document' prompt, if it has one")
    matryoshka_dims: list[int] | None = Field(
        None, description="train nested embeddings (MatryoshkaLoss) at these dimensions, e.g. [384, 256, 128, 64]; "
        "null: full dimension only")
    batch_size: int = Field(32, ge=1, description="rows (query, positive, negatives) per step; every other row's "
                            "documents are in-batch negatives")
    no_duplicates: bool = Field(True, description="batches never hold the same text twice, so an in-batch "
                                "negative is never another row's positive")
    epochs: float = Field(5.0, gt=0, description="passes over the training pairs (fractions allowed); the best dev "
                          "checkpoint is kept, so later epochs that overfit cost time, not quality")
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (linear warmup, then linear decay)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps spent warming the learning rate up")
    max_seq_length: int | None = Field(
        128, ge=8, description="tokens per text in training: documents are truncated here, short queries are "
        "padded only to the longest query of their batch; null: the model's own limit. The saved model embeds at "
        "its own limit, or at this one if longer")
    max_train_pairs: int | None = Field(None, ge=1, description="cap on training pairs (for quick runs)")
    dev_eval: bool = Field(True, description="evaluate retrieval (nDCG@10 over a corpus) on the dev queries during "
                           "training and keep the best checkpoint")
    dev_evals: int = Field(5, ge=1, description="dev evaluations per training run")
    dev_max_queries: int | None = Field(200, ge=1, description="cap on dev queries used during training")
    dev_max_documents: int | None = Field(
        2000, ge=1, description="cap on the dev evaluation's corpus: the dev queries' positives plus a seeded "
        "sample of the other documents; null: the whole corpus")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default all cores of this machine")
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget for training, as train.max_minutes: it stops at the first step "
        "past it, keeping the best dev checkpoint so far; the number of steps then depends on the machine's speed")

    _added_keys: ClassVar[tuple[str, ...]] = ("max_minutes",)

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if not value or min(value) < 1 or len(set(value)) != len(value):
            raise ValueError(f"matryoshka_dims must be distinct positive dimensions, got {value}")
        return sorted(value, reverse=True)


class FusionWeightsConfig(BaseModel):
    """Ensemble weights and fusion learned per collection on its training queries (never the evaluated ones):
    a grid of weights per member and fusions, scored by validation folds; with too few training queries, the
    run's fixed ``weights`` and ``fusion`` stay, and the reason is recorded."""

    model_config = ConfigDict(extra="forbid")

    learn: bool = Field(False, description="learn the weights and fusion on the training queries (off: the run's "
                        "weights and fusion as given)")
    fine_tuned: bool = Field(True, description="with embedder.enabled: learn the weights and fusion of the first "
                             "stage with the fine-tuned members on the dev queries, which their training never saw "
                             "(the training queries would favour them), by the same grid and folds; the weights "
                             "above stay unless the grid wins on held-out folds of at least min_queries dev queries")
    grid: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0],
                              description="the weights tried for each member (0 leaves a member out)")
    fusions: list[LearnableFusion] = Field(default_factory=lambda: ["zscore", "minmax", "rrf"],
                                           min_length=1, description="the fusions tried")
    folds: int = Field(5, ge=2, description="seeded validation folds of the training queries")
    min_queries: int = Field(30, ge=2, description="fewer training queries with a positive than this: keep the "
                             "fixed weights and fusion (a grid chosen on a handful of queries overfits)")
    max_queries: int | None = Field(1000, ge=1, description="cap on training queries scored (seeded sample)")
    metric: str = Field("ndcg@10", description="ranx metric the grid is scored by")
    depth: int | None = Field(None, ge=1, description="candidates per member pooled for each query; null: "
                              "evaluate.depth")

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: list[float]) -> list[float]:
        if not value or min(value) < 0 or max(value) <= 0:
            raise ValueError(f"grid needs non-negative weights, one of them positive, got {value}")
        return sorted(set(value))

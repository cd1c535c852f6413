"""How each re-ranker is trained (the ``train:`` section), and the rule that keeps keys added to a section after
its first release out of the section's dump while they are at their defaults, so the fingerprints of settings written before
them (and the finished stages they vouch for) stay valid."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer


class AddedKeysOmitted(BaseModel):
    """A settings section whose ``_added_keys`` are left out of its dump while they are at their defaults. Such a
    key's default must be the behaviour the section had before the key existed: a dump without it reloads to the
    default, and finished stages fingerprinted without it are reused."""

    model_config = ConfigDict(extra="forbid")
    _added_keys: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_unset_added_keys(self, handler):
        dump = handler(self)
        for key in self._added_keys:
            if key in dump and getattr(self, key) == type(self).model_fields[key].default:
                del dump[key]
        return dump


class TrainConfig(AddedKeysOmitted):
    """How each re-ranker is trained: a sentence-transformers CrossEncoder with one output logit."""

    base_model: str = Field("minilm", description="cross-encoder starting point: a name, folder or hub id")
    loss: Literal["triplet", "bce", "mnrl", "lambda", "listnet", "margin_mse"] = Field(
        # The default is the loss that trained the best re-rankers in the losses grid (docs/RESULTS.md, "Loss").
        "mnrl", description="mnrl (softmax over positive + negatives; the default), triplet (the paper's), bce, "
        "lambda (LambdaLoss), listnet, margin_mse (distil the ensemble's fused scores); see hardneg.losses.LOSS_HELP")
    margin: float = Field(1.0, gt=0, description="triplet margin on the raw logit")
    in_batch_negatives: int = Field(0, ge=0, description="mnrl: other rows' documents added as negatives per query")
    distill_scale: float = Field(1.0, gt=0, description="margin_mse: teacher (fused z-score) margins times this")
    augment_title_pairs: int = Field(0, ge=0, description="extra pairs: a document's title as query for its body")
    augment_sentence_pairs: int = Field(0, ge=0, description="extra pairs: a sentence as query for its passage")
    dev_eval: bool = Field(True, description="evaluate on the dev queries during training and keep the best "
                           "checkpoint (nDCG@10 of re-ranking their first-stage candidates)")
    dev_evals: int = Field(4, ge=1, description="dev evaluations per training run")
    dev_depth: int = Field(10, ge=2, description="first-stage candidates per dev query the dev evaluation ranks")
    dev_max_queries: int | None = Field(50, ge=1, description="cap on dev queries used during training")
    group_by_length: bool = Field(True, description="batch rows of similar length (less padding), batches shuffled")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default all cores of this machine")
    epochs: float = Field(1.0, gt=0, description="passes over the training pairs (fractions allowed)")
    batch_size: int = Field(8, ge=1, description="(query, positive) pairs per step, each with its negatives, "
                            "whatever the loss's row layout")
    # 2e-4: a fresh scoring head learns next to nothing at 2e-5 in the few hundred steps a CPU run takes
    # (docs/RESULTS.md, "Learning rate").
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (linear warmup, then linear decay)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps spent warming the learning rate up")
    max_length: int | Literal["auto"] = Field(
        128, description="tokens per (query, document) pair; 'auto': the 90th percentile of a sample of training "
        "pairs, rounded up to a multiple of 32 (hardneg.lengths.suggest_max_length)")

    @field_validator("max_length")
    @classmethod
    def _min_length(cls, value):
        if value != "auto" and value < 16:
            raise ValueError(f"max_length must be at least 16 (or 'auto'), got {value}")
        return value
    max_train_pairs: int | None = Field(None, ge=1, description="cap on training pairs (for quick runs)")
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget for training: it stops at the first step past it (evaluated "
        "and saved, so the best dev checkpoint so far is kept); epochs stay the upper bound and set the learning "
        "rate's schedule. A budget makes the number of steps depend on the machine's speed, so two runs with the "
        "same seed can differ")

    min_steps: int | None = Field(
        100, ge=1, description="at least this many optimizer steps: epochs are raised for a training set too "
        "small to give them in train.epochs passes (a large one is unchanged); null: epochs alone")

    pretrain_queries: int = Field(
        0, ge=0, description="first train the re-ranker on this many queries made from the corpus (a sentence of a "
        "document as query for the rest of it), distilling the run's ensemble, then on the labelled pairs; once "
        "per run, shared by every strategy. 0: off")
    pretrain_loss: Literal["triplet", "bce", "mnrl", "lambda", "listnet", "margin_mse"] = Field(
        "margin_mse", description="pretraining's loss: margin_mse learns the ensemble's fused-score margins")
    pretrain_epochs: float = Field(1.0, gt=0, description="passes over the pretraining queries")

    _added_keys: ClassVar[tuple[str, ...]] = ("max_minutes", "pretrain_queries", "pretrain_loss", "pretrain_epochs")

"""Every training loss hardneg offers, each declared once with the data layout it reads (as sentence-transformers
pairs a loss with its expected columns): training, the CLI and the config ask the registry, never the name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..mine import MinedPair
from .layouts import LABELED_PAIR, LISTWISE, N_TUPLE, TEACHER_MARGINS, Layout, Teacher

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class LossSpec:
    """One loss: its name, its help line, the rows it trains on and how to build it for a model."""

    name: str
    help: str
    layout: Layout
    # (one-label CrossEncoder, negatives per pair, margin, in-batch negatives) -> the loss module
    build: Callable[[object, int, float, int], nn.Module]

    @property
    def needs_teacher(self) -> bool:
        return self.layout.needs_teacher


def _st_loss(class_name: str):
    """A cross-encoder loss class of sentence-transformers (imported when a loss is built, not at import)."""
    from sentence_transformers.cross_encoder import losses

    return getattr(losses, class_name)


def _custom():
    """hardneg's own loss modules (imported when a loss is built: they load torch)."""
    from . import custom

    return custom


def _bce(model, num_negatives: int, margin: float, in_batch_negatives: int) -> nn.Module:
    import torch

    # One positive per n negatives: weight positives by n so both classes pull equally.
    return _st_loss("BinaryCrossEntropyLoss")(model, pos_weight=torch.tensor(float(num_negatives)))


REGISTRY: dict[str, LossSpec] = {spec.name: spec for spec in (
    LossSpec("triplet", "triplet margin on the raw logit over (query, positive, negative_1..n): the paper's loss",
             N_TUPLE, lambda model, n, margin, in_batch: _custom().TripletMarginLoss(model, margin=margin)),
    LossSpec("bce", "binary cross-entropy on (query, passage, label) pairs, positives weighted by the number of "
             "negatives", LABELED_PAIR, _bce),
    LossSpec("mnrl", "sentence-transformers' MultipleNegativesRankingLoss: softmax over the positive, its hard "
             "negatives (and optional in-batch negatives)",
             N_TUPLE, lambda model, n, margin, in_batch: _custom().InBatchOptionalMNRL(model, num_negatives=in_batch)),
    LossSpec("lambda", "sentence-transformers' LambdaLoss (NDCG-Loss2++): listwise over (query, [positive, "
             "negatives])", LISTWISE, lambda model, n, margin, in_batch: _st_loss("LambdaLoss")(model)),
    LossSpec("listnet", "sentence-transformers' ListNetLoss: listwise cross-entropy over (query, [positive, "
             "negatives])", LISTWISE, lambda model, n, margin, in_batch: _st_loss("ListNetLoss")(model)),
    LossSpec("margin_mse", "sentence-transformers' MarginMSELoss: distil the ensemble's fused-score margins "
             "(teacher) into the cross-encoder; pairs without fused scores (random negatives) are left out",
             TEACHER_MARGINS, lambda model, n, margin, in_batch: _st_loss("MarginMSELoss")(model)),
)}

LOSSES = tuple(REGISTRY)
LOSS_HELP = {name: spec.help for name, spec in REGISTRY.items()}


def loss_spec(name: str) -> LossSpec:
    """The registered loss ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown loss {name!r}: choose one of {', '.join(LOSSES)}.") from None


def make_loss(name: str, model, num_negatives: int, margin: float = 1.0, in_batch_negatives: int = 0) -> nn.Module:
    """The loss module ``name`` for ``model`` (a one-label ``CrossEncoder``)."""
    return loss_spec(name).build(model, num_negatives, margin, in_batch_negatives)


def loss_dataset(pairs: list[MinedPair], loss: str, num_negatives: int, teacher: Teacher | None = None):
    """Mined pairs in the layout ``loss`` reads; returns (dataset, pairs left out).

    ``teacher`` (:func:`~hardneg.losses.distill_targets`) is read only by a loss whose layout needs it.
    """
    return loss_spec(loss).layout.build(pairs, num_negatives, teacher)

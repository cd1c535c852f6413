"""Losses for cross-encoders that sentence-transformers does not ship, written in its loss-module style."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TripletMarginLoss(nn.Module):
    """The paper's triplet margin loss for a cross-encoder: ``max(0, margin - s(q, p) + s(q, n))``.

    Inputs are ``(query, positive, negative_1, ..., negative_n)`` columns; the loss averages the hinge over every
    negative of every row. ``s`` is the model's raw logit (``activation_fn`` = identity by default), so the margin
    is in logit units.

    Args:
        model: a ``CrossEncoder`` with ``num_labels == 1``.
        margin: how far the positive's score must exceed each negative's before the pair stops contributing.
        activation_fn: applied to the logits before the hinge (e.g. ``nn.Sigmoid()`` for a [0, 1] scale).
    """

    def __init__(self, model, margin: float = 1.0, activation_fn: nn.Module | None = None) -> None:
        super().__init__()
        from sentence_transformers.cross_encoder import CrossEncoder

        if not isinstance(model, CrossEncoder):
            raise TypeError(f"{type(self).__name__} expects a CrossEncoder, got {type(model).__name__}.")
        if model.num_labels != 1:
            raise ValueError(f"{type(self).__name__} expects a CrossEncoder with num_labels=1, got "
                             f"{model.num_labels}: load it with CrossEncoder(path, num_labels=1).")
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}.")
        self.model = model
        self.margin = margin
        self.activation_fn = activation_fn or nn.Identity()

    def score(self, queries: list[str], documents: list[str]) -> Tensor:
        from sentence_transformers.util import batch_to_device

        features = self.model.preprocess(list(zip(queries, documents)))
        features = batch_to_device(features, self.model.device)
        return self.activation_fn(self.model(features)["scores"].view(-1))

    def forward(self, inputs: list[list[str]], labels: Tensor | None = None, **kwargs) -> Tensor:
        if len(inputs) < 3:
            raise ValueError(f"{type(self).__name__} needs (query, positive, negative_1, ...) columns; got "
                             f"{len(inputs)} column(s).")
        queries, positives, negative_columns = inputs[0], inputs[1], inputs[2:]
        n = len(negative_columns)
        # One forward pass over every pair of the batch: positives first, then each negative column.
        documents = list(positives) + [doc for column in negative_columns for doc in column]
        scores = self.score(list(queries) * (n + 1), documents).view(n + 1, len(queries))
        return triplet_margin(scores[0], scores[1:], self.margin)

    def get_config_dict(self) -> dict[str, float | str]:
        return {"margin": self.margin, "activation_fn": type(self.activation_fn).__name__}

    @property
    def citation(self) -> str:
        return ("@article{hardnegensemble2024, title={Enhancing Retrieval Performance: An Ensemble Approach For "
                "Hard Negative Mining}, journal={arXiv:2411.02404}, year={2024}}")


def triplet_margin(positive: Tensor, negatives: Tensor, margin: float) -> Tensor:
    """Mean over negatives and rows of ``relu(margin - positive + negative)``; ``negatives`` is (n, batch)."""
    return torch.relu(margin - positive.unsqueeze(0) + negatives).mean()


# ---------------------------------------------------------------------------------------------------------------
# Every training loss hardneg offers, each with the dataset layout it reads. Layouts are built from mined pairs
# (one query, one positive, its negatives), so each loss sees the same queries and documents.

LOSSES = ("triplet", "bce", "mnrl", "lambda", "listnet", "margin_mse")
LOSS_HELP = {
    "triplet": "triplet margin on the raw logit over (query, positive, negative_1..n): the paper's loss",
    "bce": "binary cross-entropy on (query, passage, label) pairs, positives weighted by the number of negatives",
    "mnrl": "sentence-transformers' MultipleNegativesRankingLoss: softmax over the positive, its hard negatives "
            "(and optional in-batch negatives)",
    "lambda": "sentence-transformers' LambdaLoss (NDCG-Loss2++): listwise over (query, [positive, negatives])",
    "listnet": "sentence-transformers' ListNetLoss: listwise cross-entropy over (query, [positive, negatives])",
    "margin_mse": "sentence-transformers' MarginMSELoss: distil the ensemble's fused-score margins (teacher) "
                  "into the cross-encoder; pairs without fused scores (random negatives) are left out",
}


def make_loss(name: str, model, num_negatives: int, margin: float = 1.0, in_batch_negatives: int = 0):
    """The loss module ``name`` for ``model`` (a one-label ``CrossEncoder``)."""
    import torch
    from sentence_transformers.cross_encoder import losses as st_losses

    if name == "triplet":
        return TripletMarginLoss(model, margin=margin)
    if name == "bce":
        # One positive per n negatives: weight positives by n so both classes pull equally.
        return st_losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(num_negatives)))
    if name == "mnrl":
        return InBatchOptionalMNRL(model, num_negatives=in_batch_negatives)
    if name == "lambda":
        return st_losses.LambdaLoss(model)
    if name == "listnet":
        return st_losses.ListNetLoss(model)
    if name == "margin_mse":
        return st_losses.MarginMSELoss(model)
    raise ValueError(f"Unknown loss {name!r}: choose one of {', '.join(LOSSES)}.")


def _mnrl_base():
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss


class InBatchOptionalMNRL(nn.Module):
    """sentence-transformers' cross-encoder ``MultipleNegativesRankingLoss`` that also accepts 0 in-batch
    negatives (its ``num_negatives=0`` would ask ``torch.multinomial`` for zero samples). With 0, the softmax runs
    over the positive and its own mined negatives only, which costs the same forward passes as the triplet loss.
    """

    def __init__(self, model, num_negatives: int = 0) -> None:
        super().__init__()
        self.inner = _mnrl_base()(model, num_negatives=num_negatives or None)
        self.model = model
        self.in_batch = num_negatives

    def forward(self, inputs: list[list[str]], labels=None, **kwargs) -> Tensor:
        if self.in_batch:
            return self.inner(inputs, labels, **kwargs)
        anchors = inputs[0]
        scores = [self.inner.call_model_with_columns(anchors, column, **kwargs) for column in inputs[1:]]
        return self.inner.calculate_loss(scores, len(anchors))

    def get_config_dict(self) -> dict:
        return {**self.inner.get_config_dict(), "num_negatives": self.in_batch}


def loss_dataset(pairs, loss: str, num_negatives: int, teacher: list[list[float]] | None = None):
    """Mined pairs in the layout ``loss`` reads; returns (dataset, rows left out).

    ``triplet``/``mnrl``: (query, positive, negative_1..n), pairs with fewer negatives left out; ``bce``: (query,
    passage, label); ``lambda``/``listnet``: (query, docs, labels) with the positive first, so pairs with fewer
    negatives still count; ``margin_mse``: n-tuple plus ``label`` = teacher score of the positive minus each
    negative's (``teacher`` gives [positive, negative_1..n] per pair; ``None`` rows are left out).
    """
    from datasets import Dataset

    from .mine import as_hf_dataset

    if loss in ("triplet", "mnrl"):
        return as_hf_dataset(pairs, "n-tuple", num_negatives)
    if loss == "bce":
        return as_hf_dataset(pairs, "labeled-pair")
    if loss in ("lambda", "listnet"):
        rows = [p for p in pairs if p.negatives]
        return Dataset.from_dict({"query": [p.query for p in rows],
                                  "docs": [[p.positive] + list(p.negatives) for p in rows],
                                  "labels": [[1.0] + [0.0] * len(p.negatives) for p in rows]}), len(pairs) - len(rows)
    if loss == "margin_mse":
        if teacher is None or len(teacher) != len(pairs):
            raise ValueError("margin_mse needs one teacher score list per pair (see hardneg.augment.distill_targets).")
        keep = [(p, t) for p, t in zip(pairs, teacher) if t is not None and len(p.negatives) >= num_negatives]
        columns = {"query": [p.query for p, _ in keep], "positive": [p.positive for p, _ in keep]}
        for i in range(num_negatives):
            columns[f"negative_{i + 1}"] = [p.negatives[i] for p, _ in keep]
        columns["label"] = [[t[0] - t[i + 1] for i in range(num_negatives)] for _, t in keep]
        return Dataset.from_dict(columns), len(pairs) - len(keep)
    raise ValueError(f"Unknown loss {loss!r}: choose one of {', '.join(LOSSES)}.")

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

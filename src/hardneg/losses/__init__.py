"""Training losses and the data layouts they read.

* :mod:`.registry`: every loss hardneg offers (:data:`LOSSES`), each declared with its layout, its builder and its
  help line (:data:`LOSS_HELP`); :func:`make_loss` and :func:`loss_dataset` look a name up there.
* :mod:`.layouts`: mined pairs as dataset rows (:func:`as_hf_dataset`, also ``hardneg mine``'s HF output) and
  margin-MSE teacher scores (:func:`distill_targets`).
* :mod:`.custom`: the loss modules sentence-transformers does not ship (the paper's triplet margin loss, MNRL
  without in-batch negatives).
"""

from __future__ import annotations

from .layouts import Layout, OutputFormat, Teacher, as_hf_dataset, distill_targets
from .registry import LOSS_HELP, LOSSES, REGISTRY, LossSpec, loss_dataset, loss_spec, make_loss

__all__ = [
    "LOSSES",
    "LOSS_HELP",
    "REGISTRY",
    "Layout",
    "LossSpec",
    "OutputFormat",
    "Teacher",
    "as_hf_dataset",
    "distill_targets",
    "loss_dataset",
    "loss_spec",
    "make_loss",
]

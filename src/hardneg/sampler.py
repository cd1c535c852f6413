"""Length-grouped batches for sentence-transformers' trainers (a module of its own because subclassing the
library's sampler imports sentence-transformers, which the rest of hardneg loads only when it trains)."""

from __future__ import annotations

import math

from sentence_transformers.base.sampler import DefaultBatchSampler

from .batching import length_grouped_batches, row_lengths


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """A sentence-transformers batch sampler over :func:`length_grouped_batches`, reseeded each epoch."""

    def __init__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.lengths = row_lengths(dataset)

    def _batches(self) -> list[list[int]]:
        batches = length_grouped_batches(self.lengths, self.batch_size, self.seed + self.epoch)
        return [b for b in batches if len(b) == self.batch_size] if self.drop_last else batches

    def __iter__(self):
        yield from self._batches()

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

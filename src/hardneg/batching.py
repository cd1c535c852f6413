"""Length-grouped batch order: rows of similar length share a batch (less padding), batches in random order."""

from __future__ import annotations

import numpy as np


def row_lengths(dataset) -> np.ndarray:
    """Characters per training row over its text columns (a cheap, tokenizer-free proxy for its token count)."""
    total = np.zeros(len(dataset), dtype=np.int64)
    for name in dataset.column_names:
        if name in ("label", "labels", "score", "scores"):
            continue
        column = dataset[name]
        if column and isinstance(column[0], str):
            total += np.fromiter((len(t) for t in column), dtype=np.int64, count=len(column))
        elif column and isinstance(column[0], list):
            total += np.fromiter((sum(len(t) for t in row) for row in column), dtype=np.int64, count=len(column))
    return total


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, group: int = 16) -> list[list[int]]:
    """Shuffle, then sort each window of ``group`` batches by length and cut it into batches; batches shuffled.

    Rows in a batch have similar lengths, so dynamic padding (the tokenizer pads to the longest row of each
    batch) wastes little; the batch order stays random, so training does not see short rows first.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    window = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]

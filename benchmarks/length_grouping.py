"""What length-grouped batches save: padded tokens per epoch, random vs. grouped batches, on real mined pairs.

Counts are exact (the cross-encoder's tokenizer on every (query, document) pair) and machine-independent; a
BERT's CPU time grows at least linearly with the padded tokens of a batch, so their ratio bounds the saving.
Batches are padded to their longest pair, as the triplet loss's single forward pass over all pairs does.

Usage: python benchmarks/length_grouping.py NEGATIVES.jsonl --output OUT.json [--batch-size 8]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hardneg.embed import resolve_st_model
from hardneg.io import read_jsonl, write_json
from hardneg.batching import length_grouped_batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("negatives")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[128, 192, 256, 512])
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_st_model("minilm"))
    rows = read_jsonl(args.negatives)
    pairs = [[(r["query"], d) for d in [r["positive"], *r["negatives"]]] for r in rows]
    flat = [p for row in pairs for p in row]
    full = np.array([len(ids) for ids in tokenizer([q for q, _ in flat], [d for _, d in flat],
                                                    truncation="only_second", max_length=max(args.max_lengths))
                     ["input_ids"]])
    per_row = np.split(full, np.cumsum([len(r) for r in pairs])[:-1])
    chars = np.array([sum(len(q) + len(d) for q, d in row) for row in pairs])
    results = {}
    # n-tuple rows (triplet, mnrl, lambda): batch_size rows of 1 + n pairs; bce rows: single pairs, (1 + n) times
    # as many per batch (hardneg keeps the sequences per step equal across losses).
    layouts = {"n-tuple": (per_row, chars, args.batch_size),
               "labeled-pair": ([np.array([x]) for x in full], np.array([len(q) + len(d) for q, d in flat]),
                                args.batch_size * len(pairs[0]))}
    for layout, (units, unit_chars, batch) in layouts.items():
        rng = np.random.default_rng(0)
        random_batches = [b.tolist() for b in np.array_split(rng.permutation(len(units)),
                                                             int(np.ceil(len(units) / batch)))]
        grouped_batches = length_grouped_batches(unit_chars, batch, seed=0)
        for cap in args.max_lengths:
            lengths = [np.minimum(r, cap) for r in units]
            real = int(sum(x.sum() for x in lengths))

            def padded(batches, lengths=lengths):
                return int(sum(sum(len(lengths[i]) for i in b) * max(lengths[i].max() for i in b) for b in batches))

            rand, grouped = padded(random_batches), padded(grouped_batches)
            results[f"{layout}@{cap}"] = {"real_tokens": real, "padded_random": rand, "padded_grouped": grouped,
                                          "padding_share_random": round(1 - real / rand, 4),
                                          "padding_share_grouped": round(1 - real / grouped, 4),
                                          "tokens_saved": round(1 - grouped / rand, 4)}
            print(layout, cap, results[f"{layout}@{cap}"], flush=True)
    write_json(args.output, {"command": " ".join(["python", *sys.argv]), "rows": len(rows),
                             "sequences": len(flat), "batch_size": args.batch_size,
                             "median_pair_tokens_untruncated_at_512": int(np.median(full)), "results": results})


if __name__ == "__main__":
    main()

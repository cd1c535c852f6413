"""Peak memory of fine-tuning an embedder, by loss: plain MNRL keeps every layer's activations for the whole batch,
CachedMNRL computes the same loss in mini-batches.

Usage (after `hardneg run configs/embedder.yaml`, whose mined negatives it reuses; one process per setting, since
ru_maxrss is a process's peak):
    python benchmarks/embedder_memory.py runs/embedder/strategies/ensemble/negatives.jsonl --loss mnrl
    python benchmarks/embedder_memory.py runs/embedder/strategies/ensemble/negatives.jsonl --loss cached_mnrl --mini-batch 8
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

from hardneg.embedder import train_embedder
from hardneg.first_stage_config import EmbedderConfig
from hardneg.mine import read_mined_pairs


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("negatives")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--loss", default="cached_mnrl")
    parser.add_argument("--mini-batch", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=64, help="the peak comes in the first step; a few suffice")
    args = parser.parse_args()
    pairs = read_mined_pairs(args.negatives)
    before = peak_mb()
    # the shape the recorded figures had: every mined negative (32 x 6 texts a step), one epoch
    config = EmbedderConfig(enabled=True, loss=args.loss, mini_batch_size=args.mini_batch, batch_size=32,
                            max_seq_length=128, num_negatives=None, epochs=1, learning_rate=2e-5, dev_eval=False,
                            max_train_pairs=args.pairs)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        train_embedder(pairs, args.model, out, config, seed=42, progress=False, fingerprint="memory")
    print(json.dumps({"loss": args.loss, "mini_batch": args.mini_batch if "cached" in args.loss else None,
                      "pairs": args.pairs, "peak_mb_before": round(before), "peak_mb": round(peak_mb()),
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()

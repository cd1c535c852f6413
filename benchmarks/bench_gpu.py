"""The GPU bench (`make bench-gpu`): every stage of hardneg on SciFact, timed, with its memory, on this machine's
device (`compute.device: auto`: the GPU when torch sees one).

Stages: embed the corpus (and the training queries) with each default member from a cold cache, mine the default
ensemble's negatives, train a re-ranker and an embedder for a few hundred steps, evaluate on the test queries (the
first stage, the re-ranker over its top 100, the tuned embedder alone). Each stage records its seconds, the
process's peak RSS so far and, on CUDA, its own peak of ``torch.cuda.max_memory_allocated``.

    python -P benchmarks/bench_gpu.py                   # -> benchmarks/gpu/bench_gpu_<host>.json
    python -P benchmarks/bench_gpu.py --dry-run         # the same code on a tiny slice, on the CPU; writes nothing
                                                        # to benchmarks/ (prints the record) unless --output is given

SciFact is read from --data-dir or $HARDNEG_DATA (default ../shared/data). ``-P`` keeps benchmarks/ off the import
path (its collections.py would shadow the standard library's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import hardneg
from hardneg.compute_config import ComputeConfig
from hardneg.config import DEFAULT_ENSEMBLE, DEFAULT_WEIGHTS, MiningConfig, TrainConfig
from hardneg.crossencoder import ScoreStore, load_cross_encoder, score_pairs
from hardneg.data import load_beir
from hardneg.device import current_device, use_compute
from hardneg.embedder import train_embedder
from hardneg.evaluate import evaluate_run, first_stage_run, rerank_run
from hardneg.first_stage_config import EmbedderConfig
from hardneg.io import write_json
from hardneg.mine import mine, training_pairs
from hardneg.retrieve import Ensemble, make_retriever
from hardneg.train import train_reranker

ROOT = Path(__file__).resolve().parents[1]


def _cuda():
    import torch

    return torch.cuda if torch.cuda.is_available() else None


@contextmanager
def stage(record: dict, name: str, **extra):
    """Time a stage; record its seconds, the peak RSS so far and (CUDA) the stage's own peak GPU memory."""
    cuda = _cuda()
    if cuda is not None:
        cuda.synchronize()
        cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    entry = dict(extra)
    yield entry
    if cuda is not None:
        cuda.synchronize()
        entry["cuda_max_allocated_mb"] = round(cuda.max_memory_allocated() / 2**20, 1)
    entry["seconds"] = round(time.perf_counter() - started, 2)
    entry["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    record[name] = entry
    print(f"{name}: {json.dumps(entry)}", flush=True)


def slice_dataset(source: Path, target: Path, docs: int, train_queries: int, test_queries: int) -> Path:
    """A small BEIR folder from ``source``: the first queries of each split with their positives, and the
    corpus's first documents up to ``docs`` in all (the same lines, so texts are unchanged)."""
    keep_q: dict[str, list[tuple[str, str, str]]] = {}
    for split, limit in (("train", train_queries), ("test", test_queries)):
        rows = [line.rstrip("\n").split("\t") for line in (source / "qrels" / f"{split}.tsv").open()][1:]
        chosen = list(dict.fromkeys(q for q, _, score in rows if int(score) > 0))[:limit]
        keep_q[split] = [tuple(r) for r in rows if r[0] in chosen]
    wanted = {d for rows in keep_q.values() for _, d, _ in rows}
    lines = []
    with (source / "corpus.jsonl").open() as handle:
        for line in handle:
            doc = json.loads(line)["_id"]
            if doc in wanted or len(lines) < docs - len(wanted):
                lines.append(line)
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    (target / "corpus.jsonl").write_text("".join(lines))
    query_ids = {q for rows in keep_q.values() for q, _, _ in rows}
    (target / "queries.jsonl").write_text("".join(
        line for line in (source / "queries.jsonl").open() if json.loads(line)["_id"] in query_ids))
    for split, rows in keep_q.items():
        (target / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in rows))
    return target


def ndcg(dataset, run: dict) -> float:
    return round(evaluate_run(dataset.qrels["test"], run, ["ndcg@10"])["ndcg@10"], 4)


def epochs_for(steps: int, rows: int, batch: int) -> float:
    """The (fractional) epochs that make a training run take ``steps`` steps."""
    return steps / max(1, -(-rows // batch))


def bench(dataset_dir: Path, work: Path, steps: int, embedder_steps: int, depth: int, progress: bool,
          tiny: bool = False) -> dict:
    """Every stage; ``tiny`` (the dry run) also shortens sequences and batches, so the CPU gets through it."""
    record: dict = {}
    data = load_beir(dataset_dir)
    cache = work / "cache"
    texts, ids = data.corpus.full_texts(), data.corpus.ids
    pairs = training_pairs(data, "train")
    train_queries = list(dict.fromkeys(q for q, _ in pairs))
    test_ids = sorted(data.positives("test"))
    members = {}
    for name in DEFAULT_ENSEMBLE:
        retriever = make_retriever(name, cache_dir=cache, progress=progress, max_seq_length=64 if tiny else None)
        with stage(record, f"embed_{name}", documents=len(texts)) as entry:
            retriever.index(texts, ids)
            if name != "bm25":
                retriever.query_vectors([data.queries.text(q) for q in train_queries])
        entry["documents_per_second"] = round(len(texts) / max(entry["seconds"], 1e-9), 1)
        members[name] = retriever
    ensemble = Ensemble([members[n] for n in DEFAULT_ENSEMBLE], weights=DEFAULT_WEIGHTS)

    mining = MiningConfig()
    with stage(record, "mine", pairs=len(pairs)) as entry:
        mined = mine(data, pairs, ensemble, mining, "ensemble", seed=42, progress=progress)
        entry["mined_pairs"] = len(mined.pairs)

    # A step is batch_size (query, positive) groups: epochs set so the run takes `steps` steps.
    shape = {"batch_size": 4, "max_length": 64} if tiny else {}
    batch = shape.get("batch_size", TrainConfig().batch_size)
    train = TrainConfig(dev_eval=False, epochs=epochs_for(steps, len(mined.pairs), batch), **shape)
    with stage(record, "train_reranker", target_steps=steps) as entry:
        model_dir = train_reranker(mined.pairs, work / "reranker", train, mining.num_negatives, seed=42,
                                   progress=progress, fingerprint="bench")
        info = json.loads((model_dir / "hardneg_training.json").read_text())
        entry.update(steps=info["steps"], rows=info["rows"], batch_size=train.batch_size, max_length=train.max_length)

    shape = {"batch_size": 8, "max_seq_length": 64} if tiny else {}
    batch = shape.get("batch_size", EmbedderConfig().batch_size)
    tuned = EmbedderConfig(enabled=True, dev_eval=False, epochs=epochs_for(embedder_steps, len(mined.pairs), batch),
                           **shape)
    with stage(record, "train_embedder", target_steps=embedder_steps) as entry:
        embedder_dir = train_embedder(mined.pairs, "minilm", work / "embedder", tuned, seed=42, progress=progress,
                                      fingerprint="bench")
        info = json.loads((embedder_dir / "hardneg_training.json").read_text())
        entry.update(steps=info["steps"], rows=info["rows"], batch_size=tuned.batch_size, loss=tuned.loss,
                     max_seq_length=tuned.max_seq_length)

    with stage(record, "evaluate", test_queries=len(test_ids), depth=depth) as entry:
        first = first_stage_run(data, test_ids, ensemble, depth)
        reranker = load_cross_encoder(str(model_dir), train.max_length)
        store = ScoreStore(None)
        score_pairs(reranker, data, [(q, d) for q, docs in first.items() for d in docs], store, progress=progress)
        tuned_retriever = make_retriever(str(embedder_dir), cache_dir=cache, progress=progress)
        tuned_retriever.index(texts, ids)
        entry.update({"ndcg@10_first_stage": ndcg(data, first),
                      "ndcg@10_reranked": ndcg(data, rerank_run(first, store.scores, depth)),
                      "ndcg@10_tuned_embedder": ndcg(data, first_stage_run(data, test_ids, Ensemble([tuned_retriever]),
                                                                           depth)),
                      "pairs_scored": sum(len(d) for d in first.values())})
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("HARDNEG_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--dry-run", action="store_true", help="a tiny slice on the CPU: 150 documents, 10 "
                        "training and 10 test queries, 3 training steps of each model on short sequences")
    parser.add_argument("--device", default="auto", help="compute.device (the dry run uses cpu)")
    parser.add_argument("--precision", default="auto", help="compute.precision")
    parser.add_argument("--steps", type=int, default=300, help="re-ranker training steps")
    parser.add_argument("--embedder-steps", type=int, default=200, help="embedder training steps")
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--output", default=None, help="the record (default: benchmarks/gpu/bench_gpu_<host>.json; "
                        "a dry run writes none unless given)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    source = Path(args.data_dir) / args.dataset
    if not (source / "corpus.jsonl").is_file():
        raise SystemExit(f"{source}: no BEIR dataset there (corpus.jsonl); set --data-dir or HARDNEG_DATA, or run "
                         f"`hardneg download {args.dataset}`")
    device = "cpu" if args.dry_run else args.device
    steps, embedder_steps, depth = (3, 3, 20) if args.dry_run else (args.steps, args.embedder_steps, 100)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-gpu-"))
    started = time.perf_counter()
    try:
        dataset_dir = (slice_dataset(source, work / "slice", 150, 10, 10) if args.dry_run else source)
        with use_compute(ComputeConfig(device=device, precision=args.precision)):
            resolved = current_device()
            stages = bench(dataset_dir, work, steps, embedder_steps, depth, not args.no_progress, args.dry_run)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    cuda = _cuda()
    record = {
        "command": "python -P benchmarks/bench_gpu.py" + (" --dry-run" if args.dry_run else ""),
        "hardneg": hardneg.__version__, "dataset": args.dataset, "dry_run": args.dry_run,
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "device": resolved, "precision": args.precision,
        "gpu": cuda.get_device_name(0) if cuda is not None else None,
        "stages": stages, "total_seconds": round(time.perf_counter() - started, 1),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    output = args.output or (None if args.dry_run else ROOT / "benchmarks" / "gpu" /
                             f"bench_gpu_{socket.gethostname()}.json")
    if output is None:
        print(json.dumps(record, indent=2))
        return
    write_json(output, record)
    print(f"-> {output} ({record['total_seconds']} s)")


if __name__ == "__main__":
    main()

"""Speed and memory of hardneg against sentence-transformers' ``mine_hard_negatives`` (issue 6).

Every measured job runs in its own subprocess (``--job NAME``) and reports its wall time and its own peak RSS
(``getrusage``: the process and any children it waited for), so one side's memory never counts for the other.
Results are merged into the output JSON job by job, so parts can be run (and re-run) separately.

Usage:
    python benchmarks/speed.py --parts a,b,c,d,e --output benchmarks/speed/speed.json
    (what was recorded: see the "command" of each part in benchmarks/speed/speed.json)
    (a) hardneg vs mine_hard_negatives, SciFact train, all-MiniLM-L6-v2, cold and warm cache
    (b) the default ensemble (minilm, wordllama, bm25) mining SciFact train, cold and warm
    (c) candidate search over synthetic 384-d embeddings, 10k-1M documents x 10k-100k queries, and the matmul floor
    (d) nDCG@10 on SciFact test of MiniLM in torch, ONNX fp32 and ONNX int8, and each one's embedding speed
    (e) cross-encoder training throughput at max_length 128 (a 10-step run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "bench-speed"
MAX_SEQ = 128
NEGATIVES, DEPTH = 4, 100
DATASET = os.environ.get("BENCH_DATASET", "scifact")  # a tiny folder here smoke-tests the script


# ---------------------------------------------------------------------------------------------------- helpers
def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)  # Linux reports KiB


def scifact_pairs(name: str | None = None):
    """The dataset and its train (query id, positive id) pairs."""
    from hardneg.data import load_beir, resolve_dataset
    from hardneg.mine import training_pairs

    dataset = load_beir(resolve_dataset(name or DATASET))
    pairs = training_pairs(dataset, "train")
    return dataset, pairs


def run_job(name: str, args: dict, timeout: float = 3600) -> dict:
    """Run one job in a fresh interpreter; returns what it printed as its last JSON line."""
    cmd = [sys.executable, __file__, "--job", name, "--args", json.dumps(args)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ,
                          "TOKENIZERS_PARALLELISM": "false"})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"job {name} {args} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 1)  # including interpreter start and imports
    print(f"  {name} {args}: {json.dumps(result)[:300]}", file=sys.stderr, flush=True)
    return result


# ---------------------------------------------------------------------------------------------------- jobs
def job_st_mine(args: dict) -> dict:
    """sentence-transformers' mine_hard_negatives, one model, top-4 of the top-100, no margin filter."""
    started = time.perf_counter()
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from hardneg.embed import resolve_st_model

    dataset, pairs = scifact_pairs(args.get("dataset"))
    text = {d: dataset.corpus.full_text(i) for i, d in enumerate(dataset.corpus.ids)}
    rows = Dataset.from_dict({"query": [dataset.queries.text(q) for q, _ in pairs],
                              "positive": [text[d] for _, d in pairs]})
    model = SentenceTransformer(resolve_st_model("minilm"), device="cpu")
    model.max_seq_length = MAX_SEQ
    loaded = time.perf_counter()
    out = mine_hard_negatives(rows, model, corpus=dataset.corpus.full_texts(), range_max=DEPTH,
                              num_negatives=NEGATIVES, sampling_strategy="top", output_format="n-tuple",
                              batch_size=32, use_faiss=args.get("use_faiss", False), cache_folder=args["cache"],
                              verbose=False)
    done = time.perf_counter()
    by_text = {t: d for d, t in text.items()}
    negatives = {}
    for row in out:
        key = f"{row['query']}\x00{by_text[row['positive']]}"
        negatives[key] = [by_text[row[f"negative_{i}"]] for i in range(1, NEGATIVES + 1)]
    Path(args["negatives"]).write_text(json.dumps(negatives))
    return {"seconds": round(done - started, 1), "mine_seconds": round(done - loaded, 1),
            "peak_rss_mb": peak_rss_mb(), "rows_out": len(out), "rows_in": len(pairs)}


def job_hardneg_mine(args: dict) -> dict:
    """hardneg's mine() with an ensemble of ``args['models']`` (one model: plain dense mining)."""
    started = time.perf_counter()
    from hardneg.config import DEFAULT_ENSEMBLE, DEFAULT_WEIGHTS, MiningConfig
    from hardneg.mine import mine
    from hardneg.retrieve import Ensemble, make_retriever

    dataset, pairs = scifact_pairs(args.get("dataset"))
    models = args["models"]
    members = [make_retriever(m, cache_dir=args["cache"], progress=False, max_seq_length=MAX_SEQ,
                              workers=args.get("workers", 1)) for m in models]
    weights = DEFAULT_WEIGHTS if [m.split("-")[0] for m in models] == DEFAULT_ENSEMBLE else None  # any MiniLM engine
    ensemble = Ensemble(members, fusion="zscore", weights=weights)
    ensemble.index(dataset.corpus.full_texts(), dataset.corpus.ids)
    indexed = time.perf_counter()
    # ST's settings: the best 4 of each member's top 100, no positive-aware filter, no random top-up. With a
    # filter ratio (part b), hardneg's default rank window instead.
    filter_ratio = args.get("positive_ratio")
    top_n = {} if filter_ratio else {"range_min": 0, "range_max": None, "sampling": "top"}
    config = MiningConfig(num_negatives=NEGATIVES, depth=DEPTH, positive_ratio=filter_ratio, fill_shortfall="none",
                          **top_n)
    result = mine(dataset, pairs, ensemble, config, "bench", progress=False)
    done = time.perf_counter()
    negatives = {f"{dataset.queries.text(p.query_id)}\x00{p.positive_id}": p.negative_ids for p in result.pairs}
    if args.get("negatives"):
        Path(args["negatives"]).write_text(json.dumps(negatives))
    if args.get("pairs_out"):
        Path(args["pairs_out"]).write_text(json.dumps([p.as_dict() for p in result.pairs]))
    return {"seconds": round(done - started, 1), "index_seconds": round(indexed - started, 1),
            "mine_seconds": round(done - indexed, 1), "peak_rss_mb": peak_rss_mb(), "rows_out": len(result.pairs)}


def _synthetic(path: Path, n: int, dim: int, seed: int, centers: np.ndarray) -> np.memmap:
    """Clustered unit vectors (so IVF recall means something), float16, written in chunks to a memmap."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        x = centers[rng.integers(0, len(centers), m)] + rng.normal(scale=0.03, size=(m, dim)).astype(np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    return out


def job_scale(args: dict) -> dict:
    """Build + search for synthetic docs x queries; recall@100 of IVF against exact search on 500 queries."""
    from hardneg.knn import SearchOptions, build_index, search

    n_docs, n_queries, kind, dim = args["docs"], args["queries"], args["index"], 384
    folder = WORK / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    # Two levels of structure, like real embeddings: 64 topics, 4096 sub-topics around them, points around those.
    rng = np.random.default_rng(7)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    topics = unit(rng.normal(size=(64, dim)))
    centers = unit(topics[np.arange(4096) % 64] + 0.7 * unit(rng.normal(size=(4096, dim)))).astype(np.float32)
    docs_path, q_path = folder / f"docs-{n_docs}-v2.npy", folder / f"queries-{n_queries}-v2.npy"
    if not docs_path.is_file():
        _synthetic(docs_path, n_docs, dim, 1, centers)
    if not q_path.is_file():
        _synthetic(q_path, n_queries, dim, 2, centers)
    docs, queries = np.load(docs_path, mmap_mode="r"), np.load(q_path, mmap_mode="r")
    tie_rank = np.arange(n_docs)
    options = SearchOptions(index=kind, query_block=4096, ivf_nprobe=args.get("nprobe", 16))
    started = time.perf_counter()
    index = build_index(docs, options)
    built = time.perf_counter()
    ids, _ = search(index, docs, queries, DEPTH, tie_rank, options)
    searched = time.perf_counter()
    out = {"build_seconds": round(built - started, 1), "search_seconds": round(searched - built, 1),
           "seconds": round(searched - started, 1), "peak_rss_mb": peak_rss_mb()}
    if kind == "ivf":
        del index
        exact_opts = SearchOptions(index="flat")
        sample = queries[:500]
        exact, _ = search(build_index(docs, exact_opts), docs, sample, DEPTH, tie_rank, exact_opts)
        hits = [len(set(a) & set(b)) / DEPTH for a, b in zip(ids[:500], exact)]
        out["recall@100_vs_flat"] = round(float(np.mean(hits)), 4)
    return out


def job_matmul_floor(args: dict) -> dict:
    """Seconds per multiply-add of one float32 (queries x 384) @ (384 x docs) block, best of 3."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2048, 384)).astype(np.float32)
    d = rng.normal(size=(65536, 384)).astype(np.float32)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        q @ d.T
        best = min(best, time.perf_counter() - started)
    return {"block": [2048, 65536, 384], "block_seconds": round(best, 4),
            "seconds_per_pair": best / (2048 * 65536), "peak_rss_mb": peak_rss_mb()}


def job_quality(args: dict) -> dict:
    """nDCG@10 / Recall@100 on a test split with one model, and its embedding speed on the corpus (cold cache)."""
    from hardneg.data import load_beir, resolve_dataset
    from hardneg.evaluate import evaluate_run, first_stage_run
    from hardneg.retrieve import Ensemble, make_retriever

    dataset = load_beir(resolve_dataset(args.get("dataset", DATASET)))
    retriever = make_retriever(args["model"], cache_dir=args["cache"], progress=False, max_seq_length=MAX_SEQ)
    texts = dataset.corpus.full_texts()
    started = time.perf_counter()
    retriever.index(texts, dataset.corpus.ids)
    embed_seconds = time.perf_counter() - started
    qrels = {q: {d: 1 for d in ds} for q, ds in dataset.positives("test").items()}
    run = first_stage_run(dataset, sorted(qrels), Ensemble([retriever]), DEPTH)
    metrics = evaluate_run(qrels, run, ["ndcg@10", "recall@100"])
    return {"embed_seconds": round(embed_seconds, 1), "docs_per_s": round(len(texts) / embed_seconds, 1),
            **{k: round(v, 4) for k, v in metrics.items()}, "peak_rss_mb": peak_rss_mb()}


def job_train(args: dict) -> dict:
    """A short cross-encoder training run on hardneg's own mined SciFact negatives: pairs per second."""
    from hardneg.config import TrainConfig
    from hardneg.crossencoder import training_info
    from hardneg.mine import MinedPair
    from hardneg.train import train_reranker

    rows = [MinedPair(**r) for r in json.loads(Path(args["pairs"]).read_text())]
    config = TrainConfig(max_length=MAX_SEQ, batch_size=8, max_train_pairs=args["steps"] * 8, epochs=1)
    out = WORK / "train"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    train_reranker(rows, out, config, NEGATIVES, progress=False, fingerprint="bench")
    seconds = time.perf_counter() - started
    info = training_info(out / "model") or {}
    return {"seconds": round(seconds, 1), "train_seconds": info.get("train_seconds"), "steps": info.get("steps"),
            "pairs": info.get("rows"), "peak_rss_mb": peak_rss_mb()}


JOBS = {"st_mine": job_st_mine, "hardneg_mine": job_hardneg_mine, "scale": job_scale,
        "matmul_floor": job_matmul_floor, "quality": job_quality, "train": job_train}


# ---------------------------------------------------------------------------------------------------- parts
def jaccard(path_a: Path, path_b: Path) -> dict:
    a, b = json.loads(path_a.read_text()), json.loads(path_b.read_text())
    common = sorted(set(a) & set(b))
    scores = [len(set(a[k]) & set(b[k])) / len(set(a[k]) | set(b[k])) for k in common if a[k] or b[k]]
    return {"pairs_compared": len(common), "mean_jaccard": round(float(np.mean(scores)), 4) if scores else None,
            "identical_sets": round(float(np.mean([s == 1.0 for s in scores])), 4) if scores else None}


def fresh(name: str) -> str:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def corpus_subset(n_docs: int) -> str:
    """SciFact with every train positive plus a seeded sample of other documents, n_docs in all (train qrels only):
    the same work for both sides at a fraction of the cold-embedding time, for a machine too busy for the whole."""
    from hardneg.data import resolve_dataset

    source = resolve_dataset(DATASET)
    folder = WORK / f"scifact-{n_docs}"
    rows = [json.loads(line) for line in (source / "corpus.jsonl").read_text().splitlines() if line.strip()]
    qrels = (source / "qrels" / "train.tsv").read_text().splitlines()
    positives = {line.split("\t")[1] for line in qrels[1:] if line.strip()}
    others = [r["_id"] for r in rows if r["_id"] not in positives]
    rng = np.random.default_rng(0)
    keep = positives | set(rng.choice(others, size=max(0, n_docs - len(positives)), replace=False).tolist())
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["_id"] in keep))
    shutil.copy(source / "queries.jsonl", folder / "queries.jsonl")
    (folder / "qrels" / "train.tsv").write_text("\n".join(qrels) + "\n")
    return str(folder)


def part_a(n_docs: int | None = None, models: tuple[str, ...] = ("minilm", "minilm-int8")) -> dict:
    """sentence-transformers' mine_hard_negatives against hardneg with each MiniLM engine in ``models``, cold and
    warm, each in its own process; the negatives' overlap with sentence-transformers' and with torch MiniLM's."""
    out = {}
    data = {"dataset": corpus_subset(n_docs)} if n_docs else {}
    if n_docs:
        out["corpus_subset_docs"] = n_docs
    st_cache, st_neg = fresh("st-cache"), WORK / "st-negatives.json"
    out["st_cold"] = run_job("st_mine", {"cache": st_cache, "negatives": str(st_neg), **data})
    out["st_warm"] = run_job("st_mine", {"cache": st_cache, "negatives": str(st_neg), **data})
    for model in models:
        cache, neg = fresh(f"hn-cache-{model}"), WORK / f"hn-negatives-{model}.json"
        out[f"hardneg_{model}_cold"] = run_job("hardneg_mine", {"models": [model], "cache": cache,
                                                                "negatives": str(neg), **data,
                                                                "pairs_out": str(WORK / f"train-pairs-{model}.json")})
        out[f"hardneg_{model}_warm"] = run_job("hardneg_mine", {"models": [model], "cache": cache,
                                                                "negatives": str(neg), **data})
        out[f"overlap_{model}_vs_st"] = jaccard(neg, st_neg)
        if model != "minilm" and "minilm" in models:
            out[f"overlap_minilm_vs_{model}"] = jaccard(WORK / "hn-negatives-minilm.json", neg)
        out[f"{model}_cold_speedup_vs_st"] = round(out["st_cold"]["seconds"] / out[f"hardneg_{model}_cold"]["seconds"], 2)
    return out


def part_b(n_docs: int | None, first: tuple[str, ...]) -> dict:
    """The default ensemble with its default filter (positive_ratio 0.95), MiniLM in each of ``first``."""
    out = {}
    data = {"dataset": corpus_subset(n_docs)} if n_docs else {}
    if n_docs:
        out["corpus_subset_docs"] = n_docs
    for dense in first:
        models = [dense, "wordllama", "bm25"]
        label = "+".join(models)
        cache = fresh(f"ens-cache-{dense}")
        for temp in ("cold", "warm"):
            out[f"{label}_{temp}"] = run_job("hardneg_mine", {"models": models, "cache": cache,
                                                              "positive_ratio": 0.95, **data})
    return out


def part_c(sizes: list[tuple[int, int, str]]) -> dict:
    floor = run_job("matmul_floor", {})
    out = {"matmul_floor": floor}
    for docs, queries, kind in sizes:
        result = run_job("scale", {"docs": docs, "queries": queries, "index": kind}, timeout=1800)
        result["matmul_floor_seconds"] = round(floor["seconds_per_pair"] * docs * queries, 1)
        result["ratio_to_floor"] = round(result["search_seconds"] / result["matmul_floor_seconds"], 2)
        out[f"{docs}x{queries}_{kind}"] = result
    return out


def part_d(models: tuple[str, ...], cache: Path, dataset: str) -> dict:
    """Quality of each model on a dataset's test split (SciFact by default). ``cache`` is kept between runs: a model whose vectors are
    already there (e.g. an earlier run's MiniLM cache copied in) is timed warm, which the result says."""
    from hardneg.embed import get_embedder
    from hardneg.embed.store import store_folder

    cache.mkdir(parents=True, exist_ok=True)
    out = {"dataset": dataset}
    for model in models:
        key = get_embedder(model, max_seq_length=MAX_SEQ).cache_key
        warm = store_folder(cache, key).is_dir() or (cache / f"{store_folder(cache, key).name}.sqlite").is_file()
        out[model] = {**run_job("quality", {"model": model, "cache": str(cache), "dataset": dataset}),
                      "cache": "warm (embed_seconds is not an embedding speed)" if warm else "cold"}
    return out


def part_e() -> dict:
    pairs = WORK / "train-pairs-minilm.json"  # hardneg's MiniLM negatives from part (a)
    if not pairs.is_file():
        run_job("hardneg_mine", {"models": ["minilm"], "cache": str(WORK / "hn-cache-minilm"),
                                 "pairs_out": str(pairs)})
    return {"steps_10": run_job("train", {"pairs": str(pairs), "steps": 10})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="a,b,c,d,e")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "speed" / "speed.json"))
    parser.add_argument("--scale", default="10000x10000:flat,10000x100000:flat,100000x10000:flat,"
                        "100000x100000:flat,100000x100000:ivf,1000000x10000:flat,1000000x100000:ivf",
                        help="DOCSxQUERIES:INDEX,... for part c")
    parser.add_argument("--corpus-docs", type=int, default=None,
                        help="part a on SciFact train with this many documents (all train positives included)")
    parser.add_argument("--quality-models", default="minilm,minilm-int8,minilm-ov,minilm-ov-int8", help="models for part d")
    parser.add_argument("--quality-cache", default=str(WORK / "q-cache"), help="embedding cache for part d")
    parser.add_argument("--mine-models", default="minilm,minilm-int8,minilm-ov,minilm-ov-int8",
                        help="MiniLM engines for part a (each against sentence-transformers' mine_hard_negatives)")
    parser.add_argument("--ensemble-dense", default="minilm,minilm-fast", help="MiniLM variants for part b")
    parser.add_argument("--quality-dataset", default="scifact", help="BEIR dataset (test split) for part d")
    parser.add_argument("--job")
    parser.add_argument("--args", default="{}")
    args = parser.parse_args()
    if args.job:
        print(json.dumps(JOBS[args.job](json.loads(args.args))))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    output = Path(args.output)
    record = json.loads(output.read_text()) if output.is_file() else {}
    record["command"] = "make bench-speed  (python benchmarks/speed.py --parts a,b,c,d,e)"
    record["machine"] = f"{platform.platform()}, {os.cpu_count()} cores"
    record["settings"] = {"max_seq_length": MAX_SEQ, "num_negatives": NEGATIVES, "depth": DEPTH}
    parts = {"e": part_e}
    for part in args.parts.split(","):
        load_before = os.getloadavg()
        started = time.perf_counter()
        if part == "c":
            sizes = [(int(s.split("x")[0]), int(s.split("x")[1].split(":")[0]), s.split(":")[1])
                     for s in args.scale.split(",")]
            result = part_c(sizes)
        elif part == "a":
            result = part_a(args.corpus_docs, tuple(args.mine_models.split(",")))
        elif part == "b":
            result = part_b(args.corpus_docs, tuple(args.ensemble_dense.split(",")))
        elif part == "d":
            result = part_d(tuple(args.quality_models.split(",")), Path(args.quality_cache), args.quality_dataset)
        else:
            result = parts[part]()
        result["command"] = "nice -n 10 python " + " ".join(["benchmarks/speed.py", *sys.argv[1:]])
        result["load_average_before"] = [round(x, 2) for x in load_before]
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        result["part_seconds"] = round(time.perf_counter() - started, 1)
        record[part] = {**record.get(part, {}), **result}
        from hardneg.io import write_json

        write_json(output, record)
        print(f"part {part} done in {result['part_seconds']}s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

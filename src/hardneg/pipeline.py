"""``hardneg run``: mine -> train -> evaluate for every negative strategy, then the comparison table.

Each stage writes its output atomically under the run folder with a fingerprint of the settings that made it;
a rerun (or a resumed, interrupted run) reuses every finished stage whose settings are unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .chunk import (
    ChunkedDataset,
    chunk_for_run,
    chunk_pairs,
    document_scores,
    documents_run,
    load_tokenizer,
    top_documents,
)
from .config import MiningConfig, RunConfig, StrategyConfig, fingerprint, slug
from .data import Dataset, load_beir, resolve_dataset
from .diagnostics import write_diagnostics
from .evaluate import (
    Row,
    RunDict,
    ScoreStore,
    analyse,
    evaluate_run,
    first_stage_run,
    ranked,
    rerank_run,
    score_pairs,
    tune_alpha,
    write_trec,
)
from .io import atomic_write, read_json, read_jsonl, write_json, write_jsonl
from .knn import SearchOptions
from .lengths import (
    LengthSplit,
    document_tokens,
    length_table,
    metrics_by_length,
    resolve_max_length,
    split_by_length,
)
from .mine import MinedPair, mine, training_pairs
from .report import results_markdown
from .retrieve import Ensemble, Retriever, make_retriever
from .train import dev_samples, load_cross_encoder, train_reranker, training_info

logger = logging.getLogger(__name__)
# Below this many dev queries a tuned interpolation weight did no better than a fixed one
# (benchmarks/interpolation_weights.json), so the run warns.
SMALL_DEV = 30


@dataclass(frozen=True)
class RunResult:
    output: Path
    rows: list[Row]
    mining: dict[str, dict]
    markdown: str


def split_queries(query_ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic (train, dev) split by hashing each id with the seed: stable as queries are added."""
    def key(q: str) -> str:
        return hashlib.sha256(f"{seed}\x00{q}".encode()).hexdigest()

    ordered = sorted(query_ids, key=key)
    n_dev = int(round(fraction * len(ordered)))
    dev = set(ordered[:n_dev])
    return [q for q in query_ids if q not in dev], [q for q in query_ids if q in dev]


def sample_queries(query_ids: list[str], n: int | None, seed: int) -> list[str]:
    if n is None or n >= len(query_ids):
        return query_ids
    keep = set(split_queries(query_ids, n / len(query_ids), seed + 1)[1])
    return [q for q in query_ids if q in keep]


def search_options(config: RunConfig) -> SearchOptions:
    return SearchOptions(**config.search.model_dump(), seed=config.seed)


def _search_stamp(config: RunConfig) -> list:
    # Only non-default search settings enter the fingerprint, so runs mined before they existed stay reusable.
    changed = config.search.model_dump(exclude_defaults=True)
    return [changed] if changed else []


class Retrievers:
    """Each first-stage model built and indexed once per run, shared by mining and evaluation."""

    def __init__(self, dataset: Dataset, config: RunConfig, cache_dir: Path):
        self.dataset, self.config, self.cache_dir = dataset, config, cache_dir
        self._built: dict[str, Retriever] = {}
        self._texts = None

    def get(self, name: str) -> Retriever:
        if name not in self._built:
            retriever = make_retriever(name, cache_dir=self.cache_dir, progress=self.config.progress,
                                       max_seq_length=self.config.embed_max_seq_length,
                                       search=search_options(self.config), dtype=self.config.embed_dtype,
                                       workers=self.config.embed_workers)
            if self._texts is None:
                self._texts = self.dataset.corpus.full_texts()
            started = time.perf_counter()
            retriever.index(self._texts, self.dataset.corpus.ids)
            logger.info("Indexed corpus with %s in %.1fs", name, time.perf_counter() - started)
            self._built[name] = retriever
        return self._built[name]

    def ensemble(self, names: list[str], fusion: str | None = None, kept_variance: float | None = None) -> Ensemble:
        """Members are indexed lazily: building the object is cheap, the first search pays for the index."""
        weights = self.config.weights if names == self.config.ensemble else None
        return Ensemble([_Lazy(self, n) for n in names], fusion=fusion or self.config.fusion, weights=weights,
                        kept_variance=kept_variance or self.config.mining.kept_variance, seed=self.config.seed)

    def first_stage(self, name: str) -> Ensemble:
        return self.ensemble(self.config.ensemble if name == "ensemble" else [name])


class _Lazy(Retriever):
    """A member that is built and indexed (once per run, shared) when first used."""

    def __init__(self, pool: Retrievers, name: str):
        self.pool, self.name = pool, name

    def index(self, documents, doc_ids):  # the shared pool indexes the run's corpus
        self.pool.get(self.name)

    @property
    def tie_rank(self):
        return self.pool.get(self.name).tie_rank

    def query_scores(self, queries, doc_idx):
        return self.pool.get(self.name).query_scores(queries, doc_idx)

    def search(self, queries, k):
        return self.pool.get(self.name).search(queries, k)

    def document_vectors(self):
        return self.pool.get(self.name).document_vectors()

    def query_vectors(self, queries):
        return self.pool.get(self.name).query_vectors(queries)


def mine_strategy(dataset: Dataset, strategy: StrategyConfig, config: RunConfig, retrievers: Retrievers,
                  pairs: list[tuple[str, str]], folder: Path,
                  mining: MiningConfig | None = None) -> tuple[list[MinedPair], dict]:
    """Mine (or reuse) one strategy's negatives; returns the pairs and what mining.json records.

    ``mining`` replaces the strategy's settings (the second round passes its denoising re-ranker this way).
    """
    mining = mining or config.mining_for(strategy)
    members = config.members_for(strategy)
    fusion = mining.fusion or config.fusion
    ensemble = (retrievers.ensemble(members, fusion, mining.kept_variance) if strategy.kind != "random" else None)
    # Only what changes the output: the data, the rules, and for an ensemble its members, fusion and weights.
    how = (None if ensemble is None else
           [members, config.embed_max_seq_length] + ([fusion, ensemble.weights.tolist()]
                                                     if len(members) > 1 else [])
           + (["concat-pca"] if len(members) == 1 and fusion == "concat-pca" else []) + _search_stamp(config))
    if mining.denoise_model is not None:  # the re-ranker's training, not just its folder, decides the output
        how = [how, training_info(mining.denoise_model).get("fingerprint") or mining.denoise_model]
    stamp = fingerprint(dataset.signature, strategy.kind, mining.stamp(), how, config.seed, pairs, __version__)
    summary_path, negatives_path = folder / "mining.json", folder / "negatives.jsonl"
    if summary_path.is_file() and negatives_path.is_file():
        saved = read_json(summary_path)
        if saved.get("fingerprint") == stamp:
            logger.info("Reusing mined negatives for %s", strategy.name)
            return [MinedPair(**row) for row in read_jsonl(negatives_path)], saved
    started = time.perf_counter()
    result = mine(dataset, pairs, ensemble, mining, strategy.name, seed=config.seed, progress=config.progress)
    seconds = time.perf_counter() - started
    summary_path.unlink(missing_ok=True)  # the summary's fingerprint vouches for the negatives: never leave a stale one
    write_jsonl(negatives_path, (p.as_dict() for p in result.pairs))
    write_jsonl(folder / "likely_positives.jsonl", result.likely_positives)
    saved = {"fingerprint": stamp, "members": members, "mining": mining.model_dump(), "seconds": round(seconds, 1),
             "summary": result.summary.as_dict()}
    try:
        saved["diagnostics"] = write_diagnostics(result, folder, plots=True)
    except ImportError as exc:  # plots are an optional extra: keep the numbers
        logger.warning("%s; writing diagnostics without plots", exc)
        saved["diagnostics"] = write_diagnostics(result, folder, plots=False)
    write_json(summary_path, saved)
    return result.pairs, saved


def run_pipeline(config: RunConfig) -> RunResult:
    """Run every stage for every strategy and return the comparison table (also written to the run folder)."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(config.cache_dir) if config.cache_dir else out.parent / ".cache" / "embeddings"
    write_json(out / "config.json", config.model_dump())

    documents = load_beir(resolve_dataset(config.dataset, config.data_dir))
    config = resolve_max_length(config, documents)  # train.max_length: auto -> measured (chunking uses it too)
    write_json(out / "data_report.json", {"dataset": documents.name, "documents": len(documents.corpus),
                                          "queries": len(documents.queries), **documents.report.as_dict()})
    # Long documents: everything up to evaluation runs on chunks; evaluation maps scores back to documents.
    chunks, built = None, []
    if config.chunking.strategy != "none":
        def ensemble_over(data: Dataset) -> Ensemble:  # the 'best' chunk rule's scorer, reused for mining
            built.append(Retrievers(data, config, cache_dir))
            return built[-1].ensemble(config.ensemble)

        chunks = chunk_for_run(documents, config, cache_dir, ensemble_over)
    dataset = chunks.dataset if chunks is not None else documents
    train_query_ids = sorted(dataset.positives(config.train_split))
    train_query_ids = sample_queries(train_query_ids, config.max_train_queries, config.seed)
    train_ids, dev_ids = split_queries(train_query_ids, config.dev_fraction, config.seed)
    pairs = training_pairs(dataset, config.train_split, train_ids)
    logger.info("%d training queries (%d pairs), %d dev queries", len(train_ids), len(pairs), len(dev_ids))
    retrievers = Retrievers(dataset, config, cache_dir)
    if built and built[-1].dataset.corpus is dataset.corpus:
        retrievers = built[-1]

    # Mine and train, one strategy at a time.
    models: dict[str, Path] = {}
    mining_info: dict[str, dict] = {}
    dev = None
    if config.train.dev_eval and dev_ids:  # the same dev candidates for every strategy: a fair checkpoint pick
        first = retrievers.first_stage(config.evaluate.first_stages[0])
        dev = dev_samples(dataset, first_stage_run(dataset, dev_ids, first, config.train.dev_depth),
                          dataset.qrels[config.train_split], config.train.dev_depth, config.train.dev_max_queries)
    for strategy in config.strategies:
        folder = out / "strategies" / slug(strategy.name)
        mined, saved = mine_strategy(dataset, strategy, config, retrievers, pairs, folder)
        mining_info[strategy.name] = saved
        num_negatives = config.mining_for(strategy).num_negatives
        card = {"dataset": dataset.name, "split": config.train_split, "strategy": strategy.name,
                "members": saved["members"], "mining": saved["mining"]}
        models[strategy.name] = train_reranker(
            mined, folder, config.train, num_negatives, seed=config.seed, progress=config.progress,
            fingerprint=fingerprint(saved["fingerprint"], config.train, config.seed), dev=dev, card=card,
            extra_pairs=augmented(dataset, config, retrievers, strategy, num_negatives))
        if config.rounds == 2 and strategy.kind != "random":
            # Second round: the re-ranker just trained denoises a fresh mining, and a new one is trained on it.
            again = config.mining_for(strategy).model_copy(update={
                "denoise_model": str(models[strategy.name]), "denoise_max_length": config.train.max_length})
            folder2 = folder / "round2"
            mined, saved = mine_strategy(dataset, strategy, config, retrievers, pairs, folder2, again)
            mining_info[strategy.name] = {**saved, "round1": mining_info[strategy.name]}
            card = {**card, "mining": saved["mining"], "round": 2}
            models[strategy.name] = train_reranker(
                mined, folder2, config.train, again.num_negatives, seed=config.seed, progress=config.progress,
                fingerprint=fingerprint(saved["fingerprint"], config.train, config.seed), dev=dev, card=card,
                extra_pairs=augmented(dataset, config, retrievers, strategy, again.num_negatives))

    length_split = split_by_length(
        documents.qrels[config.evaluate.split],
        document_tokens(documents.corpus, load_tokenizer(config.train.base_model),
                        sorted({d for docs in documents.qrels[config.evaluate.split].values() for d in docs})),
        config.chunking.long_threshold or config.train.max_length)
    rows = evaluate_all(dataset, config, retrievers, models, dev_ids, out, chunks, length_split)
    settings = {"dataset": documents.name, "data": documents.report.summary(), "train_queries": len(train_ids),
                "train_pairs": len(pairs),
                "dev_queries": len(dev_ids), "lengths": length_split.as_dict(), "config": config.model_dump()}
    if chunks is not None:
        settings["chunks"] = {"documents": len(documents.corpus), "chunks": len(chunks.dataset.corpus)}
    markdown = results_markdown(rows, config.evaluate.metrics, settings, mining_info)
    markdown += "\n" + length_table(rows, config.evaluate.metrics, length_split)
    write_json(out / "results.json", {"settings": settings, "rows": [r.as_dict() for r in rows],
                                      "mining": mining_info})
    with atomic_write(out / "results.md") as handle:
        handle.write(markdown)
    return RunResult(out, rows, mining_info, markdown)


def augmented(dataset: Dataset, config: RunConfig, retrievers: Retrievers, strategy: StrategyConfig,
              num_negatives: int) -> list[MinedPair]:
    """Corpus-made pairs (train.augment_*), negatives from the strategy's own ensemble (random for random)."""
    from .augment import augment_pairs

    t = config.train
    if not (t.augment_title_pairs or t.augment_sentence_pairs):
        return []
    ensemble = retrievers.ensemble(config.members_for(strategy)) if strategy.kind != "random" else None
    return [p for kind, n in (("title", t.augment_title_pairs), ("sentence", t.augment_sentence_pairs)) if n
            for p in augment_pairs(dataset.corpus, kind, n, num_negatives, config.seed, ensemble)]


def evaluate_all(dataset: Dataset, config: RunConfig, retrievers: Retrievers, models: dict[str, Path],
                 dev_ids: list[str], out: Path, chunks: ChunkedDataset | None = None,
                 length_split: LengthSplit | None = None) -> list[Row]:
    """Rows of the results table. With ``chunks``, ``dataset`` is the chunk dataset: first stages retrieve
    chunks (mapped to documents by their best chunk), re-rankers score every chunk of the top documents, and a
    document's score is its chunks' aggregate; metrics are always over the documents' qrels."""
    ev = config.evaluate
    documents = chunks.documents if chunks is not None else dataset
    test_ids = sample_queries(sorted(documents.positives(ev.split)), ev.max_queries, config.seed)
    test_qrels = documents.qrels[ev.split]
    dev_qrels = {q: documents.qrels[config.train_split][q] for q in dev_ids}
    test_qrels = {q: test_qrels[q] for q in test_ids}

    def measure(run: RunDict) -> dict:
        by_length = metrics_by_length(test_qrels, run, ev.metrics, length_split) if length_split else None
        return {"metrics": evaluate_run(test_qrels, run, ev.metrics), "by_length": by_length}

    def first_stage(ensemble, query_ids: list[str]) -> RunDict:
        if chunks is None:
            return first_stage_run(dataset, query_ids, ensemble, ev.depth)
        chunk_run = first_stage_run(dataset, query_ids, ensemble, math.ceil(ev.depth * chunks.expansion))
        return top_documents(documents_run(chunk_run, chunks.chunk_doc), ev.depth)

    def doc_scores(store: ScoreStore, runs: dict[str, RunDict]) -> dict[str, dict[str, float]]:
        if chunks is None:
            return store.scores
        merged: dict[str, dict[str, float]] = {}
        for run in runs.values():
            for q, docs in document_scores(store.scores, run, ev.rerank_depth, chunks.doc_chunks,
                                           config.chunking.aggregation).items():
                merged.setdefault(q, {}).update(docs)
        return merged

    fixed_weight = ev.interpolate and ev.interpolation_weight is not None
    tune = ev.interpolate and not fixed_weight and bool(dev_ids)
    if tune and len(dev_ids) < SMALL_DEV:
        logger.warning("The interpolation weight is tuned on only %d dev queries, a noisy choice; "
                       "evaluate.interpolation_weight fixes it instead", len(dev_ids))
    first_stages: dict[str, dict[str, RunDict]] = {}
    for name in ev.first_stages:
        ensemble = retrievers.first_stage(name)
        first_stages[name] = {"test": first_stage(ensemble, test_ids),
                              "dev": first_stage(ensemble, dev_ids) if tune else {}}
        write_trec(out / "runs" / f"{slug(name)}.{ev.split}.trec", first_stages[name]["test"], slug(name))

    rows = [Row(name, "none", "first stage", **measure(runs["test"])) for name, runs in first_stages.items()]
    reranked_stages = {k: v for k, v in first_stages.items() if ev.rerank is None or k in ev.rerank}
    rerankers = {**({"base": config.train.base_model} if ev.include_base else {}),
                 **{k: str(v) for k, v in models.items()}, **{path: path for path in ev.extra_rerankers}}
    systems: dict[str, dict[str, RunDict]] = {name: {"first stage": runs["test"]}
                                              for name, runs in first_stages.items()}
    for system, model_path in rerankers.items():
        model = load_cross_encoder(model_path, config.train.max_length, seed=config.seed)
        made_by = fingerprint(system, training_info(model_path).get("fingerprint") or model_path,
                              config.train.max_length, config.seed)
        store = {split: ScoreStore(out / "scores" / f"{slug(system)}.{split}.json", made_by)
                 for split in ("test", "dev")}
        for split in ("test", "dev") if tune else ("test",):
            if chunks is None:
                needed = [(q, d) for runs in reranked_stages.values() for q, docs in runs[split].items()
                          for d in ranked(docs)[:ev.rerank_depth]]
            else:
                needed = [p for runs in reranked_stages.values()
                          for p in chunk_pairs(runs[split], ev.rerank_depth, chunks.doc_chunks)]
            score_pairs(model, dataset, needed, store[split], ev.batch_size, config.progress)
        for name, runs in reranked_stages.items():
            test_scores = doc_scores(store["test"], {name: runs["test"]})
            reranked = rerank_run(runs["test"], test_scores, ev.rerank_depth)
            write_trec(out / "runs" / f"{slug(name)}.{slug(system)}.{ev.split}.trec", reranked, slug(system))
            rows.append(Row(name, system, "rerank", **measure(reranked)))
            systems[name][system] = reranked
            if tune:
                dev_scores = doc_scores(store["dev"], {name: runs["dev"]})
                alpha, curve = tune_alpha(dev_qrels, runs["dev"], dev_scores, ev.rerank_depth)
                logger.info("Interpolation weight for %s on %s: %.1f (dev nDCG@10 by weight: %s)", system, name,
                            alpha, ", ".join(f"{a:.1f}: {v:.3f}" for a, v in curve.items()))
            elif fixed_weight:
                alpha, curve = ev.interpolation_weight, {}
            else:
                continue
            mixed = rerank_run(runs["test"], test_scores, ev.rerank_depth, alpha)
            write_trec(out / "runs" / f"{slug(name)}.{slug(system)}+interpolated.{ev.split}.trec", mixed,
                       f"{slug(system)}+interpolated")
            rows.append(Row(name, system, "interpolated", alpha=alpha, alpha_curve=list(curve.items()) or None,
                            **measure(mixed)))
            systems[name][f"{system} + first stage"] = mixed
        logger.info("Evaluated re-ranker %s", system)
    # Significance and intervals: systems that rank the same first stage's candidates are compared pairwise.
    write_json(out / "analysis.json", {
        "split": ev.split, "queries": len(test_qrels), "qrels": test_qrels,
        "query_text": {q: documents.queries.text(q) for q in test_qrels},
        "first_stages": {name: analyse(test_qrels, found, ev.metrics, ev.significance, ev.correction,
                                       ev.bootstrap, config.seed) for name, found in systems.items()}})
    return rows


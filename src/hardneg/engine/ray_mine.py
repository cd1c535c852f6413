"""Mining on Ray: the dense members' corpus and query vectors embedded by Ray Data actor pools (into the shared
embedding cache), the members indexed once on the driver and put in the object store once, then the queries'
candidate search and the mining rules run per query shard as Ray tasks, and the shards merged into exactly the
result :func:`hardneg.mine.mine` gives in one process.

Why the result is the same: every step of mining is per query (candidate search, fusion, the rules, each pair's
seeded random draws), a shard holds whole queries, and the merge restores the pairs' order. Clustering and the
denoising cross-encoder run inside each task (the same result, paid once per shard).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter, OrderedDict

import numpy as np
from tqdm.auto import tqdm

from ..compute_config import ComputeConfig
from ..config import MiningConfig
from ..data import Dataset
from ..knn import build_index, on_cpu
from ..mine import MiningResult, MiningSummary, mine
from ..retrieve import BM25Retriever, DenseRetriever, Ensemble, Retrievers
from ..embed import get_embedder
from .ray_embed import embed_on_ray
from .ray_session import connect, num_workers

logger = logging.getLogger(__name__)


def mine_on_ray(compute: ComputeConfig, dataset: Dataset, pairs: list[tuple[str, str]], ensemble: Ensemble,
                config: MiningConfig, strategy: str, seed: int = 42, progress: bool = True) -> MiningResult:
    """:func:`hardneg.mine.mine` with embedding and mining spread over a Ray cluster (see the module doc)."""
    ray = connect(compute, progress)
    started = time.perf_counter()
    query_ids = list(dict.fromkeys(q for q, _ in pairs))
    query_texts = [dataset.queries.text(q) for q in query_ids]
    for member in ensemble.members:
        embed_member(member, query_texts, compute, progress)
    shipped = ray.put(ship(ensemble, query_texts, config))
    shared = ray.put(dataset)
    logger.info("Ray: members embedded and indexed in %.1fs", time.perf_counter() - started)

    shards = query_shards(pairs, compute.ray_query_shard)
    task = ray.remote(num_cpus=1, max_retries=1)(_mine_shard)
    in_flight_limit = num_workers(compute, ray)
    results: dict[int, MiningResult] = {}
    pending: dict = {}
    with tqdm(total=len(pairs), desc=f"mine {strategy} on Ray", disable=not progress, unit="pair") as bar:
        for number, shard in enumerate(shards):
            while len(pending) >= in_flight_limit:
                _collect(ray, pending, results, shards, bar)
            # References inside a list reach the task unresolved: it reads each shared object once per process.
            pending[task.remote([shared, shipped], shard, config, strategy, seed)] = number
        while pending:
            _collect(ray, pending, results, shards, bar)
    merged = merge_results(pairs, [results[i] for i in range(len(shards))], strategy, config)
    logger.info("Mined %s on Ray: %d pairs in %d shards, %.1fs", strategy, merged.summary.pairs, len(shards),
                time.perf_counter() - started)
    return merged


def _collect(ray, pending: dict, results: dict, shards: list, bar) -> None:
    done, _ = ray.wait(list(pending), num_returns=1)
    number = pending.pop(done[0])
    results[number] = ray.get(done[0])
    bar.update(len(shards[number]))


def embed_member(member, query_texts: list[str], compute: ComputeConfig, progress: bool) -> None:
    """Embed a run's dense member (the corpus and these queries) on Ray before it is indexed; a member already
    indexed, a lexical one, or one built outside a run's :class:`Retrievers` is left as it is."""
    pool, name = getattr(member, "pool", None), getattr(member, "name", "")
    if not isinstance(pool, Retrievers) or name.lower() == "bm25":
        return
    embedder = get_embedder(name, max_seq_length=pool.config.embed_max_seq_length)  # as Retrievers.get builds it
    embed_on_ray(embedder, {"document": pool.dataset.corpus.full_texts(), "query": query_texts}, pool.cache_dir,
                 compute, progress)


def ship(ensemble: Ensemble, query_texts: list[str], config: MiningConfig) -> tuple[Ensemble, dict[int, np.ndarray]]:
    """The ensemble as the tasks get it: its members indexed (from the cache), their query vectors computed, the
    concat-pca space fitted once; FAISS indexes travel serialised. The run's own retrievers are not changed."""
    members = []
    indexes: dict[int, np.ndarray] = {}
    for i, member in enumerate(ensemble.members):
        real = member.pool.get(member.name) if isinstance(getattr(member, "pool", None), Retrievers) else member
        twin = copy.copy(real)
        twin.name = member.name  # the run's name for it ("hash", not "hash-64"): summaries label members by it
        if isinstance(real, DenseRetriever):
            twin._query_cache = {}
            twin.query_vectors(query_texts)  # from the cache: the tasks never load the model
            index = real._index if real._index is not None else build_index(real.doc_vectors, real.search_options)
            indexes[i] = _serialise(index)
            twin._index = None
        elif isinstance(real, BM25Retriever):
            twin._memo = OrderedDict()  # a cache of score rows: nothing the tasks need
        members.append(twin)
    frozen = Ensemble(members, fusion=ensemble.fusion, weights=ensemble.weights.tolist(),
                      kept_variance=ensemble.kept_variance, seed=ensemble.seed)
    if frozen.spec.representation != "members" or config.cluster is not None:
        frozen.space()
    return frozen, indexes


def _serialise(index) -> np.ndarray:
    import faiss

    return faiss.serialize_index(on_cpu(index))  # a GPU index or its replicas cannot be serialised as they are


_SHARED: dict[str, tuple] = {}


def _shared(refs) -> tuple[Dataset, Ensemble]:
    """The dataset and ensemble, read from the object store once per worker process (not once per task)."""
    import ray

    key = "/".join(ref.hex() for ref in refs)
    if key not in _SHARED:
        import faiss

        dataset, (ensemble, indexes) = ray.get(list(refs))
        for i, blob in indexes.items():
            ensemble.members[i]._index = faiss.deserialize_index(blob)
        _SHARED.clear()  # one run's objects at a time
        _SHARED[key] = (dataset, ensemble)
    return _SHARED[key]


def _mine_shard(refs, shard: list[tuple[str, str]], config: MiningConfig, strategy: str, seed: int) -> MiningResult:
    dataset, ensemble = _shared(refs)
    return mine(dataset, shard, ensemble, config, strategy, seed=seed, progress=False)


def query_shards(pairs: list[tuple[str, str]], queries_per_shard: int) -> list[list[tuple[str, str]]]:
    """The pairs in shards of whole queries (every pair of a query in one shard), in the pairs' order."""
    order = list(dict.fromkeys(q for q, _ in pairs))
    shard_of = {q: i // queries_per_shard for i, q in enumerate(order)}
    shards: list[list[tuple[str, str]]] = [[] for _ in range(-(-len(order) // queries_per_shard))]
    for pair in pairs:
        shards[shard_of[pair[0]]].append(pair)
    return shards


def merge_results(pairs: list[tuple[str, str]], parts: list[MiningResult], strategy: str,
                  config: MiningConfig) -> MiningResult:
    """The shards' results as one: pairs and short pairs in the input's order, likely-positive pairs and
    records in the order :func:`hardneg.mine.mine` writes them, counts summed, overlaps averaged over all pairs."""
    position: dict[tuple[str, str], int] = {}
    for i, pair in enumerate(pairs):
        position.setdefault(pair, i)
    summary = MiningSummary(strategy=strategy, negatives_requested=config.num_negatives)
    labelled, likely, records = [], [], []
    overlaps: dict[str, list[float]] = {}
    for part in parts:
        s = part.summary
        summary.removed.update(s.removed)  # update, not +: a rule that removed nothing is still listed
        summary.skipped_pairs.update(s.skipped_pairs)
        summary.random_fill += s.random_fill
        summary.hard_short += s.hard_short
        summary.likely_positives += s.likely_positives
        summary.added_positives += s.added_positives
        summary.short_pairs += s.short_pairs
        summary.clusters = summary.clusters or s.clusters
        for key, values in s.overlap_values.items():
            overlaps.setdefault(key, []).extend(values)
        labelled += [p for p in part.pairs if p.positive_source != "likely"]
        likely += [p for p in part.pairs if p.positive_source == "likely"]
        records += part.likely_positives
    labelled.sort(key=lambda p: position[(p.query_id, p.positive_id)])
    summary.short_pairs.sort(key=lambda r: position[(r["query_id"], r["positive_id"])])
    likely.sort(key=lambda p: (p.query_id, p.positive_id))
    records.sort(key=lambda r: (r["query_id"], r["doc_id"]))
    summary.overlap_values = overlaps
    summary.member_overlap = {k: round(float(np.mean(v)), 4) for k, v in overlaps.items()}
    out = labelled + likely
    summary.pairs = len(out)
    return MiningResult(out, summary, records)


__all__ = ["embed_member", "merge_results", "mine_on_ray", "query_shards", "ship"]

"""The ray engine mines the same negatives as the local one: shards merged exactly (no Ray needed), then a local
Ray embedding into the shared cache and mining query shards as tasks, on the tiny fixture."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hardneg.compute_config import ComputeConfig
from hardneg.config import MiningConfig, RunConfig
from hardneg.data import load_beir
from hardneg.embed import EmbeddingCache, get_embedder
from hardneg.engine import mine_with_engine
from hardneg.engine.ray_mine import merge_results, query_shards
from hardneg.mine import mine, training_pairs
from hardneg.retrieve import Retrievers

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="the ray engine needs Ray: pip install 'hardneg[ray]'")

RULES = {"likely_positive_ratio": 0.3, "add_likely_positives": True, "range_min": 0, "num_negatives": 3}


def _retrievers(beir_dir: Path, cache: Path, members: list[str], engine: str = "local") -> tuple:
    dataset = load_beir(beir_dir)
    config = RunConfig(dataset=str(beir_dir), ensemble=members, progress=False,
                       compute=ComputeConfig(engine=engine, ray_num_workers=2, ray_query_shard=2))
    return dataset, config, Retrievers(dataset, config, cache)


def _mine(beir_dir: Path, cache: Path, members: list[str], mining: MiningConfig, engine: str = "local",
          fusion: str = "zscore"):
    dataset, config, retrievers = _retrievers(beir_dir, cache, members, engine)
    ensemble = retrievers.ensemble(members, fusion)
    return mine_with_engine(config.compute, dataset, training_pairs(dataset, "train"), ensemble, mining, "ens",
                            seed=7, progress=False)


def _same(a, b) -> None:
    assert [p.as_dict() for p in a.pairs] == [p.as_dict() for p in b.pairs]
    assert a.summary.as_dict() == b.summary.as_dict()
    assert list(a.summary.removed) == list(b.summary.removed)  # the same order in mining.json, too
    assert a.likely_positives == b.likely_positives


def test_query_shards_keep_every_query_whole_and_the_order():
    pairs = [("q1", "a"), ("q2", "b"), ("q1", "c"), ("q3", "d"), ("q4", "e")]
    shards = query_shards(pairs, 2)
    assert shards == [[("q1", "a"), ("q2", "b"), ("q1", "c")], [("q3", "d"), ("q4", "e")]]
    assert query_shards([], 3) == []


@pytest.mark.parametrize("rules", [{}, RULES])
def test_shards_mined_apart_and_merged_equal_one_mining(beir_dir, tmp_path, rules):
    mining = MiningConfig(**rules)
    dataset, _, retrievers = _retrievers(beir_dir, tmp_path / "cache", ["hash", "bm25"])
    ensemble = retrievers.ensemble(["hash", "bm25"])
    pairs = training_pairs(dataset, "train")
    whole = mine(dataset, pairs, ensemble, mining, "ens", seed=7, progress=False)
    parts = [mine(dataset, shard, ensemble, mining, "ens", seed=7, progress=False)
             for shard in query_shards(pairs, 2)]
    assert len(parts) > 1
    _same(merge_results(pairs, parts, "ens", mining), whole)
    assert whole.summary.member_overlap  # two members: the overlap is merged, not dropped


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'hardneg[ray]'")
    # Small and bounded, for a 2-core CI container: Ray falls back from a small /dev/shm to /tmp by itself.
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, configure_logging=False,
             log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@needs_ray
def test_ray_engine_mines_the_local_engines_negatives(beir_dir, tmp_path, local_ray):
    # Union fusion and likely positives added as pairs: the merge's every ordering rule is exercised.
    mining = MiningConfig(**RULES)
    local = _mine(beir_dir, tmp_path / "local", ["hash", "bm25"], mining, fusion="union")
    on_ray = _mine(beir_dir, tmp_path / "ray", ["hash", "bm25"], mining, "ray", fusion="union")
    assert local.summary.added_positives and local.summary.member_overlap
    _same(on_ray, local)


@needs_ray
def test_ray_engine_with_a_transformer_fills_the_cache_a_local_run_reads(beir_dir, tmp_path, local_ray, tiny_st,
                                                                        monkeypatch):
    mining = MiningConfig()
    local = _mine(beir_dir, tmp_path / "local", [tiny_st, "bm25"], mining)
    on_ray = _mine(beir_dir, tmp_path / "ray", [tiny_st, "bm25"], mining, "ray")
    _same(on_ray, local)
    # The Ray actors wrote the corpus into the cache this process reads: a local run embeds nothing.
    embedder = get_embedder(tiny_st)
    texts = load_beir(beir_dir).corpus.full_texts()
    cache = EmbeddingCache(tmp_path / "ray", embedder.cache_key)
    assert len(cache.rows([EmbeddingCache.key(t, "document") for t in texts])) == len(set(texts))
    cache.close()
    monkeypatch.setattr(type(embedder), "embed_batch", lambda *a, **k: pytest.fail("embedded again"))
    embedder.embed(texts, "document", tmp_path / "ray", progress=False)


def test_the_ray_engine_names_the_extra_when_ray_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from hardneg.engine.ray_session import require_ray

    with pytest.raises(ImportError, match=r"pip install 'hardneg\[ray\]'"):
        require_ray()

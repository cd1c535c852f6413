"""FAISS candidate search, the float16 memmap store, the ONNX backend and the max-length suggester."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hardneg.embed import EmbeddingCache, HashEmbedder
from hardneg.embed.onnx import OnnxEmbedder
from hardneg.embed.store import store_folder
from hardneg.knn import SearchOptions, build_index, search
from hardneg.lengths import suggest_max_length
from hardneg.retrieve import top_k


def _unit(rng, n, d=16):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _numpy_top(docs, queries, k, tie_rank):
    scores = queries.astype(np.float32) @ docs.astype(np.float32).T
    idx = top_k(scores, k, tie_rank)
    return idx, np.take_along_axis(scores, idx, axis=1)


def test_flat_search_equals_numpy_and_blocking_changes_nothing():
    rng = np.random.default_rng(0)
    docs, queries = _unit(rng, 300), _unit(rng, 50)
    tie_rank = rng.permutation(300)
    want_idx, want_scores = _numpy_top(docs, queries, 10, tie_rank)
    for block in (1, 7, 4096):
        options = SearchOptions(index="flat", query_block=block)
        idx, scores = search(build_index(docs, options), docs, queries, 10, tie_rank, options)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_flat_search_breaks_ties_by_id_even_past_the_fetched_margin():
    # 40 identical documents (exactly equal scores) among 60: FAISS returns some of them in any order.
    rng = np.random.default_rng(1)
    docs = np.zeros((60, 8), dtype=np.float32)
    docs[:40, 0] = 0.5
    docs[40:, 1] = 1.0
    queries = np.array([[1.0, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    tie_rank = rng.permutation(60)
    idx, scores = search(build_index(docs, SearchOptions(index="flat")), docs, queries, 5, tie_rank)
    assert idx[0].tolist() == np.argsort(tie_rank[:40])[:5].tolist()
    assert scores[0].tolist() == [0.5] * 5


def test_ivf_agrees_with_flat_when_probing_every_list():
    rng = np.random.default_rng(2)
    docs, queries = _unit(rng, 400), _unit(rng, 20)
    tie_rank = np.arange(400)
    flat = SearchOptions(index="flat")
    ivf = SearchOptions(index="ivf", ivf_nlist=8, ivf_nprobe=8, query_block=6)
    want, _ = search(build_index(docs, flat), docs, queries, 10, tie_rank, flat)
    got, _ = search(build_index(docs, ivf), docs, queries, 10, tie_rank, ivf)
    np.testing.assert_array_equal(got, want)
    assert build_index(docs, SearchOptions(flat_max_docs=100)).nprobe  # auto picks IVF past flat_max_docs


def test_float16_search_input_and_bad_index_name():
    rng = np.random.default_rng(3)
    docs = _unit(rng, 100).astype(np.float16)
    idx, _ = search(build_index(docs), docs, docs[:3], 1, np.arange(100))
    assert idx[:, 0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="Unknown index 'hnsw'"):
        build_index(docs, SearchOptions(index="hnsw"))


def test_store_round_trips_float16_and_skips_known_keys(tmp_path):
    store = EmbeddingCache(tmp_path, "model-x")
    vecs = {f"k{i}": np.full(4, i / 7, dtype=np.float32) for i in range(5)}
    store.put_many(vecs)
    store.put_many({"k0": np.zeros(4)})  # already cached: ignored, not duplicated
    got = store.get_many(["k3", "k0", "missing"])
    assert set(got) == {"k3", "k0"} and got["k3"].dtype == np.float16
    np.testing.assert_array_equal(got["k3"], np.float16(3 / 7))
    assert len(store) == 5
    with pytest.raises(ValueError, match="4 dimensions, new ones 3"):
        store.put_many({"k9": np.zeros(3)})
    store.close()


def test_interrupted_embed_resumes_and_torn_batches_are_dropped(tmp_path):
    class Dies(HashEmbedder):
        def __init__(self, after):
            super().__init__(16)
            self.batch_size, self.after, self.seen = 2, after, 0

        def embed_batch(self, texts, kind):
            if self.seen >= self.after:
                raise KeyboardInterrupt
            self.seen += len(texts)
            return super().embed_batch(texts, kind)

    texts = [f"text number {i} " + "x" * i for i in range(9)]
    with pytest.raises(KeyboardInterrupt):
        Dies(after=4).embed(texts, cache_dir=tmp_path, progress=False)
    store = EmbeddingCache(tmp_path, Dies(0).cache_key)
    assert len(store) == 4
    # A batch written but never committed (killed between the two steps) leaves stray rows: the next write
    # overwrites them.
    with open(store.vectors_path, "ab") as handle:
        handle.write(b"\x00" * 64)
    store.close()
    resumed = Dies(after=100)
    out = resumed.embed(texts, cache_dir=tmp_path, progress=False)
    assert resumed.seen == 5
    fresh = HashEmbedder(16).embed(texts, progress=False)
    np.testing.assert_allclose(out, fresh, atol=2e-3)
    store = EmbeddingCache(tmp_path, Dies(0).cache_key)
    assert store.vectors_path.stat().st_size == 9 * 16 * 2
    store.close()


def test_legacy_sqlite_cache_is_imported(tmp_path):
    legacy = tmp_path / f"{store_folder(tmp_path, 'hash-16').name}.sqlite"
    conn = sqlite3.connect(legacy)
    conn.execute("CREATE TABLE vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
    key = EmbeddingCache.key("hello", "document")
    conn.execute("INSERT INTO vectors VALUES (?, ?)", (key, np.ones(16, dtype=np.float32).tobytes()))
    conn.commit()
    conn.close()
    emb = HashEmbedder(16)
    emb.embed_batch = None  # any embedding attempt would fail: the vector must come from the import
    out = emb.embed(["hello"], cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(out, np.ones((1, 16), dtype=np.float32))


def test_worker_processes_give_the_same_vectors(tmp_path):
    texts = [f"doc {i} about topic {i % 3}" for i in range(12)]
    one = HashEmbedder(16)
    one.batch_size = 3
    two = HashEmbedder(16)
    two.batch_size = 3
    np.testing.assert_array_equal(one.embed(texts, progress=False), two.embed(texts, progress=False, workers=2))


def test_max_length_suggestion_from_a_tiny_tokenizer():
    class Words:
        model_max_length = 128

        def __call__(self, first, second, truncation=False):
            return {"input_ids": [[0] * (len(a.split()) + len(b.split()) + 3) for a, b in zip(first, second)]}

    pairs = [("q", "w " * n) for n in range(1, 101)]  # pair lengths 5..104 tokens
    found = suggest_max_length(pairs, Words(), percentile=90, sample=1000)
    assert (found.measured, found.max_length, found.sampled) == (95, 96, 100)
    assert suggest_max_length([("q", "w " * 500)], Words()).max_length == 128  # capped at the model's maximum
    with pytest.raises(ValueError, match="No training pairs"):
        suggest_max_length([], Words())


def _torch_mean_pooled(model_dir: str, texts: list[str]) -> np.ndarray:
    """The reference vectors: the transformer in torch, mean-pooled over the attention mask."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def test_onnx_export_matches_torch(tiny_bert, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HARDNEG_ONNX_DIR", str(tmp_path))
    texts = ["a short one", "a somewhat longer sentence about coffee and tea"]
    got = OnnxEmbedder(tiny_bert, "tiny", quantize=False, max_seq_length=32).embed_batch(texts, "document")
    want = _torch_mean_pooled(tiny_bert, texts)
    np.testing.assert_allclose(got, want, atol=1e-4)
    int8 = OnnxEmbedder(tiny_bert, "tiny", quantize=True, max_seq_length=32).embed_batch(texts, "document")
    assert int8.shape == want.shape


def test_openvino_engine_matches_torch(tiny_bert, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("openvino")
    monkeypatch.setenv("HARDNEG_ONNX_DIR", str(tmp_path))
    texts = ["a short one", "a somewhat longer sentence about coffee and tea", "tea"]
    embedder = OnnxEmbedder(tiny_bert, "tiny", quantize=False, max_seq_length=32, engine="openvino")
    assert embedder.name == "tiny-ov" and embedder.cache_key != OnnxEmbedder(tiny_bert, "tiny", quantize=False).cache_key
    got = embedder.embed_batch(texts, "document")
    want = _torch_mean_pooled(tiny_bert, texts)
    if embedder.precision == "f32":
        np.testing.assert_allclose(got, want, atol=1e-4)
    else:  # a CPU with bf16 instructions infers in bf16: close, not equal
        assert embedder.precision == "bf16" and embedder.cache_key.endswith(":bf16")
        cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cosine.min() > 0.999
    pytest.importorskip("nncf")
    int8 = OnnxEmbedder(tiny_bert, "tiny", quantize=True, max_seq_length=32, engine="openvino")
    assert int8.name == "tiny-ov-int8" and int8.cache_key != embedder.cache_key
    close = int8.embed_batch(texts, "document")
    cosine = (close * got).sum(1) / np.linalg.norm(close, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() > 0.98  # int8 weights, activations quantised as it runs: near, not equal
    compressed = sorted(tmp_path.rglob("model_ov_int8.*"))
    assert [p.suffix for p in compressed] == [".bin", ".xml"]
    stamp = compressed[1].stat().st_mtime_ns
    again = OnnxEmbedder(tiny_bert, "tiny", quantize=True, max_seq_length=32, engine="openvino")
    np.testing.assert_allclose(again.embed_batch(texts, "document"), close, atol=1e-6)  # deterministic
    assert compressed[1].stat().st_mtime_ns == stamp  # compressed once, then reused
    from hardneg.embed import get_embedder

    fast = get_embedder("minilm-fast", max_seq_length=128)  # nothing is loaded until the first batch
    assert (fast.engine, fast.name, fast.max_seq_length) == ("openvino", "all-MiniLM-L6-v2-ov-int8", 128)


def test_ivf_query_with_too_few_documents_in_its_lists_is_searched_exactly():
    rng = np.random.default_rng(4)
    docs = _unit(rng, 200)
    options = SearchOptions(index="ivf", ivf_nlist=20, ivf_nprobe=1)  # ~10 documents per list, k = 30
    idx, scores = search(build_index(docs, options), docs, docs[:5], 30, np.arange(200), options)
    assert (idx >= 0).all() and np.isfinite(scores).all()
    want, _ = _numpy_top(docs, docs[:5], 30, np.arange(200))
    np.testing.assert_array_equal(idx, want)

"""Chunking strategies, the positive-chunk rule, aggregation back to documents, and the short/long split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hardneg.chunk import (
    SIBLINGS_SPLIT,
    aggregate_scores,
    best_positive_chunks,
    chunk_dataset,
    chunk_pairs,
    chunk_text,
    document_scores,
    documents_run,
    pack_sentences,
    semantic_breaks,
    split_sentences,
    token_windows,
)
from hardneg.lengths import document_tokens, metrics_by_length, split_by_length

TEXT = ("Solar panels turn light into power. They use silicon cells! Batteries store the power for the night. "
        "Coffee is brewed from roasted beans. Espresso needs fine grounds and hot water.")


@pytest.fixture(scope="module")
def tokenizer():
    from hardneg.chunk import load_tokenizer

    return load_tokenizer("minilm")


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_split_sentences():
    assert split_sentences(TEXT)[:3] == ["Solar panels turn light into power.", "They use silicon cells!",
                                         "Batteries store the power for the night."]
    assert split_sentences("p = 0.05 was found. Next one.\n\nNew paragraph") == [
        "p = 0.05 was found.", "Next one.", "New paragraph"]


def test_token_windows_fit_and_overlap(tokenizer):
    chunks = token_windows(TEXT, tokenizer, 12, overlap=4)
    assert all(n_tokens(tokenizer, c) <= 12 for c in chunks)
    assert chunks[0].startswith("Solar") and chunks[-1].endswith("water.")
    first, second = tokenizer(chunks[0], add_special_tokens=False)["input_ids"], \
        tokenizer(chunks[1], add_special_tokens=False)["input_ids"]
    assert first[-4:] == second[:4]  # 4 shared tokens
    assert token_windows("short text", tokenizer, 12) == ["short text"]
    with pytest.raises(ValueError, match="overlap"):
        token_windows(TEXT, tokenizer, 8, overlap=8)


def test_sentence_packing_keeps_sentences_whole(tokenizer):
    chunks = chunk_text(TEXT, "sentences", tokenizer, 20)
    sentences = split_sentences(TEXT)
    assert all(n_tokens(tokenizer, c) <= 20 for c in chunks)
    assert all(any(c.startswith(s) for s in sentences) and any(c.endswith(s) for s in sentences) for c in chunks)
    assert " ".join(chunks) == " ".join(sentences)  # no overlap: every sentence exactly once
    lengths = [3, 3, 3, 30]
    packed = pack_sentences(["a.", "b.", "c.", "long " * 30], lengths, 7, overlap=3, tokenizer=tokenizer)
    assert packed[:2] == ["a. b.", "b. c."]  # the overlap carries the last sentence over
    assert chunk_text("Fits. Easily.", "sentences", tokenizer, 50) == ["Fits. Easily."]


def test_semantic_breaks_at_topic_change(tokenizer):
    emb = np.array([[1, 0], [0.98, 0.2], [0.95, 0.3], [0, 1], [0.1, 0.99]], dtype=float)
    assert semantic_breaks(emb) == {3}

    def embed(sentences):  # the topic changes after the second sentence
        return np.array([[1.0, 0.0] if any(w in s for w in ("Solar", "silicon")) else [0.0, 1.0]
                         for s in sentences])

    greedy = chunk_text(TEXT, "sentences", tokenizer, 24)  # sentences of 7, 5, 8, 8 and 10 tokens
    assert greedy[1].startswith("Coffee")
    chunks = chunk_text(TEXT, "semantic", tokenizer, 24, embed=embed)
    assert chunks[0] == "Solar panels turn light into power. They use silicon cells!"
    assert chunks[1].startswith("Batteries")
    assert chunk_text("Fits. Easily.", "semantic", tokenizer, 50, embed=embed) == ["Fits. Easily."]
    with pytest.raises(ValueError, match="embedding function"):
        chunk_text(TEXT, "semantic", tokenizer, 10)


def test_chunk_dataset_positive_rules(dataset, tokenizer):
    chunks = chunk_dataset(dataset, "tokens", tokenizer, 12, overlap=2)
    assert set(chunks.chunk_doc.values()) == set(dataset.corpus.ids)
    long_docs = [d for d, cs in chunks.doc_chunks.items() if len(cs) > 1]
    assert long_docs, "the fixture should have a document over 12 tokens"
    d = long_docs[0]
    assert chunks.doc_chunks[d] == [f"{d}#{i}" for i in range(len(chunks.doc_chunks[d]))]
    title = dataset.corpus.titles[dataset.corpus.index[d]]
    assert all(chunks.dataset.corpus.titles[chunks.dataset.corpus.index[c]] == title for c in chunks.doc_chunks[d])
    # rule "all": every chunk of a positive document is a positive
    q, doc = next((q, doc) for q, docs in dataset.qrels["train"].items() for doc in docs if doc in long_docs)
    assert set(chunks.dataset.qrels["train"][q]) >= set(chunks.doc_chunks[doc])
    # rule "best": one chunk per positive document; the others are never negatives
    best = best_positive_chunks(chunks, lambda query, ids: np.arange(len(ids))[::-1])
    assert best.dataset.qrels["train"][q].keys() & set(chunks.doc_chunks[doc]) == {chunks.doc_chunks[doc][0]}
    assert set(chunks.doc_chunks[doc][1:]) <= set(best.dataset.qrels[SIBLINGS_SPLIT][q])
    assert set(chunks.doc_chunks[doc]) <= best.dataset.all_positives()[q]


def test_aggregation():
    doc_chunks = {"a": ["a#0", "a#1", "a#2"], "b": ["b"]}
    scores = {"a#0": 0.2, "a#1": 0.9, "a#2": 0.4, "b": 0.5}
    assert aggregate_scores(scores, doc_chunks, ["a", "b"], "maxp") == {"a": 0.9, "b": 0.5}
    assert aggregate_scores(scores, doc_chunks, ["a", "b"], "firstp") == {"a": 0.2, "b": 0.5}
    assert aggregate_scores(scores, doc_chunks, ["a", "b"], "sump") == pytest.approx({"a": 1.5, "b": 0.5})
    assert documents_run({"q": {"a#1": 2.0, "a#0": 3.0, "b": 1.0}}, {"a#0": "a", "a#1": "a", "b": "b"}) == {
        "q": {"a": 3.0, "b": 1.0}}
    run = {"q": {"a": 3.0, "b": 1.0}}
    assert chunk_pairs(run, 1, doc_chunks) == [("q", "a#0"), ("q", "a#1"), ("q", "a#2")]
    assert document_scores({"q": scores}, run, 2, doc_chunks, "maxp") == {"q": {"a": 0.9, "b": 0.5}}
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_scores(scores, doc_chunks, ["a"], "avgp")


def test_short_long_split(dataset, tokenizer):
    lengths = document_tokens(dataset.corpus, tokenizer)
    assert lengths["d01"] == n_tokens(tokenizer, dataset.corpus.full_text(0))
    qrels = {"q1": {"d01": 1}, "q2": {"d04": 1, "d05": 0}, "q3": {"d07": 0}}
    split = split_by_length(qrels, {"d01": 40, "d04": 10, "d05": 99}, 32)
    assert split.long == ("q1",) and split.short == ("q2",)  # q3 has no positive; a non-positive's length ignored
    run = {"q1": {"d01": 1.0}, "q2": {"d09": 2.0, "d04": 1.0}}
    by = metrics_by_length(qrels, run, ["mrr@10"], split)
    assert by == {"short": {"mrr@10": 0.5}, "long": {"mrr@10": 1.0}}
    # Evaluating a sample of the queries (evaluate.max_queries): only the sampled ones count.
    assert metrics_by_length({"q2": qrels["q2"]}, run, ["mrr@10"], split) == {"short": {"mrr@10": 0.5}}


def test_pipeline_on_chunks_reports_short_and_long(tmp_path, beir_dir, tiny_bert):
    import yaml

    from hardneg import load_config, run

    cfg = {"dataset": str(beir_dir), "output": str(tmp_path / "run"), "seed": 7, "dev_fraction": 0.2,
           "ensemble": ["hash", "bm25"], "progress": False, "mining": {"num_negatives": 2, "depth": 8},
           "strategies": ["ensemble"], "evaluate": {"depth": 10, "rerank_depth": 5, "batch_size": 16},
           "train": {"base_model": tiny_bert, "epochs": 1, "batch_size": 4, "max_length": 32,
                     "learning_rate": 1e-3, "max_train_pairs": 8},
           "chunking": {"strategy": "tokens", "max_tokens": 16, "overlap": 2, "positive": "best",
                        "aggregation": "maxp", "long_threshold": 16}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = run(load_config(tmp_path / "c.yaml"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["settings"]["chunks"]["chunks"] > saved["settings"]["chunks"]["documents"] == 12
    lengths = saved["settings"]["lengths"]
    assert lengths["short_queries"] + lengths["long_queries"] == 4 and lengths["long_queries"] > 0
    for row in result.rows:
        assert set(row.by_length) <= {"short", "long"} and "long" in row.by_length
        assert all(0 <= v <= 1 for v in row.by_length["long"].values())
    assert "## Short and long documents" in (tmp_path / "run" / "results.md").read_text()
    mined = [json.loads(x) for x in (tmp_path / "run/strategies/ensemble/negatives.jsonl").read_text().splitlines()]
    for pair in mined:  # no chunk of the query's positive documents is a negative
        docs = {n.split("#")[0] for n in pair["negative_ids"]}
        assert pair["positive_id"].split("#")[0] not in docs

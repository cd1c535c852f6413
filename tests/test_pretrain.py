"""Pretraining the re-ranker on corpus-made queries labelled by the ensemble (train.pretrain_queries): once per run,
the starting point of every strategy's and every fold's re-ranker, reused on a rerun, and made of no query."""

from __future__ import annotations

import json

import pytest
import yaml

from hardneg import load_config, run
from hardneg.rundir import RunFolder

from .conftest import DOCS, write_beir

# Two sentences per document, so each can give a query (one sentence) for the rest of it.
TWO_SENTENCE_DOCS = [(d, title, f"{text} {title} are explained in this short guide.") for d, title, text in DOCS]


def _config(tmp_path, tiny_bert, **train):
    beir = write_beir(tmp_path / "tiny2", docs=TWO_SENTENCE_DOCS)
    cfg = {"dataset": str(beir), "output": str(tmp_path / "run"), "seed": 7, "dev_fraction": 0.2,
           "ensemble": ["hash", "bm25"], "progress": False, "mining": {"num_negatives": 2, "depth": 8},
           "strategies": ["random", "ensemble"],
           "train": {"base_model": tiny_bert, "epochs": 1, "batch_size": 4, "max_length": 32, "min_steps": 2,
                     "pretrain_queries": 6, **train},
           "evaluate": {"depth": 10, "rerank_depth": 5, "batch_size": 16, "include_base": False,
                        "cross_fit_folds": 3}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _info(folder):
    return json.loads((folder / "hardneg_training.json").read_text())


def test_every_reranker_starts_from_one_pretrained_model_made_of_no_query(tmp_path, tiny_bert):
    result = run(load_config(_config(tmp_path, tiny_bert)))
    pretrained = RunFolder(tmp_path / "run").pretrained_models()
    assert len(pretrained) == 1  # once per run, not once per strategy or fold
    info = _info(pretrained[0])
    assert info["loss"] == "margin_mse" and info["labelled_pairs"] == 6 and info["dev"] is None
    assert info["card"]["split"] == "corpus (sentence queries)"
    strategies = tmp_path / "run" / "strategies"
    models = [strategies / "random" / "model", strategies / "ensemble" / "model",
              *sorted((strategies / "ensemble" / "crossfit").glob("fold*/model"))]
    assert len(models) == 5 and result.system["cross_fit"]["folds"] == 3
    assert all(_info(m)["base_model"] == str(pretrained[0]) for m in models)

    # A rerun trains nothing; other pretraining settings train a new pretrained model, and everything on top of it.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("model.safetensors")}
    run(load_config(_config(tmp_path, tiny_bert)))
    assert {p: p.stat().st_mtime_ns for p in before} == before
    run(load_config(_config(tmp_path, tiny_bert, pretrain_queries=5)))
    assert len(RunFolder(tmp_path / "run").pretrained_models()) == 2
    assert _info(strategies / "ensemble" / "model")["base_model"] != str(pretrained[0])


def test_pretraining_pairs_distil_the_ensemble_over_its_ranks(dataset):
    from hardneg.augment import augment_pairs
    from hardneg.losses import distill_targets
    from hardneg.retrieve import BM25Retriever, Ensemble

    # (the fixture's documents have one sentence each: title queries stand in for sentence ones)
    bm25 = BM25Retriever(progress=False)
    corpus = dataset.corpus
    bm25.index([corpus.full_text(i) for i in range(len(corpus))], corpus.ids)
    pairs = augment_pairs(dataset.corpus, "title", 6, num_negatives=3, seed=1, ensemble=Ensemble([bm25]), depth=12,
                          spread=True)
    top = augment_pairs(dataset.corpus, "title", 6, num_negatives=3, seed=1, ensemble=Ensemble([bm25]), depth=12)
    assert pairs == augment_pairs(dataset.corpus, "title", 6, num_negatives=3, seed=1, ensemble=Ensemble([bm25]),
                                  depth=12, spread=True)  # seeded
    assert all(p.positive_id not in p.negative_ids and len(p.negatives) == 3 for p in pairs)
    # drawn from the whole pool (not always its top three), in rank order, each with its fused score as teacher
    assert any(p.negative_ids != t.negative_ids for p, t in zip(pairs, top))
    assert all(p.negative_scores == sorted(p.negative_scores, reverse=True) for p in pairs)
    assert all(t is not None and len(t) == 4 for t in distill_targets(pairs))


def test_a_corpus_with_no_sentence_to_make_a_query_from_is_a_clear_error(tmp_path, beir_dir, tiny_bert):
    path = _config(tmp_path, tiny_bert)
    cfg = yaml.safe_load(path.read_text())
    cfg["dataset"] = str(beir_dir)  # one sentence per document
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="pretrain_queries: no document of .* has two sentences"):
        run(load_config(path))

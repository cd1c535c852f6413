from __future__ import annotations

import logging

import numpy as np
import pytest

from hardneg.config import TrainConfig
from hardneg.batching import length_grouped_batches, row_lengths
from hardneg.train import train_reranker


def test_length_grouped_batches_cover_every_row_once_and_group_lengths():
    lengths = np.array([5, 100, 7, 98, 6, 101, 8, 99] * 4)
    batches = length_grouped_batches(lengths, batch_size=4, seed=1, group=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(set(lengths[b] > 50)) == 1 for b in batches)  # short and long rows never share a batch
    assert batches == length_grouped_batches(lengths, 4, seed=1, group=8)
    assert batches != length_grouped_batches(lengths, 4, seed=2, group=8)


def test_row_lengths_over_text_and_list_columns():
    from datasets import Dataset

    ds = Dataset.from_dict({"query": ["ab", "c"], "docs": [["xyz", "w"], ["v"]], "labels": [[1, 0], [1]]})
    assert row_lengths(ds).tolist() == [6, 2]


def test_corpus_pairs(dataset):
    from hardneg.augment import augment_pairs, corpus_queries

    titles = corpus_queries(dataset.corpus, "title", 3, seed=1)
    assert len(titles) == 3 and all(dataset.corpus.titles[i] == q for q, i, _ in titles)
    assert all(body == dataset.corpus.texts[i] for _, i, body in titles)  # the body alone
    sentence = corpus_queries(dataset.corpus, "sentence", 5, seed=1)
    assert all(q not in passage for q, _, passage in sentence)  # inverse cloze: the sentence is removed
    pairs = augment_pairs(dataset.corpus, "title", 3, num_negatives=2, seed=1)
    assert all(len(p.negatives) == 2 and p.positive_id not in p.negative_ids for p in pairs)
    assert pairs == augment_pairs(dataset.corpus, "title", 3, num_negatives=2, seed=1)


def test_training_resumes_from_its_last_checkpoint(dataset, tiny_bert, tmp_path, caplog, monkeypatch):
    from sentence_transformers.cross_encoder import CrossEncoderTrainer
    from transformers import TrainerCallback

    from hardneg.config import MiningConfig
    from hardneg.crossencoder import training_info
    from hardneg.mine import mine, training_pairs
    from hardneg.train import dev_samples

    pairs = mine(dataset, training_pairs(dataset, "train"), None, MiningConfig(num_negatives=2), "random",
                 progress=False).pairs
    dev = dev_samples(dataset, {"q6": {"d08": 2.0, "d07": 1.0}, "q7": {"d01": 1.0, "d11": 0.5}},
                      dataset.qrels["test"], depth=2)
    config = TrainConfig(base_model=tiny_bert, loss="mnrl", batch_size=2, max_length=32, dev_evals=3,
                         min_steps=None)  # one pass: 3 steps

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 1:
                raise KeyboardInterrupt

    original = CrossEncoderTrainer.__init__

    def with_interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(Interrupt())

    monkeypatch.setattr(CrossEncoderTrainer, "__init__", with_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_reranker(pairs, tmp_path, config, 2, progress=False, fingerprint="f1", dev=dev)
    assert (tmp_path / "checkpoints" / "checkpoint-1").is_dir()
    monkeypatch.setattr(CrossEncoderTrainer, "__init__", original)
    with caplog.at_level(logging.INFO, logger="hardneg.train"):
        final = train_reranker(pairs, tmp_path, config, 2, progress=False, fingerprint="f1", dev=dev)
    assert "Resuming training from" in caplog.text and "checkpoint-1" in caplog.text
    info = training_info(final)
    assert info["steps"] == 3 and info["dev"]["queries"] == 2 and len(info["dev"]["curve"]) == 3


def test_training_does_not_depend_on_earlier_draws_from_torch(dataset, tiny_bert, tmp_path):
    """Same seed, same model, whatever ran before in the process (e.g. a cold cache loading embedding models)."""
    import torch

    from hardneg.config import MiningConfig
    from hardneg.mine import mine, training_pairs

    pairs = mine(dataset, training_pairs(dataset, "train"), None, MiningConfig(num_negatives=2), "random",
                 progress=False).pairs
    config = TrainConfig(base_model=tiny_bert, loss="triplet", batch_size=4, max_length=32, dev_eval=False)
    weights = []
    for draws, folder in ((0, "a"), (1000, "b")):
        torch.rand(draws)
        final = train_reranker(pairs, tmp_path / folder, config, 2, progress=False, fingerprint=folder, seed=7)
        from sentence_transformers import CrossEncoder

        state = CrossEncoder(str(final)).model.state_dict()
        weights.append({k: v.clone() for k, v in state.items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_time_budget_ends_training_at_the_first_step_past_it_and_says_so(dataset, tiny_bert, tmp_path):
    import json

    from hardneg.config import MiningConfig, fingerprint
    from hardneg.first_stage_config import EmbedderConfig
    from hardneg.mine import mine, training_pairs

    pairs = mine(dataset, training_pairs(dataset, "train"), None, MiningConfig(num_negatives=2), "random",
                 progress=False).pairs
    config = TrainConfig(base_model=tiny_bert, loss="triplet", batch_size=2, max_length=32, dev_eval=False,
                         epochs=5, max_minutes=1e-6)
    final = train_reranker(pairs, tmp_path, config, 2, progress=False, fingerprint="budget", seed=7)
    info = json.loads((final / "hardneg_training.json").read_text())
    assert info["steps"] == 1 and info["time_budget"]["stopped_at_step"] == 1
    assert info["time_budget"]["planned_steps"] > 1
    # an unset budget is left out of the settings' dump: fingerprints written before it existed still hold
    assert "max_minutes" not in TrainConfig().model_dump() and "max_minutes" in config.model_dump()
    assert "max_minutes" not in EmbedderConfig(enabled=True).model_dump()
    assert fingerprint(TrainConfig()) == "c8ac355467b8"  # the defaults since max_length became 128


def test_a_step_floor_raises_epochs_only_for_a_small_training_set(dataset, tiny_bert, tmp_path):
    import json

    from hardneg.config import MiningConfig, fingerprint
    from hardneg.mine import mine, training_pairs
    from hardneg.schedule import planned_epochs

    assert planned_epochs(rows=20, batch=8, config=TrainConfig(min_steps=30)) == 10.0   # 3 steps a pass
    assert planned_epochs(rows=800, batch=8, config=TrainConfig(min_steps=30)) == 1.0  # 100 steps a pass
    assert planned_epochs(rows=20, batch=8, config=TrainConfig(min_steps=None)) == 1.0
    assert planned_epochs(rows=20, batch=8, config=TrainConfig()) == 100 / 3  # the default floor: 100 steps
    pairs = mine(dataset, training_pairs(dataset, "train"), None, MiningConfig(num_negatives=2), "random",
                 progress=False).pairs
    config = TrainConfig(base_model=tiny_bert, loss="triplet", batch_size=4, max_length=32, dev_eval=False,
                         min_steps=6)
    final = train_reranker(pairs, tmp_path, config, 2, progress=False, fingerprint="floor", seed=7)
    assert json.loads((final / "hardneg_training.json").read_text())["steps"] == 6  # 6 pairs: 2 steps a pass
    # The default floor is in the dump (trainings finished before it are redone), and so is an explicit null, so
    # a run folder's config reloads to what it ran with.
    assert TrainConfig().model_dump()["min_steps"] == 100 and config.model_dump()["min_steps"] == 6
    unset = TrainConfig(min_steps=None)
    assert TrainConfig.model_validate(unset.model_dump()).min_steps is None
    assert fingerprint(unset) != fingerprint(TrainConfig()) == "c8ac355467b8"


"""Fine-tuning a bi-encoder on mined negatives (a tiny random BERT, seconds), and the embedding cache keeping a
fine-tuned folder's vectors apart from its base model's."""

from __future__ import annotations

import json
import numpy as np
import pytest
import yaml

from hardneg.config import MiningConfig, RunConfig, config_from_dict, fingerprint
from hardneg.crossencoder import training_info
from hardneg.embed import folder_fingerprint, get_embedder
from hardneg.embedder import dev_retrieval_data, train_embedder, training_rows
from hardneg.first_stage_config import EmbedderConfig
from hardneg.mine import mine, training_pairs


@pytest.fixture
def pairs(dataset):
    return mine(dataset, training_pairs(dataset, "train"), None, MiningConfig(num_negatives=2), "random",
                progress=False).pairs


DONE = "hardneg_training.json"
SETTINGS = dict(batch_size=2, epochs=1, max_seq_length=32, dev_evals=2, learning_rate=1e-3, threads=1)


def test_dev_retrieval_data_keeps_positives_and_caps_the_corpus(dataset):
    dev = dev_retrieval_data(dataset, ["q6", "q7", "q10"], "test")
    assert set(dev.queries) == {"q6", "q7"}  # q10 has no positive
    assert dev.relevant == {"q6": {"d08"}, "q7": {"d11"}}
    assert len(dev.corpus) == len(dataset.corpus)
    small = dev_retrieval_data(dataset, ["q6", "q7"], "test", max_documents=4, seed=1)
    assert len(small.corpus) == 4 and {"d08", "d11"} <= set(small.corpus)
    assert small == dev_retrieval_data(dataset, ["q6", "q7"], "test", max_documents=4, seed=1)


def test_training_rows_have_one_column_per_negative(pairs):
    columns, dropped = training_rows(pairs, 2)
    assert list(columns) == ["anchor", "positive", "negative_1", "negative_2"] and dropped == 0
    assert columns["anchor"][0] == pairs[0].query and columns["negative_2"][0] == pairs[0].negatives[1]
    assert training_rows(pairs, 3)[1] == len(pairs)
    one, _ = training_rows(pairs, 2, per_row=1)  # GISTEmbedLoss takes one negative per row
    assert list(one) == ["anchor", "positive", "negative_1"] and len(one["anchor"]) == 2 * len(pairs)
    assert one["negative_1"][:2] == pairs[0].negatives[:2] and one["anchor"][1] == pairs[0].query
    assert list(training_rows(pairs, 0)[0]) == ["anchor", "positive"]


def test_train_embedder_saves_a_loadable_folder_with_a_card_and_reuses_it(dataset, pairs, tiny_st, tmp_path):
    from sentence_transformers import SentenceTransformer

    config = EmbedderConfig(enabled=True, num_negatives=None, **SETTINGS)  # null: the pairs' most common count, 2
    dev = dev_retrieval_data(dataset, ["q6", "q7", "q8"], "test")
    card = {"dataset": "tiny", "split": "train", "strategy": "random"}
    stamp = fingerprint("pairs", config, 1)
    folder = train_embedder(pairs, tiny_st, tmp_path / "emb", config, seed=1, progress=False, fingerprint=stamp,
                            dev=dev, card=card)
    assert folder == tmp_path / "emb" / "model"
    info = training_info(folder)
    assert info["fingerprint"] == stamp and info["num_negatives"] == 2 and info["steps"] > 0
    assert info["dev"]["queries"] == 3 and len(info["dev"]["curve"]) >= 2 and info["dev"]["best"] is not None
    assert 0 <= info["dev"]["base"] <= 1
    readme = (folder / "README.md").read_text()
    assert "## Trained with hardneg" in readme and "strategy `random`" in readme
    assert not (tmp_path / "emb" / "checkpoints").exists()
    assert not [p for p in (tmp_path / "emb").iterdir() if p.name.endswith(".tmp")]

    trained, base_model = SentenceTransformer(str(folder), device="cpu"), SentenceTransformer(tiny_st, device="cpu")
    assert trained.max_seq_length == base_model.max_seq_length > SETTINGS["max_seq_length"]  # trained short, kept
    vectors, base = trained.encode(["solar panels"]), base_model.encode(["solar panels"])
    assert vectors.shape == base.shape and not np.allclose(vectors, base)

    mtime = (folder / DONE).stat().st_mtime_ns
    again = train_embedder(pairs, tiny_st, tmp_path / "emb", config, seed=1, progress=False, fingerprint=stamp,
                           dev=dev, card=card)
    assert again == folder and (folder / DONE).stat().st_mtime_ns == mtime  # reused, not retrained


def test_train_embedder_with_cached_loss_matryoshka_and_prompts(pairs, tiny_st, tmp_path):
    from sentence_transformers import SentenceTransformer

    config = EmbedderConfig(enabled=True, loss="cached_mnrl", mini_batch_size=1, matryoshka_dims=[16, 32],
                            query_prompt="query: ", document_prompt="passage: ", dev_eval=False, **SETTINGS)
    folder = train_embedder(pairs, tiny_st, tmp_path / "emb", config, seed=1, progress=False, fingerprint="x")
    model = SentenceTransformer(str(folder), device="cpu")
    assert model.prompts["query"] == "query: " and model.prompts["document"] == "passage: "
    assert training_info(folder)["dev"] is None
    assert "Prompts" in (folder / "README.md").read_text()


def test_gist_guided_by_the_base_model(pairs, tiny_st, tmp_path):
    config = EmbedderConfig(enabled=True, loss="gist", dev_eval=False, **SETTINGS)
    folder = train_embedder(pairs, tiny_st, tmp_path / "emb", config, seed=1, progress=False, fingerprint="g")
    assert training_info(folder)["loss"] == "gist"


def test_the_cache_keeps_base_and_fine_tuned_vectors_apart(pairs, tiny_st, tmp_path):
    config = EmbedderConfig(enabled=True, dev_eval=False, **SETTINGS)
    tuned = train_embedder(pairs, tiny_st, tmp_path / "emb", config, seed=1, progress=False, fingerprint="c")
    cache = tmp_path / "cache"
    texts = ["how do solar panels make electricity"]
    base_vectors = get_embedder(tiny_st).embed(texts, "query", cache, progress=False)
    tuned_vectors = get_embedder(str(tuned)).embed(texts, "query", cache, progress=False)
    assert not np.allclose(base_vectors, tuned_vectors, atol=1e-3)
    assert get_embedder(str(tuned)).cache_key != get_embedder(tiny_st).cache_key

    second = get_embedder(str(tuned))
    again = second.embed(texts, "query", cache, progress=False)
    assert second._model is None  # every vector came from the cache: the model was never loaded
    np.testing.assert_array_equal(again, tuned_vectors)

    # A model retrained in place at the same path gets a new key, so its stale vectors are never read.
    before = get_embedder(str(tuned)).cache_key
    info = json.loads((tuned / DONE).read_text())
    (tuned / DONE).write_text(json.dumps({**info, "note": "records do not change vectors"}))
    assert get_embedder(str(tuned)).cache_key == before
    weights = next(p for p in tuned.iterdir() if p.suffix in {".safetensors", ".bin"})
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert get_embedder(str(tuned)).cache_key != before


def test_bundled_model_cache_key_is_unchanged_in_float32_and_marks_bf16():
    from hardneg import device
    from hardneg.compute_config import ComputeConfig

    with device.use_compute(ComputeConfig(device="cpu", precision="fp32")):
        assert get_embedder("minilm").cache_key == "st:all-MiniLM-L6-v2:None:|"
    with device.use_compute(ComputeConfig(device="cpu", precision="bf16")):
        assert get_embedder("minilm").cache_key == "st:all-MiniLM-L6-v2:None:|:bf16"
    assert get_embedder("minilm").cache_key == "st:all-MiniLM-L6-v2:None:|"  # auto: float32 on the CPU


def test_auto_loss_is_plain_mnrl_where_a_step_fits_in_memory_else_cached(tiny_st, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from hardneg import embedder

    model = SentenceTransformer(tiny_st, device="cpu")
    needed = embedder.step_memory_estimate(model, 32, 3)
    assert needed > 0 and embedder.step_memory_estimate(model, 64, 3) == 2 * needed
    auto = EmbedderConfig()
    assert auto.loss == "auto"
    monkeypatch.setattr(embedder, "available_memory", lambda device: 3 * needed)
    assert embedder.choose_loss(auto, model, 32, 3)[0] == "mnrl"
    monkeypatch.setattr(embedder, "available_memory", lambda device: 3 * needed - 1)
    loss, reason = embedder.choose_loss(auto, model, 32, 3)
    assert loss == "cached_mnrl" and "exceed" in reason
    monkeypatch.setattr(embedder, "available_memory", lambda device: None)
    assert embedder.choose_loss(auto, model, 32, 3)[0] == "cached_mnrl"
    assert embedder.choose_loss(EmbedderConfig(loss="mnrl"), model, 32, 3) == ("mnrl", "as configured")


def test_cached_mnrl_has_plain_mnrl_s_loss_and_gradient(tiny_st):
    # why auto may pick either: the cached loss only changes how much memory the same computation holds
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.embedder import build_loss

    model = SentenceTransformer(tiny_st, device="cpu")
    model.eval()  # no dropout, so both passes see the same network
    columns = [["solar panels", "wind power", "tidal energy", "heat pumps"],
               ["panels turn light into current", "turbines turn in wind", "the sea rises", "pumps move heat"],
               ["coal burns", "rivers flow", "ice melts in spring", "trains run on rails"]]
    results = []
    for name in ("mnrl", "cached_mnrl"):
        model.zero_grad()
        loss = build_loss(model, EmbedderConfig(mini_batch_size=2), "tiny", name)
        value = loss([model.tokenize(texts) for texts in columns], torch.zeros(4))
        value.backward()
        results.append((value.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (plain, plain_grads), (cached, cached_grads) = results
    assert plain == pytest.approx(cached, rel=1e-5) and len(plain_grads) == len(cached_grads) > 0
    for a, b in zip(plain_grads, cached_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_folder_fingerprint_ignores_card_and_training_leftovers(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = folder_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("card")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "x").write_text("1")
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    assert folder_fingerprint(tmp_path) != first


OLD_DEMO = """
dataset: scifact
output: runs/demo
seed: 42
max_train_queries: 150
dev_fraction: 0.15
ensemble: [minilm, wordllama, bm25]
weights: [1.0, 0.5, 1.0]
fusion: zscore
embed_max_seq_length: 128
mining: {num_negatives: 4, depth: 100, positive_ratio: 0.95, range_min: 0, range_max: null, sampling: top}
strategies: [random, bm25, dense:minilm, ensemble]
train: {base_model: minilm, loss: triplet, margin: 1.0, epochs: 1, batch_size: 8, learning_rate: 2.0e-4,
        max_length: 128}
evaluate: {split: test, first_stages: [ensemble], depth: 100, rerank_depth: 20, max_queries: 80}
"""


def test_new_config_sections_at_their_defaults_leave_old_fingerprints_alone():
    config = RunConfig(dataset="x")
    assert config.embedder.enabled == "auto" and not config.fusion_weights.learn
    dump = config.model_dump()
    assert "embedder" not in dump and "fusion_weights" not in dump
    on = RunConfig(dataset="x", embedder={"enabled": True}, fusion_weights={"learn": True})
    assert on.model_dump()["embedder"]["enabled"] and fingerprint(on) != fingerprint(config)
    assert RunConfig.model_validate(on.model_dump()) == on
    assert fingerprint(on.train) == fingerprint(config.train)
    # The settings of configs/demo.yaml as committed before these sections existed: their fingerprint then was
    # 0385ee1fe199, and it changed only when defaults changed (not with these sections): train.min_steps 100, then
    # evaluate.include_base false and evaluate.gate_depths (the demo pins max_length and rerank_depth itself).
    assert fingerprint(config_from_dict(yaml.safe_load(OLD_DEMO))) == "8142f5eac253"
    with pytest.raises(ValueError):
        EmbedderConfig(matryoshka_dims=[0])


def test_an_interrupted_training_resumes_and_another_fingerprint_retrains(dataset, pairs, tiny_st, tmp_path,
                                                                           caplog, monkeypatch):
    import logging

    from sentence_transformers import SentenceTransformerTrainer
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 1:
                raise KeyboardInterrupt

    original = SentenceTransformerTrainer.__init__

    def with_interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(Interrupt())

    config = EmbedderConfig(enabled=True, **{**SETTINGS, "dev_evals": 3, "no_duplicates": False})
    dev = dev_retrieval_data(dataset, ["q6", "q7"], "test")
    monkeypatch.setattr(SentenceTransformerTrainer, "__init__", with_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_embedder(pairs, tiny_st, tmp_path, config, progress=False, fingerprint="f1", dev=dev)
    assert (tmp_path / "checkpoints" / "checkpoint-1").is_dir() and not (tmp_path / "model").exists()
    monkeypatch.setattr(SentenceTransformerTrainer, "__init__", original)
    with caplog.at_level(logging.INFO, logger="hardneg.embedder"):
        final = train_embedder(pairs, tiny_st, tmp_path, config, progress=False, fingerprint="f1", dev=dev)
    assert "Resuming embedder training from" in caplog.text and "checkpoint-1" in caplog.text
    info = training_info(final)
    assert info["steps"] == 3 and len(info["dev"]["curve"]) == 3

    retrained = train_embedder(pairs, tiny_st, tmp_path, config.model_copy(update={"dev_eval": False}),
                               progress=False, fingerprint="f2")
    assert training_info(retrained)["fingerprint"] == "f2" and training_info(retrained)["dev"] is None

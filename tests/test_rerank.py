from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def model_dir(tiny_bert, tmp_path_factory):
    """A saved one-label cross-encoder folder, as `hardneg run` leaves one."""
    from sentence_transformers import CrossEncoder

    folder = tmp_path_factory.mktemp("ce")
    CrossEncoder(tiny_bert, num_labels=1, max_length=32).save_pretrained(str(folder))
    return str(folder)


def test_rerank_sorts_by_score_then_index(model_dir):
    from sentence_transformers import CrossEncoder

    from hardneg.rerank import rerank

    model = CrossEncoder(model_dir)  # loads in plain sentence-transformers
    texts = ["solar panels make electricity", "coffee beans", "solar panels make electricity", "tea"]
    ranked = rerank(model, "solar power", texts)
    assert sorted(i for i, _ in ranked) == [0, 1, 2, 3]
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    # identical texts score the same: the lower index comes first
    assert [i for i, _ in ranked if i in (0, 2)] == [0, 2]
    direct = model.predict([("solar power", t) for t in texts])
    assert dict(ranked)[3] == pytest.approx(float(direct[3]), abs=1e-6)
    assert rerank(model_dir, "solar power", texts, top_k=2) == ranked[:2]
    assert rerank(model, "q", []) == []


def test_cli_rerank_plain_and_jsonl(model_dir, tmp_path):
    from typer.testing import CliRunner

    from hardneg.cli import app

    plain = tmp_path / "docs.txt"
    plain.write_text("solar panels\n\ncoffee beans\nwind turbines\n")
    result = CliRunner().invoke(app, ["rerank", "--model", model_dir, "--query", "solar", "--docs", str(plain),
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["rank"] for r in rows] == [1, 2, 3] and {r["text"] for r in rows} == {
        "solar panels", "coffee beans", "wind turbines"}
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"title": "Solar", "text": "panels"}) + "\n" + json.dumps({"text": "tea"}) + "\n")
    result = CliRunner().invoke(app, ["rerank", "-m", model_dir, "-q", "solar", "--docs", str(jsonl), "-k", "1"])
    assert result.exit_code == 0 and len([ln for ln in result.stdout.splitlines() if "  [" in ln]) == 1
    jsonl.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    bad = CliRunner().invoke(app, ["rerank", "-m", model_dir, "-q", "solar", "--docs", str(jsonl)])
    assert bad.exit_code == 2 and "docs.jsonl:2" in bad.output


def test_score_store_and_read_scores(tmp_path):
    from hardneg.crossencoder import ScoreStore, read_scores

    path = tmp_path / "scores.json"
    store = ScoreStore(path, "model-a")
    store.add([("q", "d1"), ("q", "d2")], [0.5, 0.25])
    assert read_scores(path) == {"q": {"d1": 0.5, "d2": 0.25}}
    assert ScoreStore(path, "model-a").missing([("q", "d1"), ("q", "d3")]) == [("q", "d3")]
    assert ScoreStore(path, "model-b").scores == {}  # another model's scores are never mixed in
    path.write_text(json.dumps({"q": {"d1": 0.5}}))  # older runs saved the mapping bare
    assert read_scores(path) == {"q": {"d1": 0.5}}



def test_score_pairs_scores_only_what_is_missing(dataset, tmp_path):
    from hardneg.crossencoder import ScoreStore, score_pairs

    class Model:
        seen: list[tuple[str, str]] = []

        def predict(self, pairs, **kwargs):
            self.seen += pairs
            return [float(len(doc)) for _, doc in pairs]

    model, store = Model(), ScoreStore(tmp_path / "s.json", "m")
    score_pairs(model, dataset, [("q1", "d01"), ("q1", "d02"), ("q1", "d01")], store, progress=False)
    assert len(model.seen) == 2
    corpus = dataset.corpus
    assert store.scores["q1"]["d02"] == len(corpus.full_text(corpus.index["d02"]))
    score_pairs(model, dataset, [("q1", "d01"), ("q2", "d03")], store, progress=False)
    assert len(model.seen) == 3 and ScoreStore(tmp_path / "s.json", "m").scores == store.scores


def test_the_openvino_engine_scores_as_the_torch_model_does(model_dir, monkeypatch):
    """evaluate.engine openvino: the same tokenisation and activation as CrossEncoder.predict, at the CPU's own
    precision (bf16 rounds the logits a little), so scores match the torch model's."""
    pytest.importorskip("openvino")
    import numpy as np

    from hardneg import crossencoder
    from hardneg.crossencoder import (
        OpenVINOCrossEncoder,
        engine_for,
        engine_key,
        load_cross_encoder,
        reranking_engine,
    )

    model = load_cross_encoder(model_dir, 32, device="cpu")
    pairs = [(f"query {i} about solar power", "panels and sunlight " * (i % 7 + 1) + f"text {i}") for i in range(40)]
    expected = model.predict(pairs, batch_size=8, convert_to_numpy=True)
    engine = reranking_engine(model, "openvino")
    assert isinstance(engine, OpenVINOCrossEncoder) and reranking_engine(model, "torch") is model
    found = engine.predict(pairs, batch_size=16)  # other batches pad differently: scores must not depend on it
    assert found.shape == expected.shape and np.allclose(found, expected, atol=2e-3)
    assert engine.predict([]).shape == (0,)
    assert engine_key("torch") == "" and engine_key("openvino").startswith("openvino:")  # torch stores stay valid
    assert engine_for("openvino", "cpu") == "openvino" and engine_for("openvino", "cuda:0") == "torch"
    # auto: OpenVINO where it can run (a CPU, the extra installed), torch elsewhere
    assert engine_for("auto", "cpu") == "openvino" and engine_for("auto", "cuda:0") == "torch"
    monkeypatch.setattr(crossencoder, "openvino_installed", lambda: False)
    assert engine_for("auto", "cpu") == "torch"

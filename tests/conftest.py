"""Tiny fixtures: a 12-document BEIR folder and a randomly initialised 2-layer BERT cross-encoder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DOCS = [
    ("d01", "Solar panels", "Solar panels convert sunlight into electricity using photovoltaic cells."),
    ("d02", "Wind turbines", "Wind turbines turn the kinetic energy of wind into electricity."),
    ("d03", "Battery storage", "Lithium batteries store electricity from solar panels for use at night."),
    ("d04", "Coffee brewing", "Espresso is brewed by forcing hot water through finely ground coffee beans."),
    ("d05", "Tea varieties", "Green tea and black tea come from the same plant, processed differently."),
    ("d06", "Coffee roasting", "Roasting coffee beans develops flavour; dark roasts taste bitter."),
    ("d07", "Password reset", "To reset your password, open settings and choose forgot password."),
    ("d08", "Two-factor login", "Enable two-factor authentication in settings to secure your login."),
    ("d09", "Account deletion", "Deleting your account removes all data permanently after thirty days."),
    ("d10", "Rainforest birds", "Toucans and parrots live in the canopy of tropical rainforests."),
    ("d11", "Desert animals", "Camels store fat in their humps and survive long without water."),
    ("d12", "Ocean currents", "The Gulf Stream carries warm water across the Atlantic ocean."),
]
QUERIES = [
    ("q1", "how do solar panels make electricity"),
    ("q2", "how is espresso coffee brewed"),
    ("q3", "I forgot my password, how do I reset it"),
    ("q4", "which birds live in rainforests"),
    ("q5", "store solar electricity at night in batteries"),
    ("q6", "secure login with two-factor authentication"),
    ("q7", "how do camels survive without water"),
    ("q8", "what does coffee roasting do to flavour"),
    ("q9", "warm ocean current across the atlantic"),
    ("q10", "unlabelled query that no qrels mention"),
]
TRAIN = [("q1", "d01"), ("q2", "d04"), ("q3", "d07"), ("q4", "d10"), ("q5", "d03"), ("q5", "d01")]
TEST = [("q6", "d08"), ("q7", "d11"), ("q8", "d06"), ("q9", "d12")]


def write_beir(root: Path, docs=DOCS, queries=QUERIES, train=TRAIN, test=TEST) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "corpus.jsonl").open("w") as f:
        for doc_id, title, text in docs:
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as f:
        for qid, text in queries:
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, rows in (("train", train), ("test", test)):
        with (root / "qrels" / f"{split}.tsv").open("w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, doc_id in rows:
                f.write(f"{qid}\t{doc_id}\t1\n")
    return root


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


@pytest.fixture
def dataset(beir_dir: Path):
    from hardneg.data import load_beir

    return load_beir(beir_dir)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT with a real WordPiece vocabulary (MiniLM's), saved as a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hardneg.embed import resolve_st_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_st_model("minilm"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def load_benchmark():
    """Import a script of benchmarks/ by name (it imports its neighbours, e.g. ablation, by their bare names)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def tiny_st(tiny_bert, tmp_path_factory) -> str:
    """The tiny random BERT as a sentence-transformers bi-encoder (mean pooling), saved as a folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    word = Transformer(tiny_bert, max_seq_length=64)
    model = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean")], device="cpu")
    folder = tmp_path_factory.mktemp("tiny-st")
    model.save(str(folder))
    return str(folder)

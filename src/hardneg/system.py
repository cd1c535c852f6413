"""A trained system, saved whole: the first stage (members, weights, fusion, depth) and the chosen re-ranker with
its mode and interpolation weight, written by a run as ``system.json`` and loaded as one object that searches
the collection and re-ranks documents the way the run measured it.

The first stage is rebuilt from the dataset the run read and the embedding cache the run filled, so loading does
not re-embed the corpus unless the cache was deleted.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import RunConfig
from .crossencoder import load_cross_encoder
from .device import autocast, current
from .data import load_beir
from .evaluate import SystemChoice, ranked, rerank_run
from .io import write_json
from .retrieve import Ensemble, Retrievers, make_retriever, search_options
from .rundir import RunFolder
from .version import __version__

SYSTEM_FILE = "system.json"


@dataclass(frozen=True)
class SystemSpec:
    """Everything ``system.json`` records: what to rebuild, what was chosen, and how it measured."""

    dataset: str                     # the dataset folder the run read
    first_stage: str                 # "ensemble" or one member's name
    members: list[str]
    weights: list[float] | None
    fusion: str
    depth: int
    settings: dict                   # the run's first-stage settings (embedding, search, seed)
    reranker: str | None             # the chosen re-ranker's name, None for the first stage alone
    model: str | None                # its folder or hub id (relative to system.json's folder when inside it)
    mode: str                        # "first stage", "rerank" or "interpolated"
    weight: float | None             # the re-ranker's interpolation weight (1.0: alone)
    rerank_depth: int
    max_length: int | None
    choice: dict                     # SystemChoice.as_dict(): the dev evidence
    test: dict | None = None         # the chosen system against the first stage on test
    version: str = __version__
    chunked: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict) -> SystemSpec:
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


def save_system(folder: RunFolder, config: RunConfig, dataset_path: Path, choice: SystemChoice,
                models: dict[str, str], test: dict | None, first_stage: Ensemble) -> Path:
    """Write ``system.json`` for a run's chosen system (``models``: re-ranker name -> folder or id;
    ``first_stage``: the chosen first stage, whose members, weights and fusion are recorded)."""
    ev = config.evaluate
    members = [_portable(m.name, folder) for m in first_stage.members]
    model = models.get(choice.reranker) if choice.reranker else None
    model = _portable(model, folder) if model is not None else None
    spec = SystemSpec(
        dataset=str(Path(dataset_path).resolve()), first_stage=choice.first_stage, members=list(members),
        weights=[float(w) for w in first_stage.weights], fusion=first_stage.fusion,
        depth=ev.depth,
        settings={"embed_max_seq_length": config.embed_max_seq_length, "embed_dtype": config.embed_dtype,
                  "search": config.search.model_dump(), "kept_variance": config.mining.kept_variance,
                  "seed": config.seed, "cache_dir": str(Path(config.cache_dir).resolve()) if config.cache_dir
                  else str(folder.default_cache().resolve())},
        reranker=choice.reranker, model=model, mode=choice.mode, weight=choice.weight,
        rerank_depth=choice.depth or ev.rerank_depth,
        max_length=config.train.max_length if isinstance(config.train.max_length, int) else None,
        choice=choice.as_dict(), test=test, chunked=config.chunking.strategy != "none")
    path = folder.path / SYSTEM_FILE
    write_json(path, asdict(spec))
    return path


def _portable(name: str, folder: RunFolder) -> str:
    """A model folder inside the run as a path relative to it (the run folder can move); others as given, or
    absolute when they are folders."""
    if not Path(name).is_dir():
        return name
    try:
        return str(Path(name).resolve().relative_to(folder.path.resolve()))
    except ValueError:
        return str(Path(name).resolve())


@dataclass(frozen=True)
class Hit:
    """One search result: the document, its final rank and the scores behind it."""

    doc_id: str
    rank: int
    first_stage_score: float
    reranker_score: float | None
    title: str
    text: str


class System:
    """A saved system: ``search(query, k)`` over its collection, ``rerank(query, docs)`` of any documents."""

    def __init__(self, spec: SystemSpec, root: Path, progress: bool = False):
        if spec.chunked:
            raise ValueError("This system was trained on chunks; searching chunked collections from system.json is "
                             "not supported yet (the run folder's results still hold its evaluation).")
        self.spec, self.root, self.progress = spec, Path(root), progress
        self._first_stage: Ensemble | None = None
        self._dataset = None
        self._model = None
        self._doc_members: list | None = None
        # The first stage is shared between calls and indexes each rerank call's documents, and a tokenizer is not
        # thread-safe: one caller at a time uses each, under its own lock, so threads can share a System.
        self._first_stage_lock = threading.Lock()
        self.scoring_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, progress: bool = False) -> System:
        """From a run folder or its ``system.json``."""
        path = Path(path)
        file = path / SYSTEM_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no saved system (a `hardneg run` writes it when it finishes).")
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON ({exc.msg}).") from None
        try:
            spec = SystemSpec.from_dict(raw)
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"{file}: not a saved system ({exc}); rerun `hardneg run` to write it again.") from None
        return cls(spec, file.parent, progress)

    def _local(self, name: str) -> str:
        """A member or model name as saved: a path relative to the run folder, or a name / id / absolute path."""
        local = self.root / name
        return str(local) if not Path(name).is_absolute() and local.exists() else name

    @property
    def members(self) -> list[str]:
        return [self._local(m) for m in self.spec.members]

    @property
    def config(self) -> RunConfig:
        s = self.spec.settings
        return RunConfig(dataset=self.spec.dataset, seed=s["seed"], ensemble=self.members,
                         weights=self.spec.weights, fusion=self.spec.fusion, progress=self.progress,
                         embed_max_seq_length=s["embed_max_seq_length"], embed_dtype=s["embed_dtype"],
                         search=s["search"], mining={"kept_variance": s["kept_variance"]}, strategies=[])

    @property
    def dataset(self):
        if self._dataset is None:
            self._dataset = load_beir(self.spec.dataset)
        return self._dataset

    def first_stage(self) -> Ensemble:
        """The first stage over the collection, built once (its members index lazily, from the cache)."""
        if self._first_stage is None:
            retrievers = Retrievers(self.dataset, self.config, Path(self.spec.settings["cache_dir"]))
            self._first_stage = retrievers.ensemble(self.members)
        return self._first_stage

    @property
    def model(self):
        """The chosen re-ranker (None for a first stage alone)."""
        with self.scoring_lock:  # loaded once, whichever thread asks first
            return self._load_model()

    def _load_model(self):
        if self._model is None and self.spec.model is not None:
            # seeded as in evaluation: an untrained base model's new scoring head is drawn the same way
            self._model = load_cross_encoder(self._local(self.spec.model), self.spec.max_length,
                                             seed=self.spec.settings["seed"])
        return self._model

    def _ce_scores(self, query: str, texts: list[str]) -> np.ndarray:
        model = self.model
        # the precision evaluation scored in (autocast on a GPU, float32 on the CPU); one caller at a time: a
        # tokenizer is not thread-safe (the server replaces this lock with its batcher)
        with self.scoring_lock, autocast(str(model.device), current().precision, scoring=True):
            scores = model.predict([(query, t) for t in texts], show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def _combine(self, first: dict[str, float], query: str, texts: dict[str, str], depth: int,
                 bare: bool = False) -> tuple[dict[str, float], dict[str, float]]:
        """(final ranking scores, re-ranker scores) over ``first``'s documents, as the run evaluated them."""
        if self.spec.reranker is None or (self.spec.mode == "first stage" and not bare):
            return first, {}
        head = ranked(first)[:depth]
        ce = dict(zip(head, self._ce_scores(query, [texts[d] for d in head]).tolist()))
        weight = 1.0 if bare else self.spec.weight
        return rerank_run({"q": first}, {"q": ce}, depth, weight)["q"], ce

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` documents of the collection for ``query``, best first."""
        with self._first_stage_lock:
            corpus = self.dataset.corpus
            pool = self.first_stage().candidates([query], self.spec.depth)[0]
        first = {corpus.ids[i]: float(s) for i, s in zip(pool.doc_idx[:self.spec.depth], pool.fused[:self.spec.depth])}
        texts = {d: corpus.full_text(corpus.index[d]) for d in ranked(first)[:self.spec.rerank_depth]}
        final, ce = self._combine(first, query, texts, self.spec.rerank_depth)
        out = []
        for rank, doc in enumerate(ranked(final)[:k], 1):
            i = corpus.index[doc]
            out.append(Hit(doc, rank, first[doc], ce.get(doc), corpus.titles[i], corpus.texts[i]))
        return out

    def rerank(self, query: str, docs: list[str], top_k: int | None = None,
               bare: bool = False) -> list[tuple[int, float]]:
        """(index into ``docs``, score) best first, ties by index: the whole system (its first stage scores the
        documents, then its re-ranker as chosen), or with ``bare`` the re-ranker alone."""
        if not docs:
            return []
        keys = [f"{i:08d}" for i in range(len(docs))]
        texts = dict(zip(keys, docs))
        if bare or self.spec.mode == "rerank":
            if self.model is None:
                raise ValueError(f"This system has no re-ranker: {self.spec.choice.get('reason', 'none was chosen')}")
            scores = self._ce_scores(query, docs)
            order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))
            return [(i, float(scores[i])) for i in order[:top_k]]
        with self._first_stage_lock:
            if self._doc_members is None:  # built once: each call only indexes its documents
                config = self.config
                self._doc_members = [make_retriever(name, cache_dir=self.spec.settings["cache_dir"], progress=False,
                                                    max_seq_length=config.embed_max_seq_length,
                                                    search=search_options(config), dtype=config.embed_dtype)
                                     for name in self.members]
            ensemble = Ensemble(self._doc_members, self.spec.fusion, self.spec.weights,
                                self.spec.settings["kept_variance"], self.spec.settings["seed"])
            ensemble.index(docs, keys)
            pool = ensemble.candidates([query], len(docs))[0]
        first = {keys[i]: float(s) for i, s in zip(pool.doc_idx, pool.fused)}
        final, _ = self._combine(first, query, texts, len(docs))
        return [(int(d), float(final[d])) for d in ranked(final)[:top_k]]

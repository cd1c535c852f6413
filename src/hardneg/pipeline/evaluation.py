"""The evaluation stage: first-stage runs on the test queries, every re-ranker re-scoring their top candidates
(alone and interpolated with the first stage), metrics overall and by document length, and the significance
analysis. With chunks, first stages retrieve chunks (a document ranks by its best chunk), re-rankers score every
chunk of the top documents, and a document's score is its chunks' aggregate; metrics are always over documents.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

from ..chunk import chunk_pairs, document_scores, documents_run, load_tokenizer, top_documents
from ..config import fingerprint, slug
from ..crossencoder import (
    ScoreStore,
    engine_for,
    engine_key,
    load_cross_encoder,
    reranking_engine,
    score_pairs,
    training_info,
)
from ..data import Qrels
from ..device import current_device
from ..evaluate import (
    ALPHAS,
    Candidate,
    Row,
    RunDict,
    SystemChoice,
    analyse,
    candidate_run,
    choose_in_steps,
    choose_system,
    evaluate_run,
    first_stage_run,
    gate_folds,
    ranked,
    rerank_run,
    test_comparison,
    tune_alpha,
    write_trec,
)
from ..io import write_json
from ..lengths import LengthSplit, document_tokens, metrics_by_length, split_by_length
from ..retrieve import Ensemble
from ..splits import sample_queries
from .context import RunContext
from .crossfit import CrossFit, HeldOut, dev_split_queries
from .dev_split import SMALL_DEV
from .first_stage import Refit

logger = logging.getLogger(__name__)
SPLITS = ("test", "dev")
GATE_RUN = "gate"  # the file name's split part for the dev queries' first-stage runs (the gate's queries)


def offered(tuned: dict[str, Ensemble], weighed: set[str]) -> list[str]:
    """The tuned first stages the system is chosen from (``weighed``: those whose weights are learned on the dev
    queries). A fine-tuned member alone is shown, not offered, when a weighed ensemble holds it: the weighing's
    grid has the member alone (the others at weight 0), so it adds no option, only a near-equal rival whose picks
    scatter the gate's folds (docs/RESULTS.md, The embedder by default)."""
    covered = {m for name in weighed for m in tuned[name].member_names}
    return [name for name, ensemble in tuned.items()
            if name in weighed or len(ensemble.member_names) > 1 or not set(ensemble.member_names) <= covered]


def length_split_of(ctx: RunContext) -> LengthSplit:
    """The evaluated queries split by whether a positive is longer than the re-ranker's window."""
    config, documents = ctx.config, ctx.documents
    qrels = documents.qrels[config.evaluate.split]
    doc_ids = sorted({d for docs in qrels.values() for d in docs})
    tokens = document_tokens(documents.corpus, load_tokenizer(config.train.base_model), doc_ids)
    return split_by_length(qrels, tokens, config.chunking.long_threshold or config.train.max_length)


class Evaluation:
    """Evaluates first stages and re-rankers on one run's test queries (and tunes interpolation on its dev ones)."""

    def __init__(self, ctx: RunContext, length_split: LengthSplit | None = None,
                 tuned_first_stages: dict[str, Ensemble] | None = None, cross_fit: CrossFit | None = None,
                 refit: dict[str, Refit] | None = None):
        """``tuned_first_stages``: first stages the run tuned (fine-tuned members, learned fusion), evaluated after
        the configured ones and candidates for the system the run hands over. ``cross_fit``: the dev queries are
        then every training query, each scored by a re-ranker trained without it (:mod:`.crossfit`). ``refit``:
        tuned first stages weighed on the dev queries, and how to weigh them on fewer: their dev runs are nested,
        each of the gate's folds ranked at weights learned without it."""
        self.ctx, self.config, self.length_split = ctx, ctx.config, length_split
        self.tuned = dict(tuned_first_stages or {})
        self.cross_fit = cross_fit if cross_fit is not None and cross_fit.held_out else None
        # cross-fitted, the tuned first stages are no candidates, so nothing needs nesting
        self.refit = {} if self.cross_fit else {k: v for k, v in (refit or {}).items() if k in self.tuned}
        self.nested: dict[str, list[dict]] = {}
        ev = self.ev = ctx.config.evaluate
        documents = ctx.documents
        test_ids = sample_queries(sorted(documents.positives(ev.split)), ev.max_queries, ctx.config.seed)
        self.test_qrels: Qrels = {q: documents.qrels[ev.split][q] for q in test_ids}
        self.dev_ids = list(self.cross_fit.queries) if self.cross_fit else dev_split_queries(ctx)
        self.dev_qrels: Qrels = {q: documents.qrels[ctx.config.train_split][q] for q in self.dev_ids}
        self.fixed_weight = ev.interpolate and ev.interpolation_weight is not None
        self.tune = ev.interpolate and not self.fixed_weight and bool(self.dev_ids)
        # The system a run hands over is chosen on dev queries, so they are scored whenever there are any.
        self.dev = bool(self.dev_ids)
        self.engine = engine_for(ev.engine, current_device())
        self.engines: dict[str, str] = {}  # model path -> the engine it scores with (auto falls back per model)
        self.choice: SystemChoice | None = None
        self.ensembles: dict[str, Ensemble] = {}
        self.system_test: dict | None = None

    def measure(self, run: RunDict) -> dict:
        """A row's metrics, overall and by document length."""
        by_length = (metrics_by_length(self.test_qrels, run, self.ev.metrics, self.length_split)
                     if self.length_split else None)
        return {"metrics": evaluate_run(self.test_qrels, run, self.ev.metrics), "by_length": by_length}

    def first_stage(self, ensemble: Ensemble, query_ids: list[str]) -> RunDict:
        chunks, dataset, depth = self.ctx.chunks, self.ctx.dataset, self.ev.depth
        if chunks is None:
            return first_stage_run(dataset, query_ids, ensemble, depth)
        chunk_run = first_stage_run(dataset, query_ids, ensemble, math.ceil(depth * chunks.expansion))
        return top_documents(documents_run(chunk_run, chunks.chunk_doc), depth)

    def first_stages(self) -> dict[str, dict[str, RunDict]]:
        """Each first stage's test run (written as a TREC file) and, when the weight is tuned, its dev run."""
        out: dict[str, dict[str, RunDict]] = {}
        named = {name: self.ctx.retrievers.first_stage(name) for name in self.ev.first_stages}
        self.ensembles = {**named, **self.tuned}
        for name, ensemble in self.ensembles.items():
            dev = ({} if not self.dev else self.nested_dev_run(name) if name in self.refit
                   else self.first_stage(ensemble, self.dev_ids))
            out[name] = {"test": self.first_stage(ensemble, list(self.test_qrels)), "dev": dev}
            write_trec(self.ctx.folder.trec(name, self.ev.split), out[name]["test"], slug(name))
            if dev:  # the dev run the system was chosen on, kept so the choice can be re-examined (not named
                # "dev": a collection's own dev split may be the evaluated one)
                write_trec(self.ctx.folder.trec(name, GATE_RUN), dev, slug(name))
        return out

    def nested_dev_run(self, name: str) -> RunDict:
        """The dev run of a first stage weighed on dev queries, each gate fold ranked at the weights the same
        weighing learns without that fold: the weights never saw the queries that then measure them."""
        run: RunDict = {}
        self.nested[name] = []
        for held in gate_folds(self.dev_ids, seed=self.config.seed):
            left_out = set(held)
            ensemble, learned = self.refit[name]([q for q in self.ctx.dev_ids if q not in left_out])
            run.update(self.first_stage(ensemble, held))
            self.nested[name].append({"held_out": len(held), "queries": learned.queries, "learned": learned.learned,
                                      "weights": list(learned.weights), "fusion": learned.fusion})
        logger.info("Dev run of %s nested over %d folds: weights %s", name, len(self.nested[name]),
                    "; ".join(f"{f['weights']} {f['fusion']}" for f in self.nested[name]))
        return run

    def pairs_to_score(self, runs: dict[str, RunDict]) -> list[tuple[str, str]]:
        """(query, document or chunk) pairs a re-ranker scores: the top ``rerank_depth`` of each run."""
        chunks, depth = self.ctx.chunks, self.ev.rerank_depth
        if chunks is None:
            return [(q, d) for run in runs.values() for q, docs in run.items() for d in ranked(docs)[:depth]]
        return [p for run in runs.values() for p in chunk_pairs(run, depth, chunks.doc_chunks)]

    def doc_scores(self, store: ScoreStore, run: RunDict) -> dict[str, dict[str, float]]:
        """A re-ranker's document scores over ``run`` (chunk scores aggregated per document)."""
        chunks = self.ctx.chunks
        if chunks is None:
            return store.scores
        return document_scores(store.scores, run, self.ev.rerank_depth, chunks.doc_chunks,
                               self.config.chunking.aggregation)

    def dev_scorers(self, system: str, model_path: str) -> list[HeldOut]:
        """The models that score ``system``'s dev queries, each the queries it never trained on. While
        cross-fitting, a re-ranker the run neither trained nor left untrained (an extra one) may have been trained
        on these training queries elsewhere, and a trained strategy that was not cross-fitted trained on them, so
        either scores the held-out dev split only."""
        if self.cross_fit is None:
            return [HeldOut(tuple(self.dev_ids), model_path)]
        if system in self.cross_fit.held_out:
            return self.cross_fit.held_out[system]
        held = set(self.ctx.dev_ids)
        queries = self.dev_ids if system == "base" else [q for q in self.dev_ids if q in held]
        return [HeldOut(tuple(queries), model_path)]

    def dev_covered(self, system: str) -> set[str]:
        """The dev queries ``system`` has scores for (all of them, unless it trained on some)."""
        return {q for held in self.dev_scorers(system, "") for q in held.queries}

    def score(self, system: str, model_path: str, stages: dict[str, dict[str, RunDict]]) -> dict[str, ScoreStore]:
        """Score the pairs the re-ranker needs on test and dev (each dev query by a model that never trained on
        it); stored scores are reused."""
        config, folder = self.config, self.ctx.folder
        loaded: dict[str, object] = {}

        def store_for(split: str, path: str) -> ScoreStore:
            return ScoreStore(folder.scores(system, split), fingerprint(
                system, training_info(path).get("fingerprint") or path, config.train.max_length, config.seed,
                *filter(None, [engine_key(self.engines.get(path, self.engine))])))

        def into(split: str, path: str, runs: dict[str, RunDict]) -> ScoreStore:
            store = store_for(split, path)
            pairs = self.pairs_to_score(runs)
            if store.missing(pairs):
                if path not in loaded:
                    engine = self.engines.get(path, self.engine)
                    loaded[path] = self.scorer(path)
                    if self.engines.get(path, self.engine) != engine:  # fell back: the store follows the engine
                        store = store_for(split, path)
                needed = store.missing(pairs)
                if needed:
                    score_pairs(loaded[path], self.ctx.dataset, needed, store, self.ev.batch_size, config.progress)
            return store

        stores = {"test": into("test", model_path, {name: runs["test"] for name, runs in stages.items()})}
        if self.dev:
            scorers = self.dev_scorers(system, model_path)
            stores["dev"] = merged = ScoreStore(None)
            for number, held in enumerate(scorers, start=1):
                store = into("dev" if len(scorers) == 1 else f"dev.fold{number}", held.model,
                             {name: {q: runs["dev"][q] for q in held.queries if q in runs["dev"]}
                              for name, runs in stages.items()})
                merged.scores.update(store.scores)
        return stores

    def scorer(self, path: str):
        """The re-ranker at ``path`` as this evaluation scores with it. Under ``evaluate.engine: auto`` a model
        OpenVINO cannot convert scores with torch instead (recorded in ``self.engines``, so its scores are stored
        as torch's); an engine named outright fails instead."""
        model = load_cross_encoder(path, self.config.train.max_length, seed=self.config.seed)
        engine = self.engines.get(path, self.engine)
        try:
            return reranking_engine(model, engine)
        except Exception as exc:
            if self.ev.engine != "auto" or engine == "torch":
                raise
            logger.warning("%s: OpenVINO could not convert it (%s: %s); scoring it with torch", path,
                           type(exc).__name__, exc)
            self.engines[path] = "torch"
            return model

    def rerank_rows(self, system: str, name: str, runs: dict[str, RunDict], scores: dict[str, dict],
                    systems: dict[str, RunDict]) -> list[Row]:
        """The re-ranked row and, when interpolating, the interpolated row of one re-ranker over one first stage
        (``scores``: split -> the re-ranker's document scores over that split's run)."""
        ev, folder = self.ev, self.ctx.folder
        test_scores = scores["test"]
        reranked = rerank_run(runs["test"], test_scores, ev.rerank_depth)
        write_trec(folder.trec(name, ev.split, system), reranked, slug(system))
        rows = [Row(name, system, "rerank", **self.measure(reranked))]
        systems[system] = reranked
        covered = self.dev_covered(system) if self.tune else set()
        if self.cross_fit and name in self.tuned:  # tuned on the training queries: only held-out dev ones count
            covered &= set(self.ctx.dev_ids)
        if covered and len(covered) < SMALL_DEV:
            logger.warning("The interpolation weight of %s on %s is tuned on only %d dev queries, a noisy choice; "
                           "evaluate.interpolation_weight fixes it instead", system, name, len(covered))
        if covered:
            qrels = {q: r for q, r in self.dev_qrels.items() if q in covered}
            alpha, curve = tune_alpha(qrels, {q: runs["dev"][q] for q in qrels}, scores["dev"], ev.rerank_depth)
            logger.info("Interpolation weight for %s on %s: %.1f (dev nDCG@10 by weight: %s)", system, name,
                        alpha, ", ".join(f"{a:.1f}: {v:.3f}" for a, v in curve.items()))
        elif self.fixed_weight:
            alpha, curve = ev.interpolation_weight, {}
        else:
            if self.tune:
                logger.warning("No dev query %s was not trained on: its interpolation is not evaluated", system)
            return rows
        mixed = rerank_run(runs["test"], test_scores, ev.rerank_depth, alpha)
        write_trec(folder.trec(name, ev.split, system, interpolated=True), mixed, f"{slug(system)}+interpolated")
        rows.append(Row(name, system, "interpolated", alpha=alpha, alpha_curve=list(curve.items()) or None,
                        **self.measure(mixed)))
        systems[f"{system} + first stage"] = mixed
        return rows

    def run(self, rerankers: dict[str, str]) -> list[Row]:
        """Rows of the results table for the first stages and ``rerankers`` (system name -> model); writes the
        TREC runs, the scores and analysis.json."""
        ev = self.ev
        stages = self.first_stages()
        rows = [Row(name, "none", "first stage", **self.measure(runs["test"])) for name, runs in stages.items()]
        reranked = {k: v for k, v in stages.items() if ev.rerank is None or k in ev.rerank or k in self.tuned}
        systems: dict[str, dict[str, RunDict]] = {name: {"first stage": runs["test"]} for name, runs in stages.items()}
        # split -> first stage -> re-ranker -> document scores, for choosing the system to hand over
        scores: dict[str, dict[str, dict[str, dict[str, dict[str, float]]]]] = {"test": {}, "dev": {}}
        for system, model_path in rerankers.items():
            stores = self.score(system, model_path, reranked)
            for name, runs in reranked.items():
                found = {split: self.doc_scores(stores[split], runs[split]) for split in SPLITS if self.dev
                         or split == "test"}
                rows += self.rerank_rows(system, name, runs, found, systems[name])
                for split, by_doc in found.items():
                    scores[split].setdefault(name, {})[system] = by_doc
            logger.info("Evaluated re-ranker %s", system)
        self.write_analysis(systems)
        if self.ev.first_stages:
            self.choose(self.ev.first_stages[0], stages, scores)
        return rows

    def choose(self, baseline: str, stages: dict[str, dict[str, RunDict]], scores: dict[str, dict]) -> None:
        """Choose the system to hand over on dev queries, then measure it against the untrained ``baseline``
        first stage on test."""
        ev, config = self.ev, self.config
        # Cross-fitted dev queries are training queries, which the tuned first stages were tuned on.
        candidates = [baseline] if self.cross_fit else [baseline, *offered(self.tuned, set(self.refit))]
        if self.cross_fit and self.tuned:
            logger.warning("Cross-fitting: the tuned first stages %s were tuned on the training queries the system "
                           "is chosen on, so they are not candidates", sorted(self.tuned))
        everything = set(self.dev_ids)
        dev_scores = {fs: {r: s for r, s in scores["dev"].get(fs, {}).items() if self.dev_covered(r) >= everything}
                      for fs in candidates}
        if ev.rerank is not None and baseline not in ev.rerank:
            logger.warning("The re-rankers re-score %s, not the first stage %s every candidate is measured against: "
                           "the system handed over can only be a first stage", ev.rerank, baseline)
        # only what the results table shows: the re-ranker alone and the interpolation the run evaluates
        weights = ((1.0,) if not ev.interpolate else (ev.interpolation_weight, 1.0) if self.fixed_weight
                   else ALPHAS[1:])
        choose = choose_in_steps if ev.choose_in_steps and len(candidates) > 1 else choose_system
        self.choice = choose(baseline, self.dev_qrels, {fs: stages[fs]["dev"] for fs in candidates}, dev_scores,
                             ev.rerank_depth, seed=config.seed, resamples=ev.bootstrap, weights=weights,
                             cross_fitted=self.cross_fit is not None, selection=ev.selection,
                             depths=(*ev.gate_depths, ev.rerank_depth))
        if self.nested:
            self.choice = replace(self.choice, reason=(
                f"{self.choice.reason}; the dev runs of {', '.join(sorted(self.nested))} are nested: each fold ranked "
                "at weights learned on the other dev queries"))
        logger.info("Chosen system: %s", self.choice.reason)
        c = self.choice
        chosen = Candidate(c.first_stage, c.reranker, c.weight or 0.0, c.depth)
        test_scores = scores["test"].get(c.first_stage, {}).get(c.reranker) if c.reranker else None
        run = candidate_run(stages[c.first_stage]["test"], test_scores, ev.rerank_depth, chosen)
        write_trec(self.ctx.folder.system_trec(ev.split), run, "system")
        self.system_test = test_comparison(self.test_qrels, stages[baseline]["test"], run, ev.metrics, ev.bootstrap,
                                           config.seed)

    def write_analysis(self, systems: dict[str, dict[str, RunDict]]) -> None:
        """Significance and intervals: systems that rank the same first stage's candidates, compared pairwise."""
        ev, config, qrels = self.ev, self.config, self.test_qrels
        write_json(self.ctx.folder.analysis, {
            "split": ev.split, "queries": len(qrels), "qrels": qrels,
            "query_text": {q: self.ctx.documents.queries.text(q) for q in qrels},
            "first_stages": {name: analyse(qrels, found, ev.metrics, ev.significance, ev.correction, ev.bootstrap,
                                           config.seed) for name, found in systems.items()}})


def rerankers_to_evaluate(ctx: RunContext, trained: dict[str, Path]) -> dict[str, str]:
    """System name -> model: the untuned base (if asked), the run's trained re-rankers, and any extra ones."""
    config = ctx.config
    return {**({"base": config.train.base_model} if config.evaluate.include_base else {}),
            **{name: str(path) for name, path in trained.items()},
            **{path: path for path in config.evaluate.extra_rerankers}}

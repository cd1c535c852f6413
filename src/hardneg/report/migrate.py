"""``hardneg migrate RUN_DIR``: give a run folder made before hardneg wrote analysis.json one, rebuilt from its
TREC run files, score stores and the dataset's qrels, so ``hardneg report`` can read it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from ..crossencoder import read_scores
from ..data import load_beir, resolve_dataset
from ..evaluate import Row, analyse, read_trec, rerank_run
from ..io import read_json, write_json
from ..rundir import RunFolder
from ..splits import sample_queries
from .labels import system_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """What ``migrate`` did: the analysis file, whether it was (re)written, and the systems it could not rebuild."""

    analysis: Path
    written: bool
    left_out: list[str] = field(default_factory=list)


def migrate(run_dir: str | Path, data_dir: str | Path | None = None, force: bool = False) -> Migration:
    """Write RUN_DIR/analysis.json from the run's saved outputs unless it has one (``force``: rebuild it anyway).

    ``data_dir``: where to find the dataset when the run's own ``data_dir`` is gone; by default the run's
    ``data_dir``, then ``$HARDNEG_DATA``.
    """
    run = RunFolder(run_dir)
    if not run.results.is_file():
        raise FileNotFoundError(f"{run.results}: no results; {run.path} is not a finished `hardneg run` folder.")
    if run.analysis.is_file() and not force:
        return Migration(run.analysis, written=False)
    results = read_json(run.results)
    rows = [Row.from_dict(r) for r in results["rows"]]
    analysis, left_out = rebuild_analysis(run, RunConfig.model_validate(results["settings"]["config"]), rows,
                                          data_dir)
    write_json(run.analysis, analysis)
    return Migration(run.analysis, written=True, left_out=left_out)


def rebuild_analysis(run: RunFolder, cfg: RunConfig, rows: list[Row],
                     data_dir: str | Path | None = None) -> tuple[dict, list[str]]:
    """analysis.json's content for ``rows``, and the systems left out for want of a run file."""
    if data_dir is None:
        data_dir = cfg.data_dir if cfg.data_dir and Path(cfg.data_dir).is_dir() else os.environ.get("HARDNEG_DATA")
    dataset = load_beir(resolve_dataset(cfg.dataset, data_dir))
    ev = cfg.evaluate
    test_ids = sample_queries(sorted(dataset.positives(ev.split)), ev.max_queries, cfg.seed)
    qrels = {q: dataset.qrels[ev.split][q] for q in test_ids}
    found: dict[str, dict[str, dict]] = {}
    left_out = []
    for row in rows:
        system = system_of(row)
        ranking = saved_ranking(run, row, ev.split, ev.rerank_depth)
        if ranking is None:
            logger.warning("No run file %s: %s is left out of the significance tests", run.trec_for(row, ev.split),
                           system)
            left_out.append(system)
        else:
            found.setdefault(row.first_stage, {})[system] = ranking
    analysis = {"split": ev.split, "queries": len(qrels), "qrels": qrels,
                "query_text": {q: dataset.queries.text(q) for q in qrels}, "rebuilt_from_trec": True,
                "first_stages": {fs: analyse(qrels, systems, ev.metrics, ev.significance, ev.correction,
                                             ev.bootstrap, cfg.seed) for fs, systems in found.items()}}
    return analysis, left_out


def saved_ranking(run: RunFolder, row: Row, split: str, rerank_depth: int) -> dict[str, dict[str, float]] | None:
    """A results row's ranking from its TREC file; None when neither it nor its inputs were saved."""
    trec = run.trec_for(row, split)
    if trec.is_file():
        return read_trec(trec)
    first, scores = run.trec(row.first_stage, split), run.scores(row.reranker, split)
    if row.mode == "interpolated" and first.is_file() and scores.is_file():
        # Older runs kept no interpolated run file; its inputs (first stage, scores, weight) are all saved.
        return rerank_run(read_trec(first), read_scores(scores), rerank_depth, row.alpha)
    return None

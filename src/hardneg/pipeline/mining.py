"""The mining stage: one strategy's negatives, reused when the fingerprint of everything that decides them is
unchanged (data, rules, members, fusion, weights, search settings, seed, pairs, hardneg's version)."""

from __future__ import annotations

import logging
import time

from ..version import __version__
from ..config import MiningConfig, StrategyConfig, fingerprint
from ..crossencoder import training_info
from ..device import use_compute
from ..diagnostics import write_diagnostics
from ..engine import mine_with_engine
from ..io import read_json, read_jsonl, write_json, write_jsonl
from ..mine import MinedPair
from ..retrieve import FUSIONS, search_stamp
from ..rundir import StrategyFolder
from .context import RunContext

logger = logging.getLogger(__name__)


def mine_strategy(ctx: RunContext, strategy: StrategyConfig, folder: StrategyFolder,
                  mining: MiningConfig | None = None) -> tuple[list[MinedPair], dict]:
    """Mine (or reuse) one strategy's negatives; returns the pairs and what mining.json records.

    ``mining`` replaces the strategy's settings (a later round passes its denoising re-ranker this way).
    """
    config = ctx.config
    mining = mining or config.mining_for(strategy)
    members = config.members_for(strategy)
    fusion = mining.fusion or config.fusion
    ensemble = (ctx.retrievers.ensemble(members, fusion, mining.kept_variance) if strategy.kind != "random"
                else None)
    # Only what changes the output: the data, the rules, and for an ensemble its members, fusion and weights.
    how = (None if ensemble is None else
           [members, config.embed_max_seq_length] + ([fusion, ensemble.weights.tolist()]
                                                     if len(members) > 1 else [])
           + ([fusion] if len(members) == 1 and FUSIONS[fusion].representation == "concat-pca" else [])
           + search_stamp(config))
    if mining.denoise_model is not None:  # the re-ranker's training, not just its folder, decides the output
        how = [how, training_info(mining.denoise_model).get("fingerprint") or mining.denoise_model]
    stamp = fingerprint(ctx.dataset.signature, strategy.kind, mining.stamp(), how, config.seed, ctx.pairs,
                        __version__)
    if folder.mining.is_file() and folder.negatives.is_file():
        saved = read_json(folder.mining)
        if saved.get("fingerprint") == stamp:
            logger.info("Reusing mined negatives for %s", strategy.name)
            return [MinedPair(**row) for row in read_jsonl(folder.negatives)], saved
    started = time.perf_counter()
    with use_compute(config.compute):  # the engine and device change how fast, never what: not fingerprinted
        result = mine_with_engine(config.compute, ctx.dataset, ctx.pairs, ensemble, mining, strategy.name,
                                  seed=config.seed, progress=config.progress)
    seconds = time.perf_counter() - started
    folder.mining.unlink(missing_ok=True)  # the summary's fingerprint vouches for the negatives: never a stale one
    write_jsonl(folder.negatives, (p.as_dict() for p in result.pairs))
    write_jsonl(folder.likely_positives, result.likely_positives)
    saved = {"fingerprint": stamp, "members": members, "mining": mining.model_dump(), "seconds": round(seconds, 1),
             "summary": result.summary.as_dict()}
    try:
        saved["diagnostics"] = write_diagnostics(result, folder.path, plots=True)
    except ImportError as exc:  # plots are an optional extra: keep the numbers
        logger.warning("%s; writing diagnostics without plots", exc)
        saved["diagnostics"] = write_diagnostics(result, folder.path, plots=False)
    write_json(folder.mining, saved)
    return result.pairs, saved

"""Engines that mine: ``local`` (this process) or ``ray`` (a Ray cluster embeds the corpus and mines query shards).

Both give the same negatives; the engine is chosen by ``compute.engine`` and never enters a fingerprint. Ray is an
optional extra, imported only when the ray engine runs (:func:`hardneg.engine.ray_session.require_ray`). Training
stays on the machine that runs hardneg (docs/SCALE.md).
"""

from __future__ import annotations

from ..compute_config import ComputeConfig
from ..config import MiningConfig
from ..data import Dataset
from ..mine import MiningResult, mine
from ..retrieve import Ensemble


def mine_with_engine(compute: ComputeConfig, dataset: Dataset, pairs: list[tuple[str, str]],
                     ensemble: Ensemble | None, config: MiningConfig, strategy: str, seed: int = 42,
                     progress: bool = True) -> MiningResult:
    """:func:`hardneg.mine.mine` on the configured engine; random negatives (no ensemble) always run here."""
    if compute.engine == "local" or ensemble is None:
        return mine(dataset, pairs, ensemble, config, strategy, seed=seed, progress=progress)
    from .ray_mine import mine_on_ray

    return mine_on_ray(compute, dataset, pairs, ensemble, config, strategy, seed=seed, progress=progress)


__all__ = ["mine_with_engine"]

"""Joining or starting Ray for the ray engine, and sizing its workers from what the cluster has."""

from __future__ import annotations

import logging

from ..compute_config import ComputeConfig

logger = logging.getLogger(__name__)


def require_ray():
    """The ``ray`` module (with Ray Data), or an ImportError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the embedding stage needs Ray Data, part of ray[data])
    except ImportError as exc:
        raise ImportError("compute.engine: ray needs Ray with Ray Data: pip install 'hardneg[ray]' "
                          "(or set compute.engine: local)") from exc
    return ray


def connect(compute: ComputeConfig, progress: bool = True):
    """Ray, joined at ``compute.address`` or started on this machine, unless this process already runs one (a
    caller's own ``ray.init`` wins). A Ray hardneg starts stays up until the process exits: every strategy of a
    run reuses it."""
    ray = require_ray()
    if not ray.is_initialized():
        options = {"include_dashboard": False, "configure_logging": False, "log_to_driver": progress}
        if compute.address:
            logger.info("Joining the Ray cluster at %s", compute.address)
            ray.init(address=compute.address, **options)
        else:
            memory = compute.ray_object_store_mb * 2**20 if compute.ray_object_store_mb else None
            logger.info("Starting Ray on this machine")
            ray.init(object_store_memory=memory, **options)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = progress
    return ray


def gpus_per_worker(compute: ComputeConfig, ray) -> float:
    """GPUs each embedding actor takes: as configured, else 1 when the cluster has GPUs (and the device setting
    allows them), else 0."""
    if compute.ray_num_gpus_per_worker is not None:
        return compute.ray_num_gpus_per_worker
    if compute.device in ("cpu", "mps"):
        return 0.0
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def num_workers(compute: ComputeConfig, ray, gpus: float = 0.0) -> int:
    """Embedding actors per model and mining tasks in flight: as configured, else one per GPU (GPU actors) or
    per CPU of the cluster."""
    if compute.ray_num_workers is not None:
        return compute.ray_num_workers
    resources = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1)))

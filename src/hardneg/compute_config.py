"""Settings for where the work runs: the ``compute:`` section (device, precision, and the local or Ray engine).

At its defaults (device and precision ``auto``, the local engine) :class:`hardneg.config.RunConfig` leaves the
section out of its dump, so configs written before it existed keep their fingerprints. None of these settings
enters a stage's fingerprint: they change how fast a result comes, not what it is (fp16 on a GPU moves vectors
by about the float16 cache's own rounding; bf16 more, so its vectors are cached apart; docs/SCALE.md).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Precision = Literal["auto", "fp32", "fp16", "bf16"]


class ComputeConfig(BaseModel):
    """Where embedding, re-ranker scoring, training and mining run: the device and precision of this process,
    and the engine (``local``, or ``ray`` for embedding and mining across a Ray cluster; training stays on the
    machine that runs ``hardneg``). See docs/SCALE.md."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field("auto", description="auto (CUDA when torch sees a GPU, else Apple MPS, else CPU), cpu, "
                        "cuda, cuda:N or mps")
    precision: Precision = Field(
        "auto", description="auto: fp16 inference and bf16 training (fp16 where bf16 is unsupported) on CUDA, "
        "fp32 elsewhere; fp32, fp16 or bf16 force one (autocast; fp16 needs a GPU). On a CPU with bf16 "
        "instructions (AMX, AVX-512 BF16) bf16 embeds about 2.6x faster at the same first-stage quality, but "
        "re-rankers trained on negatives it mined scored lower (docs/RESULTS.md, Speed and memory); on the CPU "
        "scores and training stay fp32")
    engine: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: embed the corpus with Ray Data actor pools and mine query "
        "shards as Ray tasks (pip install 'hardneg[ray]'); the negatives are the same")
    address: str | None = Field(None, description="ray: the cluster to join (auto, ray://host:10001); null: start "
                                "a Ray on this machine")
    ray_num_workers: int | None = Field(None, ge=1, description="ray: embedding actors per model and mining tasks "
                                        "in flight; null: one per GPU of the cluster, else one per CPU")
    ray_num_gpus_per_worker: float | None = Field(
        None, ge=0, description="ray: GPUs per embedding actor; null: 1 when the cluster has GPUs, else 0")
    ray_batch_size: int | None = Field(None, ge=1, description="ray: texts per embedding batch; null: the model's "
                                       "own batch size (the local engine's, so the vectors are the same)")
    ray_query_shard: int = Field(256, ge=1, description="ray: queries per mining task")
    ray_object_store_mb: int | None = Field(
        None, ge=75, description="ray: object-store memory of a Ray that hardneg starts, in MB (also bounds Ray "
        "Data's in-flight blocks); null: Ray's default (30% of memory)")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @model_validator(mode="after")
    def _precision_fits_device(self) -> "ComputeConfig":
        # Fail when the config is read, not hours later at the first forward pass or the first training step.
        if self.device == "cpu" and self.precision == "fp16":
            raise ValueError("precision fp16 needs a GPU, and device is cpu: use precision auto, fp32 or bf16 on "
                             "the CPU")
        return self

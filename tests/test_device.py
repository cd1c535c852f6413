"""Device and precision selection, checked on a CPU-only machine: torch's view of the GPU is faked where needed."""

from __future__ import annotations

import contextlib

import pytest
import torch

from hardneg import device
from hardneg.compute_config import ComputeConfig
from hardneg.config import RunConfig, config_from_dict
from hardneg.schedule import trainer_arguments


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch says it has two CUDA GPUs (nothing is ever run on them here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_auto_is_cuda_then_mps_then_cpu(monkeypatch, no_gpu):
    assert device.resolve_device("auto") == device.resolve_device(None) == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device.resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("auto") == "cuda"


def test_a_device_the_machine_lacks_is_an_error_saying_what_to_set(no_gpu, monkeypatch):
    assert device.resolve_device("cpu") == "cpu"
    for setting in ("cuda", "cuda:1", "mps"):
        with pytest.raises(ValueError, match="set compute.device: auto or cpu"):
            device.resolve_device(setting)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="has 2 CUDA GPU"):
        device.resolve_device("cuda:2")


def test_the_config_section_validates_the_device_and_stays_out_of_old_dumps():
    with pytest.raises(ValueError, match="compute.device"):
        config_from_dict({"dataset": "x", "compute": {"device": "gpu"}})
    default = RunConfig(dataset="x")
    assert "compute" not in default.model_dump()  # configs written before the section keep their fingerprints
    ray = config_from_dict({"dataset": "x"}, {"compute.engine": "ray", "compute.address": "auto"})
    assert ray.model_dump()["compute"]["engine"] == "ray" and ray.compute.address == "auto"


def test_inference_precision_is_float32_on_the_cpu_and_half_on_cuda():
    assert device.inference_dtype("cpu") is None and device.inference_dtype("mps") is None
    assert device.inference_dtype("cpu", "bf16", scoring=True) is None  # a bf16 logit would tie candidates
    assert device.inference_dtype("cuda", scoring=True) is torch.float16
    assert device.inference_dtype("cuda") is torch.float16 and device.inference_dtype("cuda:1") is torch.float16
    assert device.inference_dtype("cuda", "fp32") is None
    assert device.inference_dtype("cuda", "bf16") is torch.bfloat16
    assert device.inference_dtype("cpu", "bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        device.inference_dtype("cpu", "fp16")
    assert isinstance(device.autocast("cpu"), contextlib.nullcontext)
    with device.autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")


def test_training_flags_cpu_as_before_mixed_precision_on_cuda(monkeypatch, fake_cuda):
    assert device.training_arguments("cpu") == {"use_cpu": True}
    assert device.training_arguments("cuda") == {"use_cpu": False, "bf16": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device.training_arguments("cuda") == {"use_cpu": False, "fp16": True}
    assert device.training_arguments("cuda", "fp32") == {"use_cpu": False}
    assert device.training_arguments("cuda", "bf16") == {"use_cpu": False, "bf16": True}
    assert device.training_arguments("mps") == {"use_cpu": False}
    with pytest.raises(ValueError, match="needs a GPU"):
        device.training_arguments("cpu", "fp16")


def _args(tmp_path) -> dict:
    from hardneg.config import TrainConfig

    return trainer_arguments(tmp_path, rows=40, batch=8, config=TrainConfig(), seed=1, progress=False,
                             dev_metric=None)


def test_trainer_arguments_follow_the_runs_device(tmp_path, no_gpu, monkeypatch):
    cpu = _args(tmp_path)
    assert cpu["use_cpu"] is True and "fp16" not in cpu and "bf16" not in cpu
    with device.use_compute(ComputeConfig(device="cpu")):
        assert _args(tmp_path) == cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    cuda = _args(tmp_path)  # auto: the GPU torch now reports, in fp16 where bf16 is unsupported
    assert cuda["use_cpu"] is False and cuda["fp16"] is True
    with device.use_compute(ComputeConfig(device="cpu")):  # a GPU machine told to stay on the CPU
        assert _args(tmp_path) == cpu
    with device.use_compute(ComputeConfig(device="cuda", precision="fp32")):
        assert {k: v for k, v in _args(tmp_path).items() if k in ("use_cpu", "fp16", "bf16")} == {"use_cpu": False}
    assert device.current() == device.ComputeSettings()  # the run's settings end with the block


def test_use_compute_checks_the_device_at_once(no_gpu):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        with device.use_compute(ComputeConfig(device="cuda")):
            pass
    assert device.current() == device.ComputeSettings()


def test_models_load_on_the_runs_device(tiny_st, tiny_bert, no_gpu):
    from hardneg.crossencoder import load_cross_encoder
    from hardneg.embed import get_embedder

    embedder = get_embedder(tiny_st)
    with device.use_compute(ComputeConfig(device="cpu", precision="bf16")):
        vectors = embedder.embed(["a text", "another text"], "document", progress=False)
    assert embedder.device == "cpu" and embedder.precision == "bf16" and vectors.shape[0] == 2
    plain = get_embedder(tiny_st)
    assert plain.embed(["a text"], progress=False).dtype == "float32" and plain.device == "cpu"
    # the device is not part of a vector's identity; bf16 is (it moves a vector more than the float16 cache does)
    assert plain.cache_key != embedder.cache_key and ":bf16" in embedder.cache_key
    assert load_cross_encoder(tiny_bert, 32, device="cpu").device.type == "cpu"
    assert load_cross_encoder(tiny_bert, 32).device.type == "cpu"


def test_faiss_stays_on_the_cpu_without_gpus():
    import numpy as np

    from hardneg.knn import build_index

    index = build_index(np.eye(4, dtype=np.float32))
    assert "Gpu" not in type(index).__name__


def test_cli_compute_options_become_compute_settings():
    from hardneg.cli.common import compute_settings

    assert compute_settings(None, None, None) == {}
    assert compute_settings("ray", "auto", "cpu") == {"engine": "ray", "address": "auto", "device": "cpu"}

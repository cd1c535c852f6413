"""Issue 20, training: a checkpoint cut off by a kill or a full disk never blocks a resume; a folder hardneg did
not write is never replaced; one trainer per folder."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hardneg import lock
from hardneg.checkpoints import checkpoint_problem, last_complete_checkpoint
from hardneg.config import MiningConfig, TrainConfig
from hardneg.crossencoder import training_info
from hardneg.mine import mine, training_pairs
from hardneg.train import claim_output, dev_samples, train_reranker

ROOT = Path(__file__).resolve().parents[1]


def fake_checkpoint(folder: Path, step: int = 1) -> Path:
    """The files a trainer writes into a checkpoint, small but each in its real format."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(64)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        torch.save({"state": list(range(100))}, folder / name)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["no trainer_state.json", "config.json without model_type",
                                    "model.safetensors cut off", "optimizer.pt cut off", "scheduler.pt missing",
                                    "rng_state.pth cut off", "no weights"])
def test_every_way_a_save_is_cut_short_is_recognised(tmp_path, damage):
    """2: "Unrecognized model ... Should have a model_type key", "No such file ... trainer_state.json", "no file
    named model.safetensors": each file a kill or full disk can cut off or leave out is checked."""
    folder = fake_checkpoint(tmp_path / "checkpoint-1")
    assert checkpoint_problem(folder) is None
    {"no trainer_state.json": lambda: (folder / "trainer_state.json").unlink(),
     "config.json without model_type": lambda: (folder / "config.json").write_text("{}"),
     "model.safetensors cut off": lambda: cut(folder / "model.safetensors"),
     "optimizer.pt cut off": lambda: cut(folder / "optimizer.pt"),
     "scheduler.pt missing": lambda: (folder / "scheduler.pt").unlink(),
     "rng_state.pth cut off": lambda: cut(folder / "rng_state.pth"),
     "no weights": lambda: (folder / "model.safetensors").unlink()}[damage]()
    assert checkpoint_problem(folder) is not None


def test_an_incomplete_checkpoint_is_set_aside_and_the_last_complete_one_used(tmp_path, caplog):
    """2: the newest checkpoint is cut off: it is set aside with a logged line, the one before is resumed from."""
    fake_checkpoint(tmp_path / "checkpoint-5", 5)
    cut(fake_checkpoint(tmp_path / "checkpoint-10", 10) / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="hardneg.checkpoints"):
        assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-5"
    assert "Setting aside" in caplog.text and "model.safetensors is cut off" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-5", "incomplete-checkpoint-10"]
    (tmp_path / "checkpoint-5" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(tmp_path) is None  # none complete: training starts over


def test_training_never_replaces_a_model_folder_it_did_not_write(tmp_path):
    """What to build: never delete what hardneg did not write (OUTPUT/model of someone else's, OUTPUT/checkpoints)."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"someone's model")
    with pytest.raises(ValueError, match="model holds files hardneg did not write"):
        claim_output(tmp_path, "f")
    (tmp_path / "model" / "weights.bin").unlink()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="checkpoints holds files hardneg did not write"):
        claim_output(tmp_path, "f")
    assert (tmp_path / "checkpoints" / "notes.txt").read_text() == "mine"


def test_what_a_killed_training_left_is_cleaned_on_the_next_one(tmp_path):
    """What to build: stale temporary files from killed runs are cleaned on the next run (a dead process's
    staging folder, the old fixed staging name); checkpoints of the same fingerprint are kept for the resume."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".model.{pid}-abc.tmp").mkdir()
    (tmp_path / f".model.{pid}-abc.tmp" / "README.md").write_text("half")
    (tmp_path / ".model.tmp").mkdir()
    claim_output(tmp_path, "f1")
    fake_checkpoint(tmp_path / "checkpoints" / "checkpoint-1")
    claim_output(tmp_path, "f1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]
    assert (tmp_path / "checkpoints" / "checkpoint-1").is_dir()
    claim_output(tmp_path, "f2")  # other data or settings: never resumed from
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["fingerprint"]


def test_a_second_trainer_on_the_same_folder_is_refused(tmp_path, dataset):
    """5: two trainings into one folder clashed on its temporary model folder (.model.tmp/README.md)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom hardneg import lock\n"
                               "lock.acquire(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(60)",
                               str(tmp_path / lock.LOCK_NAME)],
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(lock.FolderLocked, match=f"in use by process {holder.pid}"):
            train_reranker([], tmp_path, TrainConfig(base_model="minilm"), 2, fingerprint="f")
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def training(dataset, tiny_bert):
    pairs = mine(dataset, training_pairs(dataset, "train"), None, MiningConfig(num_negatives=2), "random",
                 progress=False).pairs
    dev = dev_samples(dataset, {"q6": {"d08": 2.0, "d07": 1.0}, "q7": {"d01": 1.0, "d11": 0.5}},
                      dataset.qrels["test"], depth=2)
    # one pass (no step floor), dev evaluation every step: a checkpoint at each of the 3 steps
    return pairs, dev, TrainConfig(base_model=tiny_bert, loss="mnrl", batch_size=2, max_length=32, dev_evals=3,
                                   min_steps=None)


def test_a_kill_during_a_checkpoint_save_does_not_block_the_resume(training, tmp_path, monkeypatch, caplog):
    """2 / fault injection: killed after the weights of checkpoint-2 were written, before its trainer state."""
    from transformers import Trainer

    out = tmp_path / "out"
    pairs, dev, config = training
    original = Trainer._save_rng_state

    def killed(self, output_dir):
        if self.state.global_step == 2:
            raise KeyboardInterrupt  # what a kill leaves: the files written so far, nothing after
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", killed)
    with pytest.raises(KeyboardInterrupt):
        train_reranker(pairs, out, config, 2, progress=False, fingerprint="f1", dev=dev)
    assert (out / "checkpoints" / "checkpoint-2" / "model.safetensors").is_file()
    assert not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    monkeypatch.setattr(Trainer, "_save_rng_state", original)
    with caplog.at_level(logging.INFO):
        final = train_reranker(pairs, out, config, 2, progress=False, fingerprint="f1", dev=dev)
    assert "Setting aside" in caplog.text and "checkpoint-2" in caplog.text
    assert "Resuming training from" in caplog.text and "checkpoint-1" in caplog.text
    assert training_info(final)["steps"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["model"]  # checkpoints and staging cleared


def test_a_full_disk_during_a_checkpoint_save_does_not_block_the_resume(training, tmp_path, monkeypatch, caplog):
    """2 / full disk: the optimizer file of checkpoint-2 is cut off by ENOSPC; the next run resumes from 1."""
    import torch

    out = tmp_path / "out"
    pairs, dev, config = training
    original = torch.save

    def full(obj, f, *args, **kwargs):
        if "checkpoint-2" in str(f) and str(f).endswith("optimizer.pt"):
            Path(f).write_bytes(b"PK\x03\x04 half an archive")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="No space left"):
        train_reranker(pairs, out, config, 2, progress=False, fingerprint="f1", dev=dev)
    monkeypatch.setattr(torch, "save", original)
    with caplog.at_level(logging.INFO):
        final = train_reranker(pairs, out, config, 2, progress=False, fingerprint="f1", dev=dev)
    assert "optimizer.pt is missing or cut off" in caplog.text or "trainer_state.json is missing" in caplog.text
    assert "checkpoint-1" in caplog.text and training_info(final)["steps"] == 3


KILL_IN_SAVE = """
import json, os, signal, sys
from pathlib import Path
from transformers import Trainer
from hardneg.config import TrainConfig
from hardneg.data import load_beir
from hardneg.mine import MinedPair
from hardneg.train import dev_samples, train_reranker

original = Trainer._save_optimizer_and_scheduler
def killed(self, output_dir):
    if self.state.global_step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir)
Trainer._save_optimizer_and_scheduler = killed
args = json.loads(sys.argv[1])
data = load_beir(args["data"])
dev = dev_samples(data, {"q6": {"d08": 2.0, "d07": 1.0}, "q7": {"d01": 1.0, "d11": 0.5}}, data.qrels["test"], 2)
pairs = [MinedPair(**row) for row in args["pairs"]]
train_reranker(pairs, args["out"], TrainConfig(**args["config"]), 2, progress=False, fingerprint="f1", dev=dev)
"""


@pytest.mark.slow
def test_a_real_kill_during_a_checkpoint_save(training, tmp_path, beir_dir, caplog):
    """2 with a real SIGKILL in a child process, mid-save of checkpoint-2; the rerun in this process resumes."""
    pairs, dev, config = training
    args = {"data": str(beir_dir), "out": str(tmp_path / "out"), "pairs": [p.as_dict() for p in pairs],
            "config": config.model_dump()}
    proc = subprocess.run([sys.executable, "-c", KILL_IN_SAVE, json.dumps(args)], capture_output=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]
    assert (tmp_path / "out" / lock.LOCK_NAME).is_file()  # the killed trainer's lock, taken over below
    with caplog.at_level(logging.INFO):
        final = train_reranker(pairs, tmp_path / "out", config, 2, progress=False, fingerprint="f1", dev=dev)
    assert "Setting aside" in caplog.text and "Resuming training from" in caplog.text
    assert training_info(final)["steps"] == 3

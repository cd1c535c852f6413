"""Issue 20, faults and concurrent runs: kills mid-write (real SIGKILLs in a child process), a full disk, and two
runs on one folder (the lock is refused while its owner lives, taken over once it is dead)."""

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
from typer.testing import CliRunner

from hardneg import lock
from hardneg.cli import app
from hardneg.config import config_from_dict
from hardneg.io import atomic_write, read_jsonl, stale_temps, write_json, write_jsonl
from hardneg.pipeline.context import prepare
from hardneg.pipeline.mining import mine_strategy
from hardneg.rundir import RunFolder

from .test_reliability_ingest import full_disk

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def child(script: str, *args: str, wait: bool = True):
    """Run ``script`` in a fresh Python (hardneg from this tree); wait for it, or return it running."""
    command = [sys.executable, "-c", script, *map(str, args)]
    if wait:
        return subprocess.run(command, env=ENV, capture_output=True, timeout=300)
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def hidden(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".*")
                  if p.name not in {".hardneg.json", ".hardneg.lock"})


# --- writes: a kill, a full disk --------------------------------------------------------------------------------------

KILL_MID_WRITE = """
import os, signal, sys
from hardneg.io import write_jsonl
def rows():
    yield {"row": 1}
    os.kill(os.getpid(), signal.SIGKILL)
write_jsonl(sys.argv[1], rows())
"""


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """6: a killed mining left a `.likely_positives.jsonl.*.tmp` that nothing removed."""
    target = tmp_path / "likely_positives.jsonl"
    write_jsonl(target, [{"row": 0}])
    proc = child(KILL_MID_WRITE, target)
    assert proc.returncode == -signal.SIGKILL
    left = stale_temps(tmp_path, target.name)
    assert len(left) == 1 and left[0].name.startswith(".likely_positives.jsonl.")
    assert read_jsonl(target) == [{"row": 0}]  # the reader never saw half a file
    write_jsonl(target, [{"row": 2}])
    assert read_jsonl(target) == [{"row": 2}] and sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    """Cleaning up after dead writers must never pull a file from under a live one."""
    target = tmp_path / "out.json"
    with atomic_write(target) as handle:  # this process is alive and mid-write
        handle.write("{}")
        write_json(target.with_name("other.json"), {})  # another write in the folder cleans only dead writers' files
        assert len(list(tmp_path.glob(".out.json.*.tmp"))) == 1
    assert json.loads(target.read_text()) == {}


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    """Fault: a patched write raising OSError(ENOSPC), as a full disk does."""
    target = tmp_path / "results.json"
    write_json(target, {"old": 1})
    monkeypatch.setattr(os, "fdopen", full_disk(os.fdopen))
    with pytest.raises(OSError, match="could not write .*results.json: No space left on device; the previous "
                                      "file is unchanged") as raised:
        write_json(target, {"new": 2})
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"old": 1} and sorted(p.name for p in tmp_path.iterdir()) == [
        "results.json"]


def run_settings(tmp_path, dataset, output) -> dict:
    return {"dataset": str(dataset), "output": str(output), "ensemble": ["hash", "bm25"], "progress": False,
            "seed": 3, "strategies": ["bm25"], "mining": {"num_negatives": 2, "depth": 8},
            "train": {"base_model": "minilm", "max_length": 32}, "evaluate": {"first_stages": ["ensemble"]},
            "cache_dir": str(tmp_path / "cache")}


KILL_MID_MINING = """
import json, os, signal, sys
from hardneg import io
from hardneg.config import config_from_dict
from hardneg.pipeline import mining
from hardneg.pipeline.context import prepare

def killing(path, rows):  # the negatives file half written, then the process is killed
    with io.atomic_write(path) as handle:
        for i, row in enumerate(rows):
            handle.write(json.dumps(row) + "\\n")
            handle.flush()
            if i == 1:
                os.kill(os.getpid(), signal.SIGKILL)

mining.write_jsonl = killing
ctx = prepare(config_from_dict(json.loads(sys.argv[1])))
strategy = ctx.config.strategies[0]
mining.mine_strategy(ctx, strategy, ctx.folder.strategy(strategy.name))
"""


def test_a_kill_during_mining_output_resumes_to_the_same_negatives(tmp_path, beir_dir):
    """Fault injection: mining killed while writing its negatives; the rerun mines again, the same negatives, and
    removes the half-written file."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = child(KILL_MID_MINING, json.dumps(run_settings(tmp_path, beir_dir, killed)))
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    folder = RunFolder(killed).strategy("bm25")
    assert not folder.mining.exists() and len(stale_temps(folder.path, "negatives.jsonl")) == 1

    def mined(output):
        ctx = prepare(config_from_dict(run_settings(tmp_path, beir_dir, output)))
        strategy = ctx.config.strategies[0]
        return mine_strategy(ctx, strategy, ctx.folder.strategy(strategy.name))

    pairs, saved = mined(killed)
    assert [p.as_dict() for p in pairs] == [p.as_dict() for p in mined(clean)[0]]
    assert hidden(killed) == [] and read_jsonl(folder.negatives) == [p.as_dict() for p in pairs]


# --- two runs on one folder ---------------------------------------------------------------------------------------------

HOLD = """
import sys, time
from hardneg.rundir import RunFolder
RunFolder(sys.argv[1]).claim()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_run_on_a_folder_is_refused_while_the_first_lives(tmp_path, beir_dir):
    """5: two runs on one folder both trained everything, then one died on the other's temporary files."""
    run = tmp_path / "run"
    owner = child(HOLD, run, wait=False)
    try:
        assert owner.stdout.readline().strip() == b"held"
        config = tmp_path / "c.yaml"
        config.write_text(json.dumps(run_settings(tmp_path, beir_dir, run)))
        result = CliRunner().invoke(app, ["run", str(config), "--no-progress"])
        assert result.exit_code == 2, result.output
        assert f"in use by process {owner.pid} on" in result.output and "Wait for it to finish" in result.output
        assert not RunFolder(run).strategies_dir.exists()  # refused before any work
    finally:
        owner.kill()
        owner.wait()


def test_a_dead_owners_lock_is_taken_over(tmp_path, caplog):
    """5: a run killed with its lock held does not block the folder: the next run takes it over."""
    run = tmp_path / "run"
    owner = child(HOLD, run, wait=False)
    assert owner.stdout.readline().strip() == b"held"
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert RunFolder(run).lock.is_file()  # a kill leaves the file; the OS lock went with the process
    try:
        with caplog.at_level(logging.WARNING, logger="hardneg.lock"):
            RunFolder(run).claim()
        assert f"its last owner (process {owner.pid} on" in caplog.text
        assert json.loads(RunFolder(run).lock.read_text())["pid"] == os.getpid()
    finally:
        lock.release(RunFolder(run).lock)
    assert not RunFolder(run).lock.exists()


def test_the_owner_may_take_its_own_lock_again(tmp_path):
    """One process running twice on a folder (a notebook, the tests) is its owner both times."""
    path = tmp_path / "x" / ".hardneg.lock"
    try:
        lock.acquire(path)
        lock.acquire(path)
        assert lock.holds(path)
        probe = child("import sys\nfrom hardneg import lock\nlock.acquire(sys.argv[1])", path)
        assert probe.returncode == 1 and b"FolderLocked" in probe.stderr
    finally:
        lock.release(path)
    assert child("import sys\nfrom hardneg import lock\nlock.acquire(sys.argv[1])", path).returncode == 0

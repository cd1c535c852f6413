"""Issue 20, fail early and clearly: splits, overlaps and empty inputs before any training; CLI arguments checked;
run folders that are files or someone else's refused; offline model names; no traceback for a user's error.

Each test is one case of the issue (or one found while fixing it); the docstring names it.
"""

from __future__ import annotations

import errno
import json
import logging
import time

import pytest
import yaml
from typer.testing import CliRunner

from hardneg import cli, hub
from hardneg.cli import app
from hardneg.config import config_from_dict
from hardneg.crossencoder import load_cross_encoder
from hardneg.data import DataError, load_beir
from hardneg.embed import get_embedder
from hardneg.pipeline.context import prepare
from hardneg.rerank import rerank
from hardneg.rundir import RunFolder

from .conftest import QUERIES, TEST, write_beir


def settings(tmp_path, dataset, **extra) -> dict:
    return {"dataset": str(dataset), "output": str(tmp_path / "run"), "ensemble": ["hash", "bm25"],
            "progress": False, "strategies": ["random"], "train": {"base_model": "minilm", "max_length": 32},
            "evaluate": {"first_stages": ["ensemble"]}, **extra}


def config_file(tmp_path, dataset, **extra):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path, dataset, **extra)))
    return path


# --- splits, overlaps, empty inputs: before any training ---------------------------------------------------------

def test_a_dataset_without_a_test_split_fails_before_training(tmp_path):
    """6: a dataset with no test split trained every strategy and then failed with KeyError: 'test'."""
    data = write_beir(tmp_path / "d")
    (data / "qrels" / "test.tsv").unlink()
    result = CliRunner().invoke(app, ["run", str(config_file(tmp_path, data))])
    assert result.exit_code == 2 and "has no qrels for split 'test'" in result.output
    assert not (tmp_path / "run" / "strategies").exists()  # nothing mined, nothing trained


def test_a_test_split_without_positives_fails_before_training(tmp_path):
    """Found here: an evaluation split whose rows are all grade 0 would evaluate nothing after training."""
    data = write_beir(tmp_path / "d", test=[])
    with pytest.raises(DataError, match="no query in split 'test' has a positive"):
        prepare(config_from_dict(settings(tmp_path, data)))


def test_identical_queries_in_train_and_test_are_warned_about(tmp_path, caplog):
    """6: identical queries in train and test passed without a warning."""
    queries = QUERIES + [("q11", "HOW do solar panels make electricity")]  # q1's text, another id
    data = write_beir(tmp_path / "d", queries=queries, test=TEST + [("q1", "d01"), ("q11", "d01")])
    with caplog.at_level(logging.WARNING, logger="hardneg.pipeline"):
        ctx = prepare(config_from_dict(settings(tmp_path, data)))
    assert "splits 'train' and 'test' overlap: 1 query ids in both (e.g. q1); 1 queries with the same text" in caplog.text
    saved = json.loads(ctx.folder.data_report.read_text())["split_overlap"]
    assert saved == {"splits": ["train", "test"], "same_ids": ["q1"], "same_texts": [["q1", "q11"]]}
    # dev queries choose the system a run hands over: one that is also a test query never goes to dev
    lenient = prepare(config_from_dict(settings(tmp_path, data, dev_fraction=0.9, output=str(tmp_path / "r2"))))
    assert "q1" not in lenient.dev_ids and lenient.dev_ids


def test_training_queries_all_held_out_for_dev_fail_early(tmp_path):
    """Found here: every training query in the dev split left mining nothing to do (an error deep in numpy)."""
    data = write_beir(tmp_path / "d", train=[("q1", "d01")])
    with pytest.raises(ValueError, match="No training pairs: all 1 training queries went to the dev split"):
        prepare(config_from_dict(settings(tmp_path, data, dev_fraction=0.9)))


def test_mine_on_a_split_without_positives_says_so(tmp_path):
    """6: queries without positives gave `need at least one array to stack` in `mine`."""
    data = write_beir(tmp_path / "d", train=[])
    result = CliRunner().invoke(app, ["mine", "-d", str(data), "-o", str(tmp_path / "n.jsonl"), "--models",
                                      "hash,bm25", "--no-progress"])
    assert result.exit_code == 2 and "no query in split 'train' has a positive" in result.output
    assert "stack" not in result.output


def test_the_data_report_counts_every_unused_query(tmp_path):
    """6: the data report said "1 query in no qrels split (e.g. 6 queries)"."""
    extra = [(f"u{i}", f"unlabelled question {i}") for i in range(5)]
    report = load_beir(write_beir(tmp_path / "d", queries=QUERIES + extra)).report
    assert report.skipped["query in no qrels split (unused)"] == 6
    assert report.examples["query in no qrels split (unused)"] == ["q10, u0, u1"]
    assert "6 query in no qrels split (unused) (e.g. q10, u0, u1)" in report.summary()


# --- command-line arguments -----------------------------------------------------------------------------------------

def test_set_on_a_plain_value_is_a_one_line_error(tmp_path, beir_dir):
    """6: `--set seed.x=1` gave a TypeError traceback."""
    result = CliRunner().invoke(app, ["run", str(config_file(tmp_path, beir_dir, seed=7)), "--set", "seed.x=1"])
    assert result.exit_code == 2 and "cannot set 'seed.x': 'seed' is a value" in result.output
    assert not isinstance(result.exception, TypeError)


@pytest.fixture(scope="module")
def model_dir(tiny_bert, tmp_path_factory):
    from sentence_transformers import CrossEncoder

    folder = tmp_path_factory.mktemp("ce")
    CrossEncoder(tiny_bert, num_labels=1, max_length=32).save_pretrained(str(folder))
    return str(folder)


def test_rerank_arguments_out_of_range_are_one_line_errors(model_dir, tmp_path):
    """6: `rerank --max-length 100000` / `-5` gave tracebacks and `rerank -k -1` printed all but the last."""
    docs = tmp_path / "docs.txt"
    docs.write_text("solar panels\ncoffee beans\nwind turbines\n")
    base = ["rerank", "-m", model_dir, "-q", "solar", "--docs", str(docs)]
    for extra, message in ((["-k", "-1"], "top_k must be a whole number of at least 1"),
                           (["-k", "0"], "top_k must be"),
                           (["--max-length", "-5"], "max_length must be a whole number of at least 1"),
                           (["--max-length", "100000"], "max_length 100000 is more than the model's 128 token"),
                           (["--batch-size", "0"], "batch_size must be")):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
        assert "Traceback" not in result.output
    with pytest.raises(ValueError, match="top_k"):
        rerank(model_dir, "q", ["a", "b"], top_k=-1)


def test_debug_flag_shows_the_traceback(model_dir, tmp_path):
    """What to build: no traceback for a user's error, and a --debug flag that shows it."""
    docs = tmp_path / "docs.txt"
    docs.write_text("solar panels\n")
    result = CliRunner().invoke(app, ["--debug", "rerank", "-m", model_dir, "-q", "x", "--docs", str(docs),
                                      "-k", "-1"])
    assert result.exit_code == 2 and "Traceback" in result.output and "error: top_k" in result.output


def test_a_full_disk_from_any_command_is_one_line(monkeypatch, capsys):
    """Fault: a full disk (OSError ENOSPC) reaching the command line prints one error line, exit code 2."""
    def full():
        raise OSError(errno.ENOSPC, "could not write results.json: No space left on device")

    monkeypatch.setattr(cli, "app", full)
    monkeypatch.setitem(cli.DEBUG, "on", False)  # as a fresh process starts
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: [Errno 28] could not write results.json") and "Traceback" not in err


def test_a_hub_model_offline_fails_at_once_saying_how_to_get_it(monkeypatch, model_dir):
    """6: naming a hub model while offline waited 77 s and ended in an OSError traceback."""
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    started = time.monotonic()
    with pytest.raises(ValueError, match="huggingface-cli download someone/not-on-this-machine"):
        load_cross_encoder("someone/not-on-this-machine")
    assert time.monotonic() - started < 5
    load_cross_encoder(model_dir)  # a folder needs no hub


def test_a_hub_embedding_model_offline_fails_at_once_and_the_mine_command_says_so(monkeypatch, tmp_path, beir_dir):
    """6, for ensemble members: an embedding model named by hub id while offline fails at once, in one line."""
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    started = time.monotonic()
    with pytest.raises(ValueError, match="Embedding model 'someone/not-here' is not a folder"):
        get_embedder("someone/not-here")
    assert time.monotonic() - started < 5
    result = CliRunner().invoke(app, ["mine", "-d", str(beir_dir), "-o", str(tmp_path / "n.jsonl"), "--models",
                                      "someone/not-here,bm25", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "huggingface-cli download someone/not-here" in result.output


# --- run folders -------------------------------------------------------------------------------------------------------

def test_run_output_that_is_a_file_is_a_one_line_error(tmp_path, beir_dir):
    """6: `run -o EXISTING_FILE` gave a FileExistsError traceback."""
    target = tmp_path / "results.txt"
    target.write_text("mine")
    result = CliRunner().invoke(app, ["run", str(config_file(tmp_path, beir_dir)), "-o", str(target)])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    assert target.read_text() == "mine"


def test_a_run_is_not_written_over_someone_elses_files(tmp_path):
    """What to build: a run folder is new, empty or hardneg's; a folder of other files (config.json!) is refused."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}')
    with pytest.raises(ValueError, match="holds files hardneg did not write .*config.json"):
        RunFolder(folder).claim()
    assert (folder / "config.json").read_text() == '{"mine": true}'
    legacy = tmp_path / "old-run"  # a run made before the marker: its config.json says so
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"dataset": "x", "output": str(legacy), "strategies": []}))
    assert RunFolder(legacy).claim().marker.is_file()
    assert RunFolder(tmp_path / "new").claim().is_hardnegs()


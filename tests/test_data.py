from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest

from hardneg.data import DataError, download_beir, load_beir, resolve_dataset

from .conftest import write_beir


def test_loads_beir_layout(dataset):
    assert len(dataset.corpus) == 12 and len(dataset.queries) == 10
    assert dataset.corpus.full_text(0).startswith("Solar panels Solar panels convert")
    assert dataset.positives("train")["q5"] == ["d03", "d01"]
    assert dataset.all_positives()["q5"] == {"d01", "d03"}
    # q10 is in no qrels split: counted, not silently ignored
    assert dataset.report.skipped["query in no qrels split (unused)"] == 1


def test_malformed_jsonl_names_file_and_line(beir_dir):
    lines = (beir_dir / "corpus.jsonl").read_text().splitlines()
    lines[2] = '{"_id": "d03", "title": oops}'
    (beir_dir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: not valid JSON"):
        load_beir(beir_dir)


def test_missing_id_and_duplicate_id(beir_dir):
    path = beir_dir / "queries.jsonl"
    path.write_text(path.read_text() + json.dumps({"text": "no id"}) + "\n")
    with pytest.raises(DataError, match=r"queries\.jsonl:11: missing required field '_id'"):
        load_beir(beir_dir)
    path.write_text(path.read_text().replace('{"text": "no id"}', '{"_id": "q1", "text": "again"}'))
    with pytest.raises(DataError, match=r"queries\.jsonl:11: duplicate _id 'q1' \(first at line 1\)"):
        load_beir(beir_dir)


def test_missing_file_names_it(beir_dir):
    (beir_dir / "queries.jsonl").unlink()
    with pytest.raises(DataError, match=r"queries\.jsonl: file not found"):
        load_beir(beir_dir)
    with pytest.raises(DataError, match=r"dev\.tsv: file not found"):
        load_beir(write_beir(beir_dir.parent / "other"), splits=["dev"])


def test_empty_corpus_is_an_error(tmp_path):
    root = write_beir(tmp_path / "empty", docs=[("d1", "", "  ")], train=[], test=[])
    with pytest.raises(DataError, match="corpus is empty"):
        load_beir(root)


def test_unknown_ids_in_qrels_are_counted_skips(beir_dir):
    with (beir_dir / "qrels" / "train.tsv").open("a") as f:
        f.write("q1\tnope\t1\nghost\td01\t1\n")
    ds = load_beir(beir_dir)
    assert ds.report.skipped["qrels row with unknown document (train.tsv)"] == 1
    assert ds.report.skipped["qrels row with unknown query (train.tsv)"] == 1
    assert "nope" not in ds.qrels["train"]["q1"]


def test_bad_qrels_rows(beir_dir):
    qrels = beir_dir / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q7\td11\n")
    with pytest.raises(DataError, match=r"test\.tsv:6: expected 3 tab-separated columns"):
        load_beir(beir_dir)
    qrels.write_text(qrels.read_text().replace("q7\td11\n", "q7\td11\thigh\n"))
    with pytest.raises(DataError, match=r"test\.tsv:6: relevance 'high' is not a number"):
        load_beir(beir_dir)


def test_query_without_positive_is_reported(beir_dir):
    with (beir_dir / "qrels" / "test.tsv").open("a") as f:
        f.write("q10\td05\t0\n")
    ds = load_beir(beir_dir)
    assert ds.report.skipped["query with no positive (test)"] == 1
    assert "q10" not in ds.positives("test")


def test_resolve_from_data_dir_env(beir_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HARDNEG_DATA", str(beir_dir.parent))
    assert resolve_dataset("tiny") == beir_dir
    with pytest.raises(DataError, match="HARDNEG_DATA"):
        resolve_dataset("not-a-dataset")


def _serve(folder: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_checks_md5_and_unpacks(tmp_path, monkeypatch):
    source = write_beir(tmp_path / "src" / "scifact")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in source.rglob("*"):
            archive.write(path, Path("scifact") / path.relative_to(source))
    served = tmp_path / "www"
    served.mkdir()
    (served / "scifact.zip").write_bytes(buffer.getvalue())
    server = _serve(served)
    url = f"http://127.0.0.1:{server.server_port}/scifact.zip"
    try:
        monkeypatch.setitem(__import__("hardneg.data").data.BEIR_MD5, "scifact", "0" * 32)
        with pytest.raises(DataError, match="does not match the published"):
            download_beir("scifact", tmp_path / "data", url=url)
        assert not (tmp_path / "data" / "scifact").exists()
        monkeypatch.setitem(__import__("hardneg.data").data.BEIR_MD5, "scifact",
                            hashlib.md5(buffer.getvalue()).hexdigest())
        folder = download_beir("scifact", tmp_path / "data", url=url)
        assert len(load_beir(folder).corpus) == 12
    finally:
        server.shutdown()


def test_download_offline_says_where_to_put_files(tmp_path):
    with pytest.raises(DataError, match=r"offline, put the BEIR folder at .*scifact"):
        download_beir("scifact", tmp_path, url="http://127.0.0.1:9/scifact.zip", timeout=2)


def test_non_utf8_line_names_file_and_line(beir_dir):
    with (beir_dir / "queries.jsonl").open("ab") as f:
        f.write(b'{"_id": "q11", "text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:11: not valid UTF-8"):
        load_beir(beir_dir)


def test_fractional_and_repeated_relevance(beir_dir):
    qrels = beir_dir / "qrels" / "train.tsv"
    original = qrels.read_text()
    qrels.write_text(original + "q1\td02\t0.5\n")
    with pytest.raises(DataError, match=r"train\.tsv:8: relevance '0\.5' is not a whole number"):
        load_beir(beir_dir)
    qrels.write_text(original + "q1\td01\t2.0\nq1\td01\t0\n")
    ds = load_beir(beir_dir)
    assert ds.qrels["train"]["q1"]["d01"] == 2  # highest grade kept
    assert ds.report.skipped["repeated qrels row, highest grade kept (train.tsv)"] == 2


def test_download_refuses_to_overwrite_a_user_folder(tmp_path):
    (tmp_path / "scifact").mkdir()
    (tmp_path / "scifact" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="will not overwrite"):
        download_beir("scifact", tmp_path, url="http://127.0.0.1:9/scifact.zip", timeout=1)
    assert (tmp_path / "scifact" / "notes.txt").is_file()


def test_signature_follows_content_not_path_or_mtime(tmp_path):
    import os
    import shutil

    first = write_beir(tmp_path / "a")
    copy = tmp_path / "elsewhere" / "b"
    shutil.copytree(first, copy)  # a new folder, new mtimes: the same data
    os.utime(copy / "corpus.jsonl", (1, 1))
    assert load_beir(first).signature == load_beir(copy).signature
    with (copy / "corpus.jsonl").open("a") as f:
        f.write(json.dumps({"_id": "extra", "title": "", "text": "one more document"}) + "\n")
    assert load_beir(first).signature != load_beir(copy).signature
    # the qrels read are part of it: asking for one split only is other data
    assert load_beir(first, splits=["train"]).signature != load_beir(first).signature

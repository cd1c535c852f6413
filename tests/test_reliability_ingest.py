"""Issue 20, ingest: nothing a user gave is lost, ids survive the qrels, and every input from outside is bounded.

Each test is one case of the issue (or one found while fixing it); the docstring names it.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hardneg.cli import app
from hardneg.data import DataError, load_beir
from hardneg.ingest import FetchConfig, ingest
from hardneg.ingest import readers
from hardneg.ingest.fetch import check_urls, fetch_urls
from hardneg.ingest.pairs import read_qrels_pairs
from hardneg.io import MARKER_NAME

ROOT = Path(__file__).resolve().parents[1]


def docs_folder(root: Path, **files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {"a.txt": "Solar panels make power.", "b.txt": "Coffee beans are roasted."}).items():
        (root / name).write_text(text)
    return root


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def corpus_ids(out: Path) -> list[str]:
    return [json.loads(line)["_id"] for line in (out / "corpus.jsonl").read_text().splitlines()]


# --- case 1: the output folder ----------------------------------------------------------------------------------

def test_ingest_into_its_own_source_folder_is_refused_and_deletes_nothing(tmp_path):
    """1: `hardneg ingest d -o d` deleted the sources and every other file in d, and exited 0."""
    d = docs_folder(tmp_path / "d")
    (d / "notes.xlsx").write_bytes(b"keep me")
    before = tree(d)
    result = CliRunner().invoke(app, ["ingest", str(d), "-o", str(d), "--no-progress"])
    assert result.exit_code == 2 and "inside the output folder" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert tree(d) == before
    with pytest.raises(DataError, match="inside the output folder"):  # even with --overwrite
        ingest([d / "a.txt"], d, overwrite=True, progress=False)
    assert tree(d) == before


def test_output_pointing_at_a_data_folder_keeps_the_other_datasets(tmp_path):
    """1: -o pointing at a data folder deleted the other datasets in it."""
    data = tmp_path / "data"
    (data / "scifact" / "qrels").mkdir(parents=True)
    (data / "scifact" / "corpus.jsonl").write_text('{"_id": "x", "text": "t"}\n')
    before = tree(data)
    with pytest.raises(DataError, match="hardneg did not write.*--overwrite"):
        ingest([docs_folder(tmp_path / "src")], data, progress=False)
    assert tree(data) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


def test_output_that_is_a_file_is_refused_and_left_where_it_is(tmp_path):
    """1: -o at an existing file gave a NotADirectoryError traceback and renamed the file to a hidden .NAME.old-*."""
    target = tmp_path / "out.txt"
    target.write_text("mine")
    result = CliRunner().invoke(app, ["ingest", str(docs_folder(tmp_path / "src")), "-o", str(target),
                                      "--no-progress"])
    assert result.exit_code == 2 and "is a file" in result.output
    assert target.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "src"]


def test_overwrite_writes_only_the_datasets_files_into_a_users_folder(tmp_path):
    """1: with --overwrite, only hardneg's own files are written; the user's files stay."""
    out = tmp_path / "mixed"
    out.mkdir()
    (out / "notes.xlsx").write_bytes(b"keep")
    result = CliRunner().invoke(app, ["ingest", str(docs_folder(tmp_path / "src")), "-o", str(out), "--overwrite",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "notes.xlsx").read_bytes() == b"keep"
    assert sorted(corpus_ids(out)) == ["a.txt", "b.txt"] and (out / MARKER_NAME).is_file()


def test_reingest_replaces_its_own_files_and_keeps_a_file_the_user_added(tmp_path):
    """1: a folder hardneg wrote is recognised by its marker; a re-ingest replaces hardneg's files only."""
    out = tmp_path / "ds"
    (tmp_path / "p1.csv").write_text("query,positive\nsolar,a.txt\ncoffee,b.txt\n")
    ingest([docs_folder(tmp_path / "src")], out, pairs=[tmp_path / "p1.csv"], test_fraction=0.5, progress=False)
    assert sorted(p.name for p in (out / "qrels").iterdir()) == ["test.tsv", "train.tsv"]
    (out / "my-notes.md").write_text("mine")
    ingest([docs_folder(tmp_path / "src2", **{"c.txt": "Wind turbines."})], out, progress=False)
    assert corpus_ids(out) == ["c.txt"] and (out / "my-notes.md").read_text() == "mine"
    assert not (out / "qrels" / "train.tsv").exists() and not (out / "queries.jsonl").exists()  # old ones: gone
    assert json.loads((out / MARKER_NAME).read_text())["files"] == ["corpus.jsonl", "ingest_report.json"]


def test_an_empty_folder_and_a_dataset_from_before_the_marker_are_written_into(tmp_path):
    """1: new, empty, and datasets written by earlier versions (no marker, an ingest_report.json) are fine."""
    empty = tmp_path / "empty"
    empty.mkdir()
    ingest([docs_folder(tmp_path / "src")], empty, progress=False)
    assert sorted(corpus_ids(empty)) == ["a.txt", "b.txt"]
    (empty / MARKER_NAME).unlink()  # as an earlier version left it
    ingest([docs_folder(tmp_path / "src2", **{"c.txt": "Wind turbines."})], empty, progress=False)
    assert corpus_ids(empty) == ["c.txt"] and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_output_inside_a_source_is_not_read_as_a_source(tmp_path):
    """Found here: an output inside the source folder would be read back as input on every re-ingest."""
    src = docs_folder(tmp_path / "src")
    ingest([src], src / "dataset", progress=False)
    again = ingest([src], src / "dataset", progress=False)
    assert again.report.files_read == 2 and sorted(corpus_ids(src / "dataset")) == ["a.txt", "b.txt"]


# --- case 3: ids in the qrels -------------------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["\n", "\t"], ids=["newline", "tab"])
def test_a_file_name_with_a_newline_or_tab_keeps_its_label(tmp_path, char):
    """3: a newline in a file name made the dataset fail to load; a tab silently dropped that label."""
    src = docs_folder(tmp_path / "src", **{f"odd{char}name.txt": "Solar panels make power.",
                                           "b.txt": "Coffee beans are roasted."})
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"query": "solar", "positive": f"odd{char}name.txt"}) + "\n"
                                          + json.dumps({"query": "coffee", "positive": "b.txt"}) + "\n")
    result = ingest([src], tmp_path / "out", pairs=[tmp_path / "pairs.jsonl"], test_fraction=0.5, progress=False)
    data = load_beir(tmp_path / "out")
    escaped = "odd%0Aname.txt" if char == "\n" else "odd%09name.txt"
    assert escaped in data.corpus.index and result.report.ids_escaped == 1
    labelled = {d for split in data.qrels.values() for docs in split.values() for d in docs}
    assert labelled == {escaped, "b.txt"} and not data.report.skipped.get("qrels row with unknown document (test.tsv)")


def test_a_tab_inside_an_id_of_a_qrels_file_is_an_error_not_a_trec_row(tmp_path, beir_dir):
    """3: a tab inside an id in a hand-made qrels file was read as TREC format and the label dropped."""
    (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq6\td08\t1\nq7\td\t11\t1\n")
    with pytest.raises(DataError, match=r"test.tsv:3: expected 3 tab-separated columns"):
        load_beir(beir_dir)
    (beir_dir / "qrels" / "test.tsv").write_text("q6\td\t08\t1\n")  # one row: the iteration column gives it away
    with pytest.raises(DataError, match=r"test.tsv:1: column 2 of TREC qrels is the iteration"):
        load_beir(beir_dir)
    (tmp_path / "q.jsonl").write_text('{"_id": "q7", "text": "camels"}\n')
    (tmp_path / "hand.tsv").write_text("q7\t0\td11\t1\nq7\td\t11\t1\n")
    with pytest.raises(DataError, match=r"hand.tsv:2: column 2 of TREC qrels"):
        read_qrels_pairs(tmp_path / "hand.tsv", tmp_path / "q.jsonl")


def test_trec_qrels_files_still_load(beir_dir):
    """3 (kept): a whole TREC qrels file (qid, iteration, docid, rel) loads as before."""
    (beir_dir / "qrels" / "test.tsv").write_text("q6\t0\td08\t1\nq7\tQ0\td11\t2\n")
    assert load_beir(beir_dir).qrels["test"] == {"q6": {"d08": 1}, "q7": {"d11": 2}}


def test_a_query_id_with_a_tab_is_escaped(tmp_path):
    """3: query ids given in a pairs file are escaped like document ids."""
    src = docs_folder(tmp_path / "src")
    (tmp_path / "p.jsonl").write_text(json.dumps({"query": "solar", "positive": "a.txt", "query_id": "q\t1"}) + "\n")
    ingest([src], tmp_path / "out", pairs=[tmp_path / "p.jsonl"], test_fraction=0.0, progress=False)
    assert load_beir(tmp_path / "out").qrels["train"] == {"q%091": {"a.txt": 1}}


# --- case 4: bounds on what comes from outside ------------------------------------------------------------------

class Trickle(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/slow"):  # one byte at a time: each read is quick, the whole never ends
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(200):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
            return
        body = b"Plain notes about the agent, long enough to keep."
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = QuietServer(("127.0.0.1", 0), Trickle)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_trickling_server_is_cut_off_at_the_deadline(server):
    """4: a server sending a byte every few seconds held ingest forever (the timeout bounds each read only)."""
    started = time.monotonic()
    docs, skips = fetch_urls([f"{server}/slow"], FetchConfig(timeout=5, deadline=0.5, retries=1, backoff=0.01),
                             progress=False)
    assert time.monotonic() - started < 4
    assert not docs and [s.reason for s in skips] == ["timeout"] and "deadline" in skips[0].detail


def docx_bytes(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", f"<w:document><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p>"
                                              "</w:body></w:document>")
    return buffer.getvalue()


def test_a_docx_that_unpacks_to_far_more_is_skipped_before_extraction(tmp_path, monkeypatch):
    """4: a 694 KB DOCX under the size cap expanded to a 313 MB document (116 s, 5.6 GB resident)."""
    monkeypatch.setattr(readers, "SMALL_EXPANDED", 10_000)  # the same rule at a test's scale
    src = tmp_path / "src"
    src.mkdir()
    (src / "bomb.docx").write_bytes(docx_bytes("a" * 2_000_000))
    docs_folder(src, **{"ok.txt": "Fine text."})
    result = ingest([src], tmp_path / "out", progress=False)
    assert [(Path(s.source).name, s.reason) for s in result.report.skipped] == [("bomb.docx", "expands too much")]
    with pytest.raises(readers.ExtractionError, match="unpack to 2000"):
        readers.check_expansion((src / "bomb.docx").read_bytes())


def test_text_past_the_cap_is_a_skip_with_its_own_reason(tmp_path):
    """4: a cap on extracted text per document, with its own reason in the report."""
    src = docs_folder(tmp_path / "src", **{"long.txt": "word " * 400, "short.txt": "A short one."})
    result = ingest([src], tmp_path / "out", max_chars=1000, progress=False)
    assert result.report.skip_counts() == {"too much text": 1} and corpus_ids(tmp_path / "out") == ["short.txt"]
    assert json.loads((tmp_path / "out" / "ingest_report.json").read_text())["skipped_counts"] == {
        "too much text": 1}


def test_fetch_and_size_options_are_checked_before_any_work(tmp_path):
    """Fail early: a negative timeout, zero concurrency or a threshold out of range is a one-line error."""
    src = docs_folder(tmp_path / "src")
    for args, message in ((["--fetch.timeout", "-1"], "timeout must be a positive"),
                          (["--fetch.concurrency", "0"], "concurrency must be a whole number of at least 1"),
                          (["--near-threshold", "1.5"], "near_threshold must be in"),
                          (["--dedup", "exakt"], "dedup must be one of"),
                          (["--max-chars", "0"], "must be positive")):
        result = CliRunner().invoke(app, ["ingest", str(src), "-o", str(tmp_path / "out"), "--no-progress", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert not (tmp_path / "out").exists()


# --- case 6: smaller ones -------------------------------------------------------------------------------------------

def test_a_symlink_out_of_the_folder_is_skipped_unless_allowed(tmp_path):
    """6: a symlink inside an ingested folder pointing outside it (e.g. /etc/passwd) was ingested."""
    secret = docs_folder(tmp_path / "outside", **{"secret.txt": "Private words."}) / "secret.txt"
    src = docs_folder(tmp_path / "src")
    (src / "link.txt").symlink_to(secret)
    (src / "linked-dir").symlink_to(secret.parent, target_is_directory=True)
    (src / "inside.txt").symlink_to(src / "a.txt")
    result = ingest([src], tmp_path / "out", dedup="none", progress=False)
    reasons = {Path(s.source).name: s.reason for s in result.report.skipped}
    assert reasons == {"link.txt": "symlink outside the folder", "linked-dir": "symlink outside the folder"}
    assert sorted(corpus_ids(tmp_path / "out")) == ["a.txt", "b.txt", "inside.txt"]
    allowed = ingest([src], tmp_path / "out2", dedup="none", follow_symlinks=True, progress=False)
    assert {"link.txt", "linked-dir/secret.txt"} <= set(corpus_ids(tmp_path / "out2")) and not allowed.report.skipped


def test_a_broken_symlink_is_a_counted_skip(tmp_path):
    """Found here: a dangling link was silently ignored; every input is kept or skipped with a reason."""
    src = docs_folder(tmp_path / "src")
    (src / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    result = ingest([src], tmp_path / "out", progress=False)
    assert result.report.skip_counts() == {"broken symlink": 1} and result.report.files_read == 3


def test_the_same_page_twice_in_a_url_list_is_fetched_once(server, tmp_path):
    """6: a URL list with /ok and /ok#frag aborted the whole ingest (Two documents share the id)."""
    (tmp_path / "urls.txt").write_text(f"{server}/ok\n{server}/ok#frag\n")
    result = ingest([], tmp_path / "out", urls=tmp_path / "urls.txt", fetch=FetchConfig(timeout=2, retries=0),
                    progress=False)
    assert result.report.urls_fetched == 1 and result.report.skip_counts() == {"duplicate URL": 1}
    assert result.report.skipped[0].source.endswith("urls.txt:2")


def test_a_malformed_url_is_a_skip_naming_its_line(server, tmp_path):
    """6: one malformed URL (http://[::1) aborted the ingest after all fetches, naming no line."""
    (tmp_path / "urls.txt").write_text(f"# list\n{server}/ok\nhttp://[::1\nhttp:///nohost\n")
    result = ingest([], tmp_path / "out", urls=tmp_path / "urls.txt", fetch=FetchConfig(timeout=2, retries=0),
                    progress=False)
    assert [(s.source.rsplit("/", 1)[-1], s.reason) for s in result.report.skipped] == [
        ("urls.txt:3", "malformed URL"), ("urls.txt:4", "malformed URL")]
    assert corpus_ids(tmp_path / "out") == [f"{server}/ok"]
    assert check_urls([("http://a:99999/", "x:1")])[1][0].reason == "malformed URL"


# --- faults: a kill mid-replace, a full disk --------------------------------------------------------------------

def full_disk(fdopen):
    """``os.fdopen`` whose files raise ENOSPC on write, as a full disk does."""
    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    return lambda *args, **kwargs: Full(fdopen(*args, **kwargs))


KILL_MID_SWAP = """
import os, signal, sys
from pathlib import Path
from hardneg.ingest import ingest, output
real = os.rename
moved = []
def rename(a, b):
    real(a, b)
    moved.append(b)
    if Path(b).name.endswith(".old"):  # the old dataset is aside, the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
output.Path.rename = lambda self, target: rename(self, target)
ingest([Path(sys.argv[1])], Path(sys.argv[2]), progress=False)
"""


def test_a_kill_mid_replace_loses_nothing_and_the_next_ingest_cleans_up(tmp_path):
    """Fault injection: ingest killed between moving the old dataset aside and moving the new one in."""
    out = tmp_path / "ds"
    ingest([docs_folder(tmp_path / "v1")], out, progress=False)
    before = tree(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", KILL_MID_SWAP, str(docs_folder(tmp_path / "v2", **{
        "c.txt": "Wind turbines."})), str(out)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not out.exists() and any(p.name.endswith(".old") for p in tmp_path.iterdir())  # what the kill left
    from hardneg.ingest.output import recover

    recover(out)  # what the next ingest does first: the old dataset comes back
    assert tree(out) == before and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ingest([tmp_path / "v2"], out, progress=False)
    assert corpus_ids(out) == ["c.txt"]


def test_a_full_disk_during_ingest_leaves_the_old_dataset_whole(tmp_path, monkeypatch):
    """Fault injection: the disk fills while the new dataset is written (a patched write raising ENOSPC)."""
    out = tmp_path / "ds"
    ingest([docs_folder(tmp_path / "v1")], out, progress=False)
    before = tree(out)

    src = docs_folder(tmp_path / "v2", **{"c.txt": "Wind turbines."})
    monkeypatch.setattr(os, "fdopen", full_disk(os.fdopen))
    with pytest.raises(OSError, match="could not write .*corpus.jsonl: No space left"):
        ingest([src], out, progress=False)
    monkeypatch.undo()
    assert tree(out) == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

"""Ingest over the fixture tree in tests/fixtures/ingest: sources, cleaning, duplicates, pairs, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardneg.data import DataError, load_beir
from hardneg.ingest import Columns, ingest
from hardneg.ingest.clean import clean_text, repeated_lines
from hardneg.ingest.dedup import find_duplicates
from hardneg.ingest.pairs import Resolver, read_qrels_pairs, seeded_split
from hardneg.ingest.documents import ExtractionError
from hardneg.ingest.files import read_file
from hardneg.ingest.ids import normalise_url
from hardneg.ingest.readers import decode_text

FIX = Path(__file__).parent / "fixtures" / "ingest"
DOCS = FIX / "docs"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest") / "data"
    result = ingest([DOCS], out, pairs=[FIX / "pairs.csv", FIX / "pairs.jsonl"], progress=False)
    return result, out


def corpus_rows(out: Path) -> dict[str, dict]:
    return {r["_id"]: r for r in map(json.loads, (out / "corpus.jsonl").read_text().splitlines())}


def test_every_file_is_kept_or_skipped_with_its_reason(ingested):
    result, out = ingested
    report = result.report
    reasons = {Path(s.source).name: s.reason for s in report.skipped}
    assert reasons == {"blank.txt": "empty after extraction", "empty.md": "empty after extraction",
                       "blob.txt": "binary file", "logo.png": "unsupported type", "broken.pdf": "unreadable",
                       "locked.pdf": "encrypted PDF", "release-2-0.html": "duplicate"}
    assert report.files_read == 16
    assert report.documents_kept == len(corpus_rows(out)) == 9
    saved = json.loads((out / "ingest_report.json").read_text())
    assert saved["skipped_counts"]["duplicate"] == 1 and saved["documents_kept"] == 9


def test_extraction_per_type(ingested):
    _, out = ingested
    rows = corpus_rows(out)
    install = rows["guide/install.html"]
    assert install["title"] == "Installing the agent"
    assert "systemctl" in install["text"]
    for junk in ("cookies", "Home", "Copyright"):
        assert junk not in install["text"]
    pdf = rows["manuals/thermostat.pdf"]
    assert pdf["metadata"]["pages"] == 3 and pdf["title"] == "Thermostat manual"
    assert "error codes" in pdf["text"] and "batteries" in pdf["text"]
    assert pdf["text"][pdf["metadata"]["page_starts"][1]:].startswith("Page two")
    assert rows["faq.md"]["title"] == "Frequently asked questions"
    assert rows["policy.docx"]["title"] == "Expense policy" and "Receipts" in rows["policy.docx"]["text"]
    legacy = rows["legacy.txt"]
    assert "crêpes" in legacy["text"] and legacy["metadata"]["encoding"] == "cp1252"
    assert rows["notes.txt"]["text"].count("  ") == 0  # whitespace normalised
    assert {"source", "type", "length_chars", "length_words"} <= set(install["metadata"])


def test_pairs_resolve_paths_ids_and_follow_duplicates(ingested):
    result, out = ingested
    data = load_beir(out)
    assert not data.report.skipped or set(data.report.skipped) == {"query in no qrels split (unused)"}
    qrels = {s: {(q, d) for q, docs in data.qrels[s].items() for d in docs} for s in data.qrels}
    every = set().union(*qrels.values())
    # c1 clicked two pages; one of them was removed as a near duplicate and follows to the kept copy.
    assert ("c1", "news/release-2-0-copy.html") in qrels["test"] and ("c1", "guide/install.html") in qrels["test"]
    assert ("c2", "notes.txt") in qrels["train"]
    # "docs/guide/configure.html" is relative to the folder's parent: still found.
    assert any(d == "guide/configure.html" for _, d in every)
    internet = [d for q, d in every if data.queries.text(q) == "does it work without internet"]
    assert sorted(internet) == ["faq.md", "notes.txt"]  # a click log row per clicked page, one query
    report = result.report
    assert report.pairs_to_duplicate == 1
    assert [s.detail for s in report.pair_skips] == ["missing/page.html"]


def test_split_is_seeded_and_stable():
    ids = [f"q{i}" for i in range(50)]
    test = seeded_split(ids, 0.2, 7)
    assert len(test) == 10 and test == seeded_split(list(reversed(ids)), 0.2, 7)
    assert test != seeded_split(ids, 0.2, 8)


def test_strict_fails_on_first_skip(tmp_path):
    with pytest.raises(DataError, match="--strict"):
        ingest([DOCS], tmp_path / "out", strict=True, progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written
    ingest([DOCS / "guide"], tmp_path / "ok", strict=True, progress=False)
    assert (tmp_path / "ok" / "corpus.jsonl").is_file()


def test_tabular_and_hash_ids(tmp_path):
    result = ingest([FIX / "docs.csv"], tmp_path / "t", progress=False)
    rows = corpus_rows(tmp_path / "t")
    assert set(rows) == {"kb-1", "kb-2"}
    assert rows["kb-1"]["metadata"]["url"] == "https://intranet.example.com/kb/vpn"
    assert rows["kb-1"]["metadata"]["team"] == "it"
    assert [s.reason for s in result.report.skipped] == ["empty after extraction"]
    assert result.report.skipped[0].source.endswith("docs.csv:4")
    ingest([FIX / "docs.csv"], tmp_path / "h", id_mode="hash", columns=Columns(id=None), progress=False)
    assert all(i.startswith("h") and len(i) == 17 for i in corpus_rows(tmp_path / "h"))


def test_hash_ids_collapse_identical_files(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "one.md").write_text("# Same\n\nIdentical body text.")
    (src / "a" / "two.md").write_text("# Same\n\nIdentical body text.")
    (tmp_path / "pairs.csv").write_text("query,positive\nsame,one.md\n")
    result = ingest([src], tmp_path / "o", id_mode="hash", pairs=[tmp_path / "pairs.csv"], progress=False)
    assert result.report.documents_kept == 1
    assert [s.reason for s in result.report.skipped] == ["duplicate"]
    assert result.report.pairs_kept == 1  # the path of the dropped copy still finds the kept one


def test_rewrite_replaces_the_dataset_atomically(tmp_path):
    out = tmp_path / "d"
    ingest([DOCS / "guide"], out, progress=False)
    ingest([DOCS / "manuals"], out, progress=False)
    assert set(corpus_rows(out)) == {"thermostat.pdf"}
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary or old folder left behind


def test_bad_pairs_file_names_the_line(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("query,positive\nfine,faq.md\n,faq.md\n")
    with pytest.raises(DataError, match=r"pairs.csv:3: empty 'query'"):
        ingest([DOCS], tmp_path / "o", pairs=[bad], progress=False)
    wrong = tmp_path / "cols.csv"
    wrong.write_text("q,doc\nx,faq.md\n")
    with pytest.raises(DataError, match="needs columns 'query' and 'positive'"):
        ingest([DOCS], tmp_path / "o", pairs=[wrong], progress=False)


def test_beir_and_trec_qrels(tmp_path):
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "install"}\n{"_id": "2", "text": "faq"}\n')
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\tguide/install.html\t2\n2\tfaq.md\t0\n")
    (tmp_path / "run.qrels").write_text("1 0 guide/install.html 1\n2 0 faq.md 1\n")
    beir = read_qrels_pairs(tmp_path / "qrels" / "test.tsv", tmp_path / "queries.jsonl")
    assert [(p.query_id, p.positive, p.grade, p.split) for p in beir] == [("1", "guide/install.html", 2, "test")]
    trec = read_qrels_pairs(tmp_path / "run.qrels", tmp_path / "queries.jsonl")
    assert [(p.query_id, p.split) for p in trec] == [("1", None), ("2", None)]
    ingest([DOCS / "guide", DOCS / "faq.md"], tmp_path / "o", qrels=tmp_path / "run.qrels",
           queries=tmp_path / "queries.jsonl", test_fraction=0.5, progress=False)
    data = load_beir(tmp_path / "o")
    assert sum(len(q) for q in data.qrels.values()) == 2


def test_clean_text_and_repeated_lines():
    raw = "We use cookies to improve your experience. Accept all cookies\n\u00a0Hello\u200b   world\n\n\n\nﬁne"
    assert clean_text(raw) == "Hello world\n\nfine"
    texts = ["Home\nDocs\nBody one", "Home\nDocs\nBody two", "Home\nDocs\nBody three", "Other"]
    assert repeated_lines(texts) == {"Home", "Docs"}
    assert clean_text(texts[0], repeated_lines(texts)) == "Body one"
    assert repeated_lines(texts[:2]) == frozenset()  # too few documents to call anything boilerplate


def test_duplicates_exact_and_near():
    base = " ".join(f"word{i}" for i in range(60))
    texts = [base, base.upper() + "!", base.replace("word59", "other"), "something else entirely here"]
    groups = find_duplicates(["a", "b", "c", "d"], texts)
    assert [(g.kept, g.removed) for g in groups] == [("a", ("b", "c"))]
    assert groups[0].kind == "near"
    assert [g.kind for g in find_duplicates(["a", "b"], texts[:2])] == ["exact"]
    assert find_duplicates(["a", "c"], [texts[0], texts[2]], near=False) == []


def test_decoding_and_read_errors(tmp_path):
    assert decode_text("é".encode("utf-8-sig")) == ("é", "utf-8")
    with pytest.raises(ExtractionError, match="binary"):
        decode_text(b"\x00\x01\x02")
    big = tmp_path / "big.txt"
    big.write_text("x" * 100)
    with pytest.raises(ExtractionError, match="too large"):
        read_file(big, "big.txt", max_bytes=10)


def test_url_normalisation_and_resolver():
    assert normalise_url("HTTPS://Example.com:443/a/b/?x=1#frag") == "https://example.com/a/b?x=1"
    assert normalise_url("http://example.com") == "http://example.com/"
    resolver = Resolver({"a": "a", "b": "b"}, {"b": "a"})
    assert resolver.resolve("b") == ("b", "a") and resolver.resolve("./a") == ("a", "a")
    assert resolver.resolve("zzz") is None


def test_cli_ingest(tmp_path):
    from typer.testing import CliRunner

    from hardneg.cli import app

    result = CliRunner().invoke(app, ["ingest", str(DOCS / "guide"), "--pairs", str(FIX / "pairs.csv"),
                                      "--output", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "3 kept" in result.output and "Dataset written" in result.output
    strict = CliRunner().invoke(app, ["ingest", str(DOCS), "-o", str(tmp_path / "s"), "--strict", "--no-progress"])
    assert strict.exit_code == 2 and "--strict" in strict.output

"""End to end on the tiny fixture: train a few steps with a listwise loss, evaluate, write the report, and check
the page in headless Chromium (Debian's `chromium`; .ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const out = document.createElement('pre');
  out.id = 'img' + 'check';  // spelled apart so the script's own text never matches the result's tag
  out.textContent = JSON.stringify(imgs);
  document.body.appendChild(out);
});</script>"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_bert):
    from hardneg import load_config, run

    from .conftest import write_beir

    tmp = tmp_path_factory.mktemp("report")
    beir = write_beir(tmp / "tiny")
    cfg = {"dataset": str(beir), "output": str(tmp / "run"), "seed": 3, "dev_fraction": 0.4,
           "ensemble": ["hash", "bm25"], "progress": False, "mining": {"num_negatives": 2, "depth": 8},
           "strategies": ["ensemble"],
           "train": {"base_model": tiny_bert, "loss": "lambda", "batch_size": 2, "max_length": 32,
                     "learning_rate": 1e-3, "dev_evals": 2, "dev_depth": 4, "augment_title_pairs": 3},
           "evaluate": {"depth": 10, "rerank_depth": 5, "batch_size": 16, "bootstrap": 200,
                        "extra_rerankers": [tiny_bert], "interpolate": True, "include_base": True}}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run(load_config(path))
    return tmp / "run"


def test_training_records_dev_checkpoint_and_model_card(run_dir, tiny_bert):
    from sentence_transformers import CrossEncoder

    model = run_dir / "strategies" / "ensemble" / "model"
    CrossEncoder(str(model))  # loads in plain sentence-transformers
    info = json.loads((model / "hardneg_training.json").read_text())
    assert info["loss"] == "lambda" and info["augmented_pairs"] == 3
    assert info["dev"]["queries"] >= 1 and info["dev"]["curve"] and info["dev"]["best"] is not None
    card = (model / "README.md").read_text()
    assert "## Trained with hardneg" in card and "strategy `ensemble`" in card and '"loss": "lambda"' in card
    analysis = json.loads((run_dir / "analysis.json").read_text())["first_stages"]["ensemble"]
    # an external re-ranker (any CrossEncoder folder) is evaluated on the same footing
    assert {"first stage", "base", "ensemble", "ensemble + first stage", tiny_bert} <= set(analysis["per_query"])
    for low, high in (analysis["ci"][s]["ndcg@10"] for s in analysis["ci"]):
        assert 0.0 <= low <= high <= 1.0
    assert all(c["p_adjusted"] >= c["p_value"] for c in analysis["comparisons"])
    assert (run_dir / "runs" / "ensemble.ensemble+interpolated.test.trec").is_file()


def test_report_files(run_dir):
    from typer.testing import CliRunner

    from hardneg.cli import app

    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    page = (run_dir / "report.html").read_text()
    md = (run_dir / "report.md").read_text()
    assert "<table" in page and "First stage: ensemble" in page and "Examples of mined negatives" in page
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)  # self-contained: no external asset
    images = re.findall(r"!\[[^]]*\]\((report/[^)]+\.png)\)", md)
    assert images and all((run_dir / p).is_file() for p in images)
    assert page.count("data:image/png;base64,") == len(images)
    assert "| a | first stage alone |" in md and '"loss": "lambda"' in md
    # what the run hands over comes first, with its dev evidence and its test comparison
    assert md.index("## The trained system") < md.index("## First stage: ensemble")
    assert "Chosen on dev queries only" in md and "| metric | first stage | trained system |" in md
    # every interpolation weight comes with the dev curve it was chosen from, drawn in the report
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    interpolated = [r for r in rows if r["mode"] == "interpolated"]
    assert interpolated
    for row in interpolated:
        weights = [a for a, _ in row["alpha_curve"]]
        assert weights == sorted(weights) and len(weights) == 11 and row["alpha"] in weights
        assert max(v for _, v in row["alpha_curve"]) == dict(map(tuple, row["alpha_curve"]))[row["alpha"]]
    assert "## Interpolation weights" in md and "report/interpolation.png" in md
    assert "### Short and long documents (ensemble)" in md  # extra row groups (issue 3's length split)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_renders_in_chromium(run_dir, tmp_path):
    from hardneg.report import build_report

    files = build_report(run_dir)
    probe = tmp_path / "probe.html"
    probe.write_text(files.html.read_text().replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table" in dom.stdout and "First stage: ensemble" in dom.stdout
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', dom.stdout)
    assert found, "the page's load handler did not run"
    images = json.loads(found.group(1))
    assert len(images) == len(files.images) and images
    assert all(done and width > 0 and height > 0 for done, width, height in images), images

    shot = tmp_path / "shot.png"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1000,1400",
                           f"--screenshot={shot}", files.html.as_uri()], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # a rendered page, not a blank one


def test_migrate_rebuilds_the_analysis_of_an_older_run(run_dir, tmp_path):
    """Runs made before analysis.json existed: the report asks for `hardneg migrate`, which rebuilds it from the TREC
    files, score stores and qrels."""
    from typer.testing import CliRunner

    from hardneg.cli import app
    from hardneg.report import build_report, migrate

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    original = json.loads((old / "analysis.json").read_text())["first_stages"]["ensemble"]
    (old / "analysis.json").unlink()
    for trec in (old / "runs").glob("*+interpolated.*.trec"):
        trec.unlink()  # older runs wrote none; migrate re-derives them from scores and the tuned weight
    with pytest.raises(FileNotFoundError, match="hardneg migrate"):
        build_report(old)
    assert not (old / "analysis.json").exists()  # the report rebuilds nothing by itself
    result = CliRunner().invoke(app, ["migrate", str(old)])
    assert result.exit_code == 0, result.output
    rebuilt = json.loads((old / "analysis.json").read_text())
    assert rebuilt["rebuilt_from_trec"] and rebuilt["first_stages"]["ensemble"]["per_query"] == original["per_query"]
    assert not migrate(old).written  # an existing analysis is kept unless forced
    assert build_report(old).images


def test_migrate_needs_a_run_folder(tmp_path):
    from typer.testing import CliRunner

    from hardneg.cli import app

    result = CliRunner().invoke(app, ["migrate", str(tmp_path)])
    assert result.exit_code == 2 and "no results" in result.output


# ---------------------------------------------------------------------------------------------------------------
# The document model and its two renderers.

def _cells_markdown(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[re.sub(r"\*\*|<sup>.*?</sup>", "", c) for c in line[2:-2].split(" | ")] for line in lines]


def _cells_html(text: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", text)
    return [[re.sub(r"<sup>.*?</sup>|<[^>]+>", "", c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)]
            for row in rows]


def test_a_table_renders_the_same_cells_in_both_formats(tmp_path):
    from hardneg.report.document import Cell, Report, Section, Table
    from hardneg.report.markdown import render_markdown
    from hardneg.report.page import render_html

    table = Table.of(["", "system", "nDCG@10"], [["a", "first stage alone", Cell("0.500", marks="")],
                                                 ["b", "ensemble", Cell("0.612", bold=True, marks="a")]])
    report = Report("title", [Section("First stage: x", [table])])
    md, page = render_markdown(report, tmp_path), render_html(report)
    expected = [["", "system", "nDCG@10"], ["a", "first stage alone", "0.500"], ["b", "ensemble", "0.612"]]
    assert _cells_markdown(md) == _cells_html(page) == expected
    assert "| b | ensemble | **0.612**<sup>a</sup> |" in md
    assert "<td><b>0.612</b><sup>a</sup></td>" in page and '<table class="results">' in page


def test_renderers_nest_headings_escape_html_and_place_figures(tmp_path):
    from hardneg.report.document import Bold, Code, Figure, Paragraph, Report, Section
    from hardneg.report.markdown import render_markdown
    from hardneg.report.page import render_html

    png = tmp_path / "report" / "x.png"
    png.parent.mkdir()
    png.write_bytes(b"\x89PNG fake")
    report = Report("hardneg report: <d>", [
        Paragraph.of("note <b>", css_class="note"),
        Section("Outer", [Section("Inner", [Paragraph.of(Bold("Query"), ": q & a")]), Figure(png, "a figure"),
                          Figure(png, "the same figure again")]),
        Code('{"a": 1}', "json")])
    md = render_markdown(report, tmp_path)
    assert md.startswith("# hardneg report: <d>\n\nnote <b>\n\n## Outer\n\n### Inner\n\n**Query**: q & a\n")
    assert "![a figure](report/x.png)" in md and md.endswith('```json\n{"a": 1}\n```\n')
    page = render_html(report)
    assert "<title>hardneg report: &lt;d&gt;</title>" in page and "<p class='note'>note &lt;b&gt;</p>" in page
    assert "<h2>Outer</h2>\n<h3>Inner</h3>\n<p><b>Query</b>: q &amp; a</p>" in page
    assert page.count("data:image/png;base64,") == 2 and '<pre>{&quot;a&quot;: 1}</pre>' in page
    assert report.figures() == [png]

"""The comparison table, shaped like the paper's: one row per re-ranker (by the negatives it was trained on)."""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .evaluate import Row
from .io import atomic_write, read_json, read_jsonl, write_json

logger = logging.getLogger(__name__)

METRIC_LABELS = {"mrr@3": "MRR@3", "mrr@10": "MRR@10", "ndcg@10": "nDCG@10", "precision@1": "P@1",
                 "precision@5": "P@5", "recall@10": "R@10", "recall@100": "R@100", "map": "MAP"}


def _label(row: Row) -> str:
    if row.mode == "first stage":
        return f"first stage alone ({row.first_stage})"
    name = "none (base model, no fine-tuning)" if row.reranker == "base" else row.reranker
    if row.mode == "interpolated":
        return f"{name} + first stage (alpha={row.alpha:.1f})"
    return name


def results_table(rows: list[Row], metrics: list[str], first_stage: str) -> str:
    header = ["negatives"] + [METRIC_LABELS.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode in ("first stage", "rerank", "interpolated"):
        for row in rows:
            if row.first_stage == first_stage and row.mode == mode:
                lines.append("| " + " | ".join([_label(row)] + [f"{row.metrics[m]:.3f}" for m in metrics]) + " |")
    return "\n".join(lines)


def results_markdown(rows: list[Row], metrics: list[str], settings: dict, mining: dict) -> str:
    parts = [f"# hardneg results: {settings['dataset']}", "",
             (f"{settings['train_queries']} training queries ({settings['train_pairs']} query-positive pairs), "
             f"{settings['dev_queries']} dev queries for the interpolation weight; evaluated on "
             f"`{settings['config']['evaluate']['split']}`. Re-rankers re-score the top "
             f"{settings['config']['evaluate']['rerank_depth']} of each first stage. "
             f"Data: {settings.get('data', 'nothing skipped')}."), ""]
    for first_stage in dict.fromkeys(r.first_stage for r in rows):
        parts += [f"## First stage: {first_stage}", "", results_table(rows, metrics, first_stage), ""]
    parts += ["## Mining", "", "| strategy | members | pairs | removed by rule | random fill | short pairs |",
              "|---|---|---|---|---|---|"]
    for name, info in mining.items():
        s = info["summary"]
        removed = ", ".join(f"{k}: {v}" for k, v in s["removed"].items()) or "-"
        parts.append(f"| {name} | {'+'.join(info['members']) or 'random'} | {s['pairs']} | {removed} | "
                     f"{s['random_fill']} | {s['short_pairs']} |")
    parts += ["", "## Settings", "", "```json", json.dumps(settings["config"], indent=2), "```", ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# ``hardneg report RUN_DIR``: a self-contained HTML page and a Markdown file (+ PNGs in RUN_DIR/report/).

PRIMARY = "ndcg@10"
MAX_EXAMPLES = 3
LONG_TEXT = 260


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    images: list[Path]


def system_label(system: str, row: Row | None = None) -> str:
    """How a system of analysis.json reads in the report."""
    if system == "first stage":
        return "first stage alone"
    if system == "base":
        return "none (base model, no fine-tuning)"
    if system.endswith(" + first stage") and row is not None and row.alpha is not None:
        return f"{system} (alpha={row.alpha:.1f})"
    return system


def _system_of(row: Row) -> str:
    if row.mode == "first stage":
        return "first stage"
    return f"{row.reranker} + first stage" if row.mode == "interpolated" else row.reranker


def load_analysis(run_dir: Path, config: dict, rows: list[Row]) -> dict:
    """analysis.json of the run; for a run made before hardneg wrote it, rebuilt from its TREC files and qrels."""
    path = run_dir / "analysis.json"
    if path.is_file():
        return read_json(path)
    from .config import RunConfig, slug
    from .data import load_beir, resolve_dataset
    from .evaluate import analyse
    from .pipeline import sample_queries

    cfg = RunConfig.model_validate(config)
    data_dir = cfg.data_dir if cfg.data_dir and Path(cfg.data_dir).is_dir() else os.environ.get("HARDNEG_DATA")
    dataset = load_beir(resolve_dataset(cfg.dataset, data_dir))
    ev = cfg.evaluate
    test_ids = sample_queries(sorted(dataset.positives(ev.split)), ev.max_queries, cfg.seed)
    qrels = {q: dataset.qrels[ev.split][q] for q in test_ids}
    found: dict[str, dict[str, dict]] = {}
    for row in rows:
        system = _system_of(row)
        name = (f"{slug(row.first_stage)}.{ev.split}.trec" if row.mode == "first stage" else
                f"{slug(row.first_stage)}.{slug(row.reranker)}"
                f"{'+interpolated' if row.mode == 'interpolated' else ''}.{ev.split}.trec")
        trec = run_dir / "runs" / name
        first = run_dir / "runs" / f"{slug(row.first_stage)}.{ev.split}.trec"
        scores = run_dir / "scores" / f"{slug(row.reranker)}.{ev.split}.json"
        if trec.is_file():
            found.setdefault(row.first_stage, {})[system] = read_trec(trec)
        elif row.mode == "interpolated" and first.is_file() and scores.is_file():
            # Older runs kept no interpolated run file; its inputs (first stage, scores, weight) are all saved.
            from .evaluate import rerank_run

            found.setdefault(row.first_stage, {})[system] = rerank_run(
                read_trec(first), _scores(read_json(scores)), ev.rerank_depth, row.alpha)
        else:
            logger.warning("No run file %s: %s is left out of the significance tests", trec, system)
    analysis = {"split": ev.split, "queries": len(qrels), "qrels": qrels,
                "query_text": {q: dataset.queries.text(q) for q in qrels}, "rebuilt_from_trec": True,
                "first_stages": {fs: analyse(qrels, systems, ev.metrics, ev.significance, ev.correction,
                                             ev.bootstrap, cfg.seed) for fs, systems in found.items()}}
    write_json(path, analysis)
    return analysis


def read_trec(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.split()
            if len(parts) != 6:
                raise ValueError(f"{path}:{lineno}: expected 6 columns (qid Q0 doc rank score tag), got {len(parts)}")
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run


def significance_marks(systems: list[str], comparisons: list[dict], metric: str) -> dict[str, str]:
    """Per system, the letters of the systems it beats significantly (after correction) on ``metric``."""
    letter = {s: chr(ord("a") + i) if i < 26 else f"z{i}" for i, s in enumerate(systems)}
    marks = {s: [] for s in systems}
    for c in comparisons:
        if c["metric"] != metric or not c["significant"] or c["a"] not in letter or c["b"] not in letter:
            continue
        winner, loser = (c["b"], c["a"]) if c["delta"] > 0 else (c["a"], c["b"])
        marks[winner].append(letter[loser])
    return {s: "".join(sorted(m)) for s, m in marks.items()}


def _table(fs: str, rows: list[Row], analysis: dict, metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the paper-style table for one first stage (value, superscript marks, CI)."""
    info = analysis["first_stages"].get(fs, {"comparisons": [], "ci": {}})
    ordered = [r for mode in ("first stage", "rerank", "interpolated") for r in rows
               if r.first_stage == fs and r.mode == mode]
    systems = [_system_of(r) for r in ordered]
    marks = {m: significance_marks(systems, info["comparisons"], m) for m in metrics}
    best = {m: max(r.metrics[m] for r in ordered) for m in metrics}
    header = ["", "system"] + [METRIC_LABELS.get(m, m) for m in metrics] + [f"{METRIC_LABELS[PRIMARY]} 95% CI"]
    cells = []
    for i, (row, system) in enumerate(zip(ordered, systems)):
        line = [chr(ord("a") + i), system_label(system, row)]
        for m in metrics:
            value = f"{row.metrics[m]:.3f}"
            line.append(("**" + value + "**" if row.metrics[m] == best[m] else value) + (
                f"<sup>{marks[m][system]}</sup>" if marks[m][system] else ""))
        ci = info["ci"].get(system, {}).get(PRIMARY)
        line.append(f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-")
        cells.append(line)
    return header, cells


def _md_table(header: list[str], cells: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(c) + " |" for c in cells])


def _html_table(header: list[str], cells: list[list[str]], cls: str = "results") -> str:
    def cell(text: str) -> str:
        out = html.escape(text).replace("&lt;sup&gt;", "<sup>").replace("&lt;/sup&gt;", "</sup>")
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in cells)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def wins_losses(analysis: dict, fs: str, best: str, base: str, metric: str = PRIMARY) -> list[tuple[str, float]]:
    """(query id, best - base) per query, biggest win first; ties by query id."""
    per = analysis["first_stages"][fs]["per_query"]
    delta = {q: per[best][metric][q] - per[base][metric].get(q, 0.0) for q in per[best][metric]}
    return sorted(delta.items(), key=lambda kv: (-kv[1], kv[0]))


def _short(text: str, n: int = LONG_TEXT) -> str:
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " ..."


def mined_examples(negatives: dict[str, list[dict]], n: int = MAX_EXAMPLES, seed: int = 42) -> list[dict]:
    """A few (query, positive) pairs mined by every strategy, with each strategy's negatives side by side."""
    keyed = {name: {(p["query_id"], p["positive_id"]): p for p in pairs} for name, pairs in negatives.items()}
    if not keyed:
        return []
    common = sorted(set.intersection(*(set(k) for k in keyed.values())))
    if not common:
        return []
    rng = np.random.default_rng(seed)
    picked = [common[i] for i in sorted(rng.choice(len(common), size=min(n, len(common)), replace=False))]
    out = []
    for key in picked:
        first = next(iter(keyed.values()))[key]
        out.append({"query": first["query"], "positive": first["positive"],
                    "by_strategy": {name: list(zip(found[key]["negatives"], found[key]["negative_scores"],
                                                   found[key]["negative_sources"]))
                                    for name, found in keyed.items()}})
    return out


def _load_negatives(run_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for name_file in sorted((run_dir / "strategies").glob("*/negatives.jsonl")):
        out[name_file.parent.name] = read_jsonl(name_file)
    return out


def _training(run_dir: Path) -> dict[str, dict]:
    out = {}
    for marker in sorted((run_dir / "strategies").glob("*/model/hardneg_training.json")):
        info = read_json(marker)
        info.pop("log_history", None)
        out[marker.parent.parent.name] = info
    return out


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;
padding:.3em .55em;text-align:left;vertical-align:top}th{background:#f3f3f3}table.results td:nth-child(n+3){
text-align:right;font-variant-numeric:tabular-nums}sup{color:#2a6f2a;font-size:.7em}img{max-width:100%;
border:1px solid #eee}pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:.8em}.note{color:#555;
font-size:.9em}.neg td{font-size:.85em}.hard{color:#8a1c1c}.random{color:#555}"""


def build_report(run_dir: str | Path, seed: int = 42) -> ReportFiles:
    """Write RUN_DIR/report.html (self-contained), RUN_DIR/report.md and RUN_DIR/report/*.png."""
    from . import figures

    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path}: no results; run `hardneg run` for this folder first.")
    results = read_json(results_path)
    settings, config = results["settings"], results["settings"]["config"]
    rows = [Row.from_dict(r) for r in results["rows"]]
    metrics = list(rows[0].metrics) if rows else []
    analysis = load_analysis(run_dir, config, rows)
    negatives = _load_negatives(run_dir)
    training = _training(run_dir)
    fig_dir = run_dir / "report"

    ev = config["evaluate"]
    md = [f"# hardneg report: {settings['dataset']}", ""]
    intro = (f"{settings['train_queries']} training queries ({settings['train_pairs']} query-positive pairs), "
             f"{settings['dev_queries']} dev queries (checkpoint choice and interpolation weight); evaluated on "
             f"{analysis['queries']} `{analysis['split']}` queries. Re-rankers re-score the top "
             f"{ev['rerank_depth']} of each first stage.")
    stats = next(iter(analysis["first_stages"].values()), {})
    sig = (f"Superscript letters: the row is significantly better than the rows with those letters "
           f"({stats.get('test', 'fisher')} paired test, {stats.get('correction', 'holm')} correction over all "
           f"pairs per metric, corrected p < {stats.get('alpha', 0.05)}). Intervals: percentile bootstrap over "
           f"queries ({stats.get('bootstrap_resamples', 1000)} resamples). Best value per column in bold.")
    md += [intro, "", sig, ""]
    html_parts = [f"<h1>hardneg report: {html.escape(settings['dataset'])}</h1>", f"<p>{html.escape(intro)}</p>",
                  f"<p class='note'>{html.escape(sig)}</p>"]

    # Tables and bar charts, one block per first stage (further row groups, e.g. short vs. long documents,
    # can be added as more blocks of the same shape).
    for fs in dict.fromkeys(r.first_stage for r in rows):
        header, cells = _table(fs, rows, analysis, metrics)
        md += [f"## First stage: {fs}", "", _md_table(header, cells), ""]
        html_parts += [f"<h2>First stage: {html.escape(fs)}</h2>", _html_table(header, cells)]
        if any(r.first_stage == fs and r.mode != "first stage" for r in rows):
            png = figures.bar_chart(fig_dir / f"bars_{_file(fs)}.png", fs, rows, analysis)
            md += [f"![{METRIC_LABELS[PRIMARY]} with CIs]({png.relative_to(run_dir)})", ""]
            html_parts.append(_img(png, f"{METRIC_LABELS[PRIMARY]} with 95% CIs, first stage {fs}"))
        # Extra row groups: the same systems on queries whose relevant documents are short vs. long.
        grouped = [r for r in rows if r.first_stage == fs and r.by_length]
        if grouped:
            lh = ["system", "documents"] + [METRIC_LABELS.get(m, m) for m in metrics]
            lc = [[system_label(_system_of(r), r), group] + [f"{values[m]:.3f}" for m in metrics]
                  for r in grouped for group, values in r.by_length.items()]
            md += [f"### Short and long documents ({fs})", "", _md_table(lh, lc), ""]
            html_parts += [f"<h3>Short and long documents ({html.escape(fs)})</h3>", _html_table(lh, lc)]

    # The interpolation weights: how each was chosen on the dev queries, and how flat (or noisy) that choice was.
    curves = [r for r in rows if r.alpha_curve]
    if curves:
        png = figures.interpolation_curves(fig_dir / "interpolation.png", curves)
        caption = (f"Interpolation weight (1 = re-ranker alone, 0 = first stage alone) against dev nDCG@10, "
                   f"{settings['dev_queries']} dev queries; the chosen weight is marked")
        md += ["## Interpolation weights", "", f"{caption}:", "", f"![{caption}]({png.relative_to(run_dir)})", ""]
        html_parts += ["<h2>Interpolation weights</h2>", f"<p>{html.escape(caption)}:</p>", _img(png, caption)]

    # Wins and losses: the best fine-tuned re-ranker vs. the base model (the first stage alone when the run did
    # not evaluate the base model), on the first re-ranked first stage.
    main = next((fs for fs, info in analysis["first_stages"].items() if len(info["per_query"]) > 1), None)
    if main:
        known = analysis["first_stages"][main]["per_query"]
        base = "base" if "base" in known else "first stage"
        tuned = [r for r in rows if r.first_stage == main and r.mode == "rerank" and r.reranker != "base"
                 and r.reranker in known]
        if tuned:
            best = max(tuned, key=lambda r: (r.metrics[PRIMARY], r.reranker)).reranker
            deltas = wins_losses(analysis, main, best, base)
            png = figures.wins_chart(fig_dir / "wins_losses.png", deltas, best, base)
            text = analysis.get("query_text", {})
            top = [d for d in deltas if d[1] > 0][:5] + [d for d in deltas[::-1] if d[1] < 0][:5]
            wl_header = ["query", f"delta {METRIC_LABELS[PRIMARY]}"]
            wl_cells = [[_short(text.get(q, q), 150), f"{d:+.3f}"] for q, d in top]
            md += [f"## Per-query wins and losses: {best} vs. {system_label(base)} ({main})", "",
                   f"![wins and losses]({png.relative_to(run_dir)})", "", "Largest wins, then largest losses:", "",
                   _md_table(wl_header, wl_cells), ""]
            html_parts += [(f"<h2>Per-query wins and losses: {html.escape(best)} vs. {html.escape(system_label(base))}"
                           f" ({html.escape(main)})</h2>"),
                           _img(png, "per-query differences"), "<p>Largest wins, then largest losses:</p>",
                           _html_table(wl_header, wl_cells, "wl")]

    # Score distributions.
    md += ["## Score distributions", ""]
    html_parts.append("<h2>Score distributions</h2>")
    png = figures.score_distributions(fig_dir / "mined_scores.png", negatives)
    if png:
        caption = "Fused first-stage scores of positives and mined hard negatives, per strategy"
        md += [f"{caption}:", "", f"![{caption}]({png.relative_to(run_dir)})", ""]
        html_parts += [f"<p>{caption}:</p>", _img(png, caption)]
    rerankers = [r.reranker for r in rows if r.mode == "rerank"]
    png = figures.reranker_distributions(fig_dir / "reranker_scores.png", run_dir, list(dict.fromkeys(rerankers)),
                                 analysis.get("qrels", {}), analysis["split"])
    if png:
        caption = f"Re-ranker scores of positives and other candidates ({analysis['split']} split)"
        md += [f"{caption}:", "", f"![{caption}]({png.relative_to(run_dir)})", ""]
        html_parts += [f"<p>{caption}:</p>", _img(png, caption)]

    # Mined examples.
    examples = mined_examples(negatives, seed=seed)
    if examples:
        md += ["## Examples of mined negatives", ""]
        html_parts.append("<h2>Examples of mined negatives</h2>")
        for i, ex in enumerate(examples, 1):
            md += [f"### Example {i}", "", f"**Query**: {ex['query']}", "", f"**Positive**: {_short(ex['positive'])}",
                   ""]
            neg_cells = [[name, f"{src} ({score:.2f})" if score is not None else src, _short(text, 200)]
                         for name, found in ex["by_strategy"].items() for text, score, src in found]
            md += [_md_table(["strategy", "kind (fused score)", "negative"], neg_cells), ""]
            html_parts += [f"<h3>Example {i}</h3>", f"<p><b>Query</b>: {html.escape(ex['query'])}</p>",
                           f"<p><b>Positive</b>: {html.escape(_short(ex['positive']))}</p>",
                           _html_table(["strategy", "kind (fused score)", "negative"], neg_cells, "neg")]

    # Every setting.
    mining_cells = [[name, "+".join(info.get("members") or []) or "random", str(info["summary"]["pairs"]),
                     ", ".join(f"{k}: {v}" for k, v in info["summary"]["removed"].items()) or "-",
                     str(info["summary"]["random_fill"])] for name, info in results.get("mining", {}).items()]
    mining_header = ["strategy", "members", "pairs", "removed by rule", "random fill"]
    train_cells = [[name, str(t.get("loss", t.get("settings", {}).get("loss"))), str(t.get("rows")),
                    str(t.get("steps")), str(t.get("train_seconds")),
                    (f"{t['dev']['best']:.4f}" if t.get("dev") and t["dev"].get("best") is not None else "-")]
                   for name, t in training.items()]
    train_header = ["strategy", "loss", "rows", "steps", "seconds", "best dev nDCG@10"]
    settings_json = json.dumps(config, indent=2)
    md += ["## Mining", "", _md_table(mining_header, mining_cells), "", "## Training", "",
           _md_table(train_header, train_cells), "", "## Settings", "", "```json", settings_json, "```", ""]
    html_parts += ["<h2>Mining</h2>", _html_table(mining_header, mining_cells), "<h2>Training</h2>",
                   _html_table(train_header, train_cells), "<h2>Settings</h2>",
                   f"<pre>{html.escape(settings_json)}</pre>"]

    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>hardneg report: {html.escape(settings['dataset'])}</title><style>{CSS}</style></head><body>"
            + "\n".join(html_parts) + "</body></html>")
    with atomic_write(run_dir / "report.html") as handle:
        handle.write(page)
    with atomic_write(run_dir / "report.md") as handle:
        handle.write("\n".join(md))
    pngs = list(dict.fromkeys(re.findall(r"\]\((report/[^)]+\.png)\)", "\n".join(md))))
    return ReportFiles(run_dir / "report.html", run_dir / "report.md", [run_dir / p for p in pngs])


def _file(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></p>'


def _scores(saved: dict) -> dict[str, dict[str, float]]:
    """A score store's (query -> doc -> score); older runs saved the mapping bare, without a fingerprint."""
    return saved["scores"] if isinstance(saved.get("scores"), dict) and "fingerprint" in saved else saved

"""``hardneg report RUN_DIR``: the report's content, built once from a run folder as a :class:`Report`, then
written as a self-contained HTML page and a Markdown file (+ PNGs in RUN_DIR/report/)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..crossencoder import read_scores, training_info
from ..evaluate import Row
from ..io import atomic_write, read_json, read_jsonl
from ..rundir import RunFolder, slug
from . import figures
from .document import Block, Bold, Cell, Code, Figure, Paragraph, Report, Section, Table
from .labels import (
    PRIMARY,
    chosen_system_label,
    cross_fitted,
    metric_label,
    rows_of,
    system_label,
    system_of,
    test_verdict,
    unclear_tuning,
)
from .markdown import render_markdown
from .page import render_html

MAX_EXAMPLES = 3
LONG_TEXT = 260


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    images: list[Path]


@dataclass(frozen=True)
class RunOutputs:
    """What the report reads from a finished run folder."""

    run: RunFolder
    settings: dict
    rows: list[Row]
    mining: dict
    analysis: dict
    system: dict | None = None   # the chosen system and its test comparison (results.json "system")

    @property
    def config(self) -> dict:
        return self.settings["config"]

    @property
    def metrics(self) -> list[str]:
        return list(self.rows[0].metrics) if self.rows else []

    @property
    def first_stages(self) -> list[str]:
        return list(dict.fromkeys(r.first_stage for r in self.rows))


def read_run(run_dir: str | Path) -> RunOutputs:
    run = RunFolder(run_dir)
    if not run.results.is_file():
        raise FileNotFoundError(f"{run.results}: no results; run `hardneg run` for this folder first.")
    if not run.analysis.is_file():
        raise FileNotFoundError(f"{run.analysis}: no analysis (the run predates it); run `hardneg migrate "
                                f"{run.path}` to rebuild it from the run's TREC files, then report again.")
    results = read_json(run.results)
    return RunOutputs(run, results["settings"], [Row.from_dict(r) for r in results["rows"]],
                      results.get("mining", {}), read_json(run.analysis), results.get("system"))


def build_report(run_dir: str | Path, seed: int = 42) -> ReportFiles:
    """Write RUN_DIR/report.html (self-contained), RUN_DIR/report.md and RUN_DIR/report/*.png."""
    out = read_run(run_dir)
    report = report_document(out, seed)
    run = out.run
    with atomic_write(run.report_html) as handle:
        handle.write(render_html(report))
    with atomic_write(run.report_markdown) as handle:
        handle.write(render_markdown(report, run.path))
    return ReportFiles(run.report_html, run.report_markdown, report.figures())


def report_document(out: RunOutputs, seed: int = 42) -> Report:
    """The whole report (drawing its figures into the run folder on the way)."""
    negatives = {s.name: read_jsonl(s.negatives) for s in out.run.strategies() if s.negatives.is_file()}
    report = Report(f"hardneg report: {out.settings['dataset']}", introduction(out))
    if out.system:
        report.blocks.append(system_section(out))
    for fs in out.first_stages:
        report.blocks.append(first_stage_section(out, fs))
    for section in (interpolation_section(out), wins_section(out), distributions_section(out, negatives),
                    examples_section(negatives, seed)):
        if section is not None:
            report.blocks.append(section)
    report.blocks += settings_sections(out)
    return report


def introduction(out: RunOutputs) -> list[Block]:
    settings, analysis = out.settings, out.analysis
    intro = (f"{settings['train_queries']} training queries ({settings['train_pairs']} query-positive pairs), "
             f"{settings['dev_queries']} dev queries (checkpoint choice and interpolation weight"
             f"{cross_fitted(settings)}); evaluated on "
             f"{analysis['queries']} `{analysis['split']}` queries. Re-rankers re-score the top "
             f"{out.config['evaluate']['rerank_depth']} of each first stage.")
    stats = next(iter(analysis["first_stages"].values()), {})
    sig = (f"Superscript letters: the row is significantly better than the rows with those letters "
           f"({stats.get('test', 'fisher')} paired test, {stats.get('correction', 'holm')} correction over all "
           f"pairs per metric, corrected p < {stats.get('alpha', 0.05)}). Intervals: percentile bootstrap over "
           f"queries ({stats.get('bootstrap_resamples', 1000)} resamples). Best value per column in bold.")
    return [Paragraph.of(intro), Paragraph.of(sig, css_class="note")]


def system_section(out: RunOutputs) -> Section:
    """What the run hands over, chosen on dev queries, against the untrained first stage on test."""
    choice, test = out.system["choice"], out.system.get("test") or {}
    what = chosen_system_label(choice)
    blocks: list[Block] = [Paragraph.of(Bold(f"Chosen: {what}."), f" Chosen on dev queries only: {choice['reason']}.")]
    hint = unclear_tuning(choice, out.settings)
    if hint:
        blocks.append(Paragraph.of(hint))
    if test:
        rows = [[metric_label(m), f"{t['first_stage']:.3f}", f"{t['system']:.3f}", f"{t['gain']:+.3f}",
                 f"[{t['low']:+.3f}, {t['high']:+.3f}]", f"{t['p_value']:.3f}"] for m, t in test.items()]
        blocks.append(Table.of(["metric", "first stage", "trained system", "gain", "95% interval", "p"], rows))
        verdict = test_verdict(choice, test)
        if verdict:
            blocks.append(Paragraph.of(Bold(verdict[0]) if verdict[1] else verdict[0]))
    return Section("The trained system", blocks)


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


def results_table(out: RunOutputs, fs: str) -> Table:
    """The paper-style table of one first stage: value (best in bold), significance marks, CI of the primary."""
    info = out.analysis["first_stages"].get(fs, {"comparisons": [], "ci": {}})
    ordered = rows_of(out.rows, fs)
    systems = [system_of(r) for r in ordered]
    metrics = out.metrics
    marks = {m: significance_marks(systems, info["comparisons"], m) for m in metrics}
    best = {m: max(r.metrics[m] for r in ordered) for m in metrics}
    header = ["", "system"] + [metric_label(m) for m in metrics] + [f"{metric_label(PRIMARY)} 95% CI"]
    cells = []
    for i, (row, system) in enumerate(zip(ordered, systems)):
        line = [Cell(chr(ord("a") + i)), Cell(system_label(system, row))]
        line += [Cell(f"{row.metrics[m]:.3f}", row.metrics[m] == best[m], marks[m][system]) for m in metrics]
        ci = info["ci"].get(system, {}).get(PRIMARY)
        line.append(Cell(f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"))
        cells.append(line)
    return Table.of(header, cells)


def first_stage_section(out: RunOutputs, fs: str) -> Section:
    """One first stage's table and bar chart, and its rows on queries with short vs. long relevant documents."""
    section = Section(f"First stage: {fs}", [results_table(out, fs)])
    if any(r.first_stage == fs and r.mode != "first stage" for r in out.rows):
        png = figures.bar_chart(out.run.figure(f"bars_{slug(fs)}.png"), fs, out.rows, out.analysis)
        section.blocks.append(Figure(png, f"{metric_label(PRIMARY)} with 95% CIs, first stage {fs}"))
    grouped = [r for r in out.rows if r.first_stage == fs and r.by_length]
    if grouped:
        header = ["system", "documents"] + [metric_label(m) for m in out.metrics]
        cells = [[system_label(system_of(r), r), group] + [f"{values[m]:.3f}" for m in out.metrics]
                 for r in grouped for group, values in r.by_length.items()]
        section.blocks.append(Section(f"Short and long documents ({fs})", [Table.of(header, cells)]))
    return section


def interpolation_section(out: RunOutputs) -> Section | None:
    """How each interpolation weight was chosen on the dev queries, and how flat (or noisy) that choice was."""
    curves = [r for r in out.rows if r.alpha_curve]
    if not curves:
        return None
    png = figures.interpolation_curves(out.run.figure("interpolation.png"), curves)
    caption = (f"Interpolation weight (1 = re-ranker alone, 0 = first stage alone) against dev nDCG@10, "
               f"{out.settings['dev_queries']} dev queries; the chosen weight is marked")
    return Section("Interpolation weights", [Paragraph.of(f"{caption}:"), Figure(png, caption)])


def wins_losses(analysis: dict, fs: str, best: str, base: str, metric: str = PRIMARY) -> list[tuple[str, float]]:
    """(query id, best - base) per query, biggest win first; ties by query id."""
    per = analysis["first_stages"][fs]["per_query"]
    delta = {q: per[best][metric][q] - per[base][metric].get(q, 0.0) for q in per[best][metric]}
    return sorted(delta.items(), key=lambda kv: (-kv[1], kv[0]))


def wins_section(out: RunOutputs) -> Section | None:
    """The best fine-tuned re-ranker vs. the base model (the first stage alone when the run did not evaluate the
    base model), per query, on the first re-ranked first stage."""
    analysis = out.analysis
    main = next((fs for fs, info in analysis["first_stages"].items() if len(info["per_query"]) > 1), None)
    if not main:
        return None
    known = analysis["first_stages"][main]["per_query"]
    base = "base" if "base" in known else "first stage"
    tuned = [r for r in out.rows if r.first_stage == main and r.mode == "rerank" and r.reranker != "base"
             and r.reranker in known]
    if not tuned:
        return None
    best = max(tuned, key=lambda r: (r.metrics[PRIMARY], r.reranker)).reranker
    deltas = wins_losses(analysis, main, best, base)
    png = figures.wins_chart(out.run.figure("wins_losses.png"), deltas, best, base)
    text = analysis.get("query_text", {})
    top = [d for d in deltas if d[1] > 0][:5] + [d for d in deltas[::-1] if d[1] < 0][:5]
    table = Table.of(["query", f"delta {metric_label(PRIMARY)}"],
                     [[short(text.get(q, q), 150), f"{d:+.3f}"] for q, d in top], "wl")
    return Section(f"Per-query wins and losses: {best} vs. {system_label(base)} ({main})",
                   [Figure(png, "wins and losses"), Paragraph.of("Largest wins, then largest losses:"), table])


def distributions_section(out: RunOutputs, negatives: dict[str, list[dict]]) -> Section:
    section = Section("Score distributions")
    png = figures.score_distributions(out.run.figure("mined_scores.png"), negatives)
    if png:
        caption = "Fused first-stage scores of positives and mined hard negatives, per strategy"
        section.blocks += [Paragraph.of(f"{caption}:"), Figure(png, caption)]
    split = out.analysis["split"]
    rerankers = dict.fromkeys(r.reranker for r in out.rows if r.mode == "rerank")
    stores = {name: out.run.scores(name, split) for name in rerankers}
    scores = {name: read_scores(path) for name, path in stores.items() if path.is_file()}
    png = figures.reranker_distributions(out.run.figure("reranker_scores.png"), scores, out.analysis.get("qrels", {}))
    if png:
        caption = f"Re-ranker scores of positives and other candidates ({split} split)"
        section.blocks += [Paragraph.of(f"{caption}:"), Figure(png, caption)]
    return section


def short(text: str, n: int = LONG_TEXT) -> str:
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


def examples_section(negatives: dict[str, list[dict]], seed: int) -> Section | None:
    examples = mined_examples(negatives, seed=seed)
    if not examples:
        return None
    section = Section("Examples of mined negatives")
    for i, ex in enumerate(examples, 1):
        cells = [[name, f"{src} ({score:.2f})" if score is not None else src, short(text, 200)]
                 for name, found in ex["by_strategy"].items() for text, score, src in found]
        section.blocks.append(Section(f"Example {i}", [
            Paragraph.of(Bold("Query"), f": {ex['query']}"),
            Paragraph.of(Bold("Positive"), f": {short(ex['positive'])}"),
            Table.of(["strategy", "kind (fused score)", "negative"], cells, "neg")]))
    return section


def settings_sections(out: RunOutputs) -> list[Section]:
    """Every setting: what each strategy mined, how each re-ranker trained, and the run's whole config."""
    mining = Table.of(["strategy", "members", "pairs", "removed by rule", "random fill"], [
        [name, "+".join(info.get("members") or []) or "random", str(info["summary"]["pairs"]),
         ", ".join(f"{k}: {v}" for k, v in info["summary"]["removed"].items()) or "-",
         str(info["summary"]["random_fill"])] for name, info in out.mining.items()])
    trained = {s.name: training_info(s.model) for s in out.run.strategies()}
    training = Table.of(["strategy", "loss", "rows", "steps", "seconds", "best dev nDCG@10"], [
        [name, str(t.get("loss", t.get("settings", {}).get("loss"))), str(t.get("rows")), str(t.get("steps")),
         str(t.get("train_seconds")),
         f"{t['dev']['best']:.4f}" if t.get("dev") and t["dev"].get("best") is not None else "-"]
        for name, t in trained.items() if t])
    return [Section("Mining", [mining]), Section("Training", [training]),
            Section("Settings", [Code(json.dumps(out.config, indent=2), "json")])]

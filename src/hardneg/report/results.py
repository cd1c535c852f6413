"""results.md: the comparison table shaped like the paper's, one row per re-ranker (by the negatives it was
trained on), written by the pipeline at the end of every run."""

from __future__ import annotations

import json

from ..evaluate import Row
from .labels import (chosen_system_label, cross_fitted, fine_tuned_members, metric_label, rows_of, test_verdict,
                     unclear_tuning)


def row_label(row: Row) -> str:
    if row.mode == "first stage":
        return f"first stage alone ({row.first_stage})"
    name = "none (base model, no fine-tuning)" if row.reranker == "base" else row.reranker
    if row.mode == "interpolated":
        return f"{name} + first stage (alpha={row.alpha:.1f})"
    return name


def results_table(rows: list[Row], metrics: list[str], first_stage: str) -> str:
    header = ["negatives"] + [metric_label(m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows_of(rows, first_stage):
        lines.append("| " + " | ".join([row_label(row)] + [f"{row.metrics[m]:.3f}" for m in metrics]) + " |")
    return "\n".join(lines)


def system_markdown(system: dict, metrics: list[str], settings: dict | None = None) -> list[str]:
    """The section a user reads first: the system the run hands over, against the untrained first stage."""
    choice, test = system["choice"], system.get("test") or {}
    what = chosen_system_label(choice)
    lines = ["## The trained system", "", f"**Chosen: {what}.** Chosen on dev queries only: {choice['reason']}.", ""]
    hint = unclear_tuning(choice, settings or {})
    if hint:
        lines += [hint, ""]
    if test:
        lines += ["On test, against the untrained first stage (gain with its 95% paired bootstrap interval, and "
                  "the paired randomisation test's p-value):", "",
                  "| metric | first stage | trained system | gain | 95% interval | p |", "|---|---|---|---|---|---|"]
        for m in metrics:
            t = test[m]
            lines.append(f"| {metric_label(m)} | {t['first_stage']:.3f} | {t['system']:.3f} | {t['gain']:+.3f} | "
                         f"[{t['low']:+.3f}, {t['high']:+.3f}] | {t['p_value']:.3f} |")
        verdict = test_verdict(choice, test)
        if verdict:
            lines += ["", f"**{verdict[0]}**" if verdict[1] else verdict[0]]
        lines.append("")
    return lines


def results_markdown(rows: list[Row], metrics: list[str], settings: dict, mining: dict,
                     system: dict | None = None) -> str:
    parts = [f"# hardneg results: {settings['dataset']}", "",
             (f"{settings['train_queries']} training queries ({settings['train_pairs']} query-positive pairs), "
             f"{settings['dev_queries']} dev queries for the interpolation weight{cross_fitted(settings)}; "
             "evaluated on "
             f"`{settings['config']['evaluate']['split']}`. Re-rankers re-score the top "
             f"{settings['config']['evaluate']['rerank_depth']} of each first stage. "
             f"Data: {settings.get('data', 'nothing skipped')}.{fine_tuned_members(settings)}"), ""]
    if system:
        parts += system_markdown(system, metrics, settings)
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

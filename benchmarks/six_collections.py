"""Does hardneg keep its promise on the six collections? Each collection is run with configs/collections.yaml
(the defaults, one ensemble-negative re-ranker, the embedder fine-tuned, the fusion learned), then every test run
file of its run folder is set against the untrained ensemble, per query (issues 16 and 17).

Per collection and system: nDCG@10 and MRR@10, the gain over the untrained ensemble with its 95% paired bootstrap
interval and a seeded paired randomisation test, Holm-corrected over the six collections per comparison; pooled
over the six (all test queries together, and the unweighted mean of the per-collection gains, Holm over the pooled
comparisons). Also the learned fusion against the best single member on validation (first_stage.json) and the
system each run handed over (results.json "system", runs/system.test.trec).

Usage (one collection at a time; a finished stage is reused, so a rerun only redoes what changed):
    HARDNEG_DATA=../shared/data python benchmarks/six_collections.py                 # run all six, then aggregate
    HARDNEG_DATA=../shared/data python benchmarks/six_collections.py --datasets adi med --no-run   # aggregate only
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hardneg.config import DEFAULT_ENSEMBLE, RunConfig
from hardneg.data import load_beir, resolve_dataset
from hardneg.evaluate import adjust_pvalues, bootstrap_ci, paired_test, per_query_metrics, read_trec
from hardneg.fusion_weights import learn_fusion
from hardneg.io import read_json, write_json
from hardneg.pipeline.dev_split import split_for_run
from hardneg.retrieve import Retrievers
from hardneg.rundir import RunFolder
from hardneg.splits import sample_queries

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ["adi", "med", "cisi", "cranfield", "cacm", "scifact"]
# CPU cost on 2 cores shared with other work (about 25 s per re-ranker step of 8 pairs at the time): the
# re-ranker and the embedder train on a seeded 250 of a collection's mined pairs at most. ADI (108 pairs) and MED
# (246) are below the cap and train on all of theirs; CISI (1,249), Cranfield (676) and CACM (362) are capped.
# SciFact also uses a seeded 400 of its 809 training queries (407 pairs), as the benchmark's brief set.
PAIR_CAP = ["train.max_train_pairs=250", "embedder.max_train_pairs=250"]
EXTRA_SETTINGS = {"cisi": PAIR_CAP, "cranfield": PAIR_CAP, "cacm": PAIR_CAP,
                  "scifact": ["max_train_queries=400", *PAIR_CAP]}
BASELINE = "ensemble"
METRICS = ["ndcg@10", "mrr@10"]
MACHINE_NOTE = "2 cores shared with other work"
GATE_FILE = ROOT / "src" / "hardneg" / "evaluate" / "choice.py"


def run_command(config: str, dataset: str, runs_dir: Path) -> list[str]:
    sets = [f"dataset={dataset}", f"output={runs_dir / dataset}", *EXTRA_SETTINGS.get(dataset, [])]
    return ["nice", "-n", "10", str(Path(sys.executable).parent / "hardneg"), "run", config, "--no-progress", "-v",
            *[arg for s in sets for arg in ("--set", s)]]


def run_collection(command: list[str], log: Path) -> dict:
    """Run one ``hardneg run`` to its end; its wall time and peak RSS (os.wait4: this child alone)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now().isoformat(timespec="seconds")
    gate = hashlib.sha256(GATE_FILE.read_bytes()).hexdigest()[:12]
    begin = time.monotonic()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n=== {started} {shlex.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"command": shlex.join(command), "started": started, "wall_s": round(time.monotonic() - begin, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "returncode": process.returncode,
            "gate_sha256": gate, "log": str(log.resolve().relative_to(ROOT))}


def system_files(folder: RunFolder, results: dict, split: str) -> dict[str, Path]:
    """Every test run file of a run, by a label: first stages by name, re-ranked rows as "FS + RERANKER
    (mode[, weight])", and the system the run handed over."""
    out = {}
    for row in results["rows"]:
        if row["mode"] == "first stage":
            label = row["first_stage"]
        else:
            label = f"{row['first_stage']} + {row['reranker']} re-ranker ({row['mode']})"
        out[label] = folder.trec_for(argparse.Namespace(**row), split)
    out["system"] = folder.system_trec(split)
    return out


def compare(base: np.ndarray, other: np.ndarray, resamples: int, permutations: int, seed: int) -> dict:
    diff = other - base
    low, high = bootstrap_ci(diff, resamples, seed)
    return {"mean": float(other.mean()), "gain": float(diff.mean()), "low": low, "high": high,
            "p": paired_test(base, other, "fisher", permutations, seed), "wins": int((diff > 0).sum()),
            "losses": int((diff < 0).sum()), "queries": int(diff.size)}


def fusion_check(first_stage: dict) -> dict:
    """The learned fusion against the best single member on validation, from first_stage.json."""
    fusion = first_stage.get("fusion")
    if not fusion:
        return {"checked": False, "why": "no fusion record"}
    out = {k: fusion.get(k) for k in ("learned", "weights", "fusion", "queries", "folds", "score", "fallback_score",
                                      "best_single", "held_out", "reason")}
    if fusion.get("best_single") is None:
        out.update(checked=False, why="fixed weights kept without a validation grid (too few training queries)")
        return out
    used = fusion["score"] if fusion["learned"] else fusion["fallback_score"]
    out.update(checked=True, used_score=used, best_single_score=fusion["best_single"][1],
               never_below_best_single_on_validation=bool(used >= fusion["best_single"][1] - 1e-12),
               grid_choice_never_below_best_single=bool(fusion["score"] >= fusion["best_single"][1] - 1e-12))
    return out


def fallback_validation(name: str, config: dict, runs_dir: Path, train_queries: int) -> dict:
    """Where the run kept the fixed weights without scoring them (fewer than fusion_weights.min_queries training
    queries), the same validation folds scored here: hardneg's learn_fusion on the run's own training queries
    (never dev or test) with min_queries 1, to compare the fixed weights with the best single member."""
    cfg = RunConfig.model_validate(config)
    dataset = load_beir(resolve_dataset(name, cfg.data_dir))
    fw = cfg.fusion_weights
    pool = sample_queries(sorted(dataset.positives(cfg.train_split)), cfg.max_train_queries, cfg.seed)
    train_ids = split_for_run(cfg, pool).train_ids  # what prepare() trains on
    if len(train_ids) != train_queries:
        raise ValueError(f"{name}: rebuilt {len(train_ids)} training queries, the run had {train_queries}")
    ensemble = Retrievers(dataset, cfg, Path(cfg.cache_dir or runs_dir / ".cache" / "embeddings")).ensemble(
        cfg.ensemble)
    found = learn_fusion(dataset, sample_queries(train_ids, fw.max_queries, cfg.seed), dataset.qrels[cfg.train_split],
                         ensemble, depth=fw.depth or cfg.evaluate.depth, seed=cfg.seed, grid=tuple(fw.grid),
                         fusions=tuple(fw.fusions), folds=fw.folds, min_queries=1, metric=fw.metric,
                         fallback_weights=cfg.weights, fallback_fusion=cfg.fusion)
    return {"queries": found.queries, "folds": min(fw.folds, found.queries), "fixed_weights_score": found.fallback_score,
            "best_single": found.best_single, "grid_best_score": found.score, "grid_held_out": found.held_out,
            "fixed_never_below_best_single": bool(found.fallback_score >= found.best_single[1] - 1e-12),
            "note": "computed by this script (the run kept the fixed weights without a grid)"}


def aggregate_collection(name: str, runs_dir: Path, data_dir: str | None, resamples: int, permutations: int,
                         seed: int) -> tuple[dict, dict[str, dict[str, dict[str, float]]]]:
    """One collection's record, and its per-query values (label -> metric -> query -> value)."""
    folder = RunFolder(runs_dir / name)
    if not folder.results.is_file():
        raise FileNotFoundError(f"{folder.results}: the run of {name} has not finished; run it first.")
    results = read_json(folder.results)
    config = results["settings"]["config"]
    split = config["evaluate"]["split"]
    qrels = load_beir(resolve_dataset(name, data_dir)).qrels[split]
    files = system_files(folder, results, split)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: run files missing: {missing}; rerun the collection.")
    values = {label: per_query_metrics(qrels, read_trec(path), METRICS) for label, path in files.items()}
    comparisons = {}
    for label in values:
        comparisons[label] = {}
        for m in METRICS:
            queries = sorted(values[BASELINE][m])
            base = np.array([values[BASELINE][m][q] for q in queries])
            other = np.array([values[label][m][q] for q in queries])
            comparisons[label][m] = compare(base, other, resamples, permutations, seed)
    system = results.get("system") or {}
    first_stage_file = folder.path / "first_stage.json"
    first_stage = read_json(first_stage_file) if first_stage_file.is_file() else {}
    reported = (system.get("test") or {}).get("ndcg@10", {}).get("system")
    if reported is not None and abs(reported - comparisons["system"]["ndcg@10"]["mean"]) > 1e-9:
        raise ValueError(f"{name}: system.test.trec scores {comparisons['system']['ndcg@10']['mean']:.6f} nDCG@10, "
                         f"results.json says {reported:.6f}: the run file and the results disagree")
    settings = results["settings"]
    record = {"run_folder": str(folder.path), "test_queries": len(values[BASELINE]["ndcg@10"]),
              "train_queries": settings["train_queries"], "train_pairs": settings["train_pairs"],
              "dev_queries": settings["dev_queries"], "max_train_queries": config.get("max_train_queries"),
              "files": {label: str(path) for label, path in files.items()}, "systems": comparisons,
              "choice": system.get("choice"), "system_test_as_reported": system.get("test"),
              "fusion_check": fusion_check(first_stage), "first_stage": first_stage}
    if not record["fusion_check"].get("checked"):
        record["fusion_check"]["fixed_weights_on_validation"] = fallback_validation(
            name, config, runs_dir, settings["train_queries"])
    return record, values


def holm_across(records: dict[str, dict]) -> None:
    """Holm over the collections, per (system, metric): adds "p_holm" beside each "p"."""
    labels = {label for r in records.values() for label in r["systems"]}
    for label in labels:
        for m in METRICS:
            names = [n for n, r in records.items() if label in r["systems"]]
            adjusted = adjust_pvalues([records[n]["systems"][label][m]["p"] for n in names], "holm")
            for n, p in zip(names, adjusted):
                records[n]["systems"][label][m]["p_holm"] = p


def pooled(records: dict[str, dict], values: dict[str, dict], resamples: int, permutations: int, seed: int) -> dict:
    """Every test query of the collections together (ids prefixed by collection), and the unweighted mean of the
    per-collection gains; Holm over the pooled comparisons, per metric."""
    out: dict[str, dict] = {}
    labels = sorted({label for r in records.values() for label in r["systems"]})
    for label in labels:
        names = [n for n in records if label in values[n]]
        out[label] = {"collections": names}
        for m in METRICS:
            base = np.concatenate([[values[n][BASELINE][m][q] for q in sorted(values[n][BASELINE][m])] for n in names])
            other = np.concatenate([[values[n][label][m][q] for q in sorted(values[n][BASELINE][m])] for n in names])
            out[label][m] = {**compare(base, other, resamples, permutations, seed),
                             "mean_of_collection_gains": float(np.mean([records[n]["systems"][label][m]["gain"]
                                                                        for n in names]))}
    for m in METRICS:
        tested = [label for label in labels if label != BASELINE]
        for label, p in zip(tested, adjust_pvalues([out[label][m]["p"] for label in tested], "holm")):
            out[label][m]["p_holm"] = p
    return out


def targets(records: dict[str, dict], pool: dict) -> dict:
    """Issue 17 (the chosen system) and issue 16 (the fusion, the fine-tuned first stage), as measured."""
    six = len(records) == len(COLLECTIONS)
    below = [n for n, r in records.items() if r["systems"]["system"]["ndcg@10"]["gain"] < 0
             and r["systems"]["system"]["ndcg@10"]["p_holm"] < 0.05]
    fused = {n: r["fusion_check"].get("never_below_best_single_on_validation",
                                       r["fusion_check"].get("fixed_weights_on_validation", {})
                                       .get("fixed_never_below_best_single")) for n, r in records.items()}
    tuned = pool.get("ensemble (fine-tuned)", {}).get("ndcg@10", {})
    return {
        "collections": list(records), "all_six": six,
        "issue17_system_never_significantly_below": {"met": not below, "significantly_below": below},
        "issue17_system_pooled_gain_ndcg10": {"gain": pool["system"]["ndcg@10"]["gain"],
                                              "mean_of_collection_gains":
                                                  pool["system"]["ndcg@10"]["mean_of_collection_gains"],
                                              "target": 0.02, "met": pool["system"]["ndcg@10"]["gain"] >= 0.02},
        "issue16_fusion_never_below_best_single_on_validation": {
            "by_collection": fused, "met_where_checked": all(v for v in fused.values() if v is not None),
            "not_checked": [n for n, v in fused.items() if v is None],
            "fixed_weights_kept_without_grid": [n for n, r in records.items() if not r["fusion_check"].get("checked")]},
        "issue16_fine_tuned_pooled_gain_ndcg10": {
            "gain": tuned.get("gain"), "p": tuned.get("p"), "p_holm": tuned.get("p_holm"), "target": 0.02,
            "met": bool(tuned) and tuned["gain"] >= 0.02 and tuned["p_holm"] < 0.05},
    }


MAIN_ROWS = [("untrained ensemble", BASELINE), *[(m, m) for m in DEFAULT_ENSEMBLE],
             ("learned fusion", "ensemble (learned fusion)"), ("fine-tuned MiniLM", "minilm (fine-tuned)"),
             ("fine-tuned ensemble", "ensemble (fine-tuned)"),
             ("re-ranker alone", "ensemble + ensemble re-ranker (rerank)"),
             ("re-ranker interp.", "ensemble + ensemble re-ranker (interpolated)"), ("chosen system", "system")]


def table(records: dict[str, dict], pool: dict, metric: str = "ndcg@10") -> str:
    """Markdown: the main systems' test means per collection and pooled; gains over the untrained ensemble with
    their Holm p (over the six collections) below the means."""
    names = list(records)
    head = f"| {metric} (test) | " + " | ".join(f"{n} ({records[n]['test_queries']})" for n in names)
    lines = [head + f" | pooled ({sum(r['test_queries'] for r in records.values())}) | mean of gains |",
             "|---" * (len(names) + 3) + "|"]
    for title, label in MAIN_ROWS:
        cells = []
        for n in names:
            c = records[n]["systems"].get(label, {}).get(metric)
            cells.append("-" if c is None else f"{c['mean']:.3f}" if label == BASELINE else
                         f"{c['mean']:.3f} ({c['gain']:+.3f}, p {c['p_holm']:.2f})")
        p = pool.get(label, {}).get(metric)
        cells.append("-" if p is None else f"{p['mean']:.3f}" if label == BASELINE else
                     f"{p['mean']:.3f} ({p['gain']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}], p {p['p_holm']:.3f})")
        cells.append("" if p is None or label == BASELINE else f"{p['mean_of_collection_gains']:+.3f}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    choice = []
    for n in names:
        c = records[n]["choice"] or {}
        label = c.get("first_stage", "?") + (f" + {c['reranker']} @ {c['weight']:.1f}" if c.get("reranker") else "")
        choice.append(f"{label} (dev {c.get('dev_queries')})")
    lines.append("| system chosen | " + " | ".join(choice) + " | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/collections.yaml")
    parser.add_argument("--datasets", nargs="+", default=COLLECTIONS, choices=COLLECTIONS)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/collections"))
    parser.add_argument("--data-dir", default=os.environ.get("HARDNEG_DATA"))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/collections/collections.json"))
    parser.add_argument("--timings", type=Path, default=Path("benchmarks/collections/timings.json"),
                        help="every hardneg run this script started: wall time, peak RSS, the gate's hash")
    parser.add_argument("--no-run", action="store_true", help="only aggregate finished run folders")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--permutations", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.data_dir:
        os.environ["HARDNEG_DATA"] = args.data_dir
    timings = read_json(args.timings) if args.timings.is_file() else {}
    if not args.no_run:
        for name in args.datasets:  # one at a time: never two heavy runs at once on 2 cores
            command = run_command(args.config, name, args.runs_dir)
            print(f"{name}: {shlex.join(command)}", flush=True)
            record = run_collection(command, args.runs_dir / "logs" / f"{name}.log")
            timings.setdefault(name, []).append(record)
            write_json(args.timings, timings)
            print(f"{name}: rc {record['returncode']}, {record['wall_s']:.0f} s, {record['peak_rss_mb']} MB",
                  flush=True)
    records, values = {}, {}
    for name in args.datasets:
        if not (args.runs_dir / name / "results.json").is_file():
            print(f"{name}: no finished run, left out", file=sys.stderr)
            continue
        records[name], values[name] = aggregate_collection(name, args.runs_dir, args.data_dir, args.resamples,
                                                           args.permutations, args.seed)
        records[name]["runs"] = timings.get(name, [])
    if not records:
        sys.exit("No finished run to aggregate.")
    holm_across(records)
    pool = pooled(records, values, args.resamples, args.permutations, args.seed)
    command = "HARDNEG_DATA=" + (args.data_dir or "") + " python " + shlex.join(["benchmarks/six_collections.py",
                                                                                 *sys.argv[1:]])
    write_json(args.output, {
        "command": command, "date": dt.date.today().isoformat(),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores; {MACHINE_NOTE}",
        "config": args.config, "baseline": BASELINE, "metrics": METRICS,
        "stats": {"bootstrap_resamples": args.resamples, "interval": 0.95, "test": "fisher randomisation, paired",
                  "permutations": args.permutations, "seed": args.seed,
                  "correction": "holm over the collections per (system, metric); pooled: holm over systems"},
        "gate_sha256_now": hashlib.sha256(GATE_FILE.read_bytes()).hexdigest()[:12],
        "collections": records, "pooled": pool, "targets": targets(records, pool)})
    for m in METRICS:
        print(table(records, pool, m) + "\n")
    print(json.dumps(targets(records, pool), indent=1))


if __name__ == "__main__":
    main()

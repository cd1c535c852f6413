"""The layout of a run folder, named once: every writer (the pipeline) and reader (report, figures, benchmark
scripts) asks :class:`RunFolder` for a path instead of spelling it.

::

    RUN/.hardneg.json  .hardneg.lock              hardneg's marker; the owning run's lock
    RUN/config.json  data_report.json  results.json  results.md  analysis.json  report.html  report.md
    RUN/report/*.png                               figures of the report
    RUN/strategies/<strategy>/                     one per negative strategy (see StrategyFolder)
    RUN/strategies/<strategy>/round2/              the second mining round's folder, the same layout
    RUN/runs/<first stage>[.<re-ranker>[+interpolated]].<split>.trec
    RUN/scores/<re-ranker>.<split>.json            cross-encoder scores, fingerprinted by the model
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import lock
from .io import MARKER_NAME, folder_files, read_json, read_marker, remove_stale_temps, write_marker
from .lock import LOCK_NAME

INTERPOLATED = "+interpolated"


def slug(name: str) -> str:
    """A strategy or model name as a folder / file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


@dataclass(frozen=True)
class StrategyFolder:
    """One negative strategy's mining output and trained re-ranker."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def negatives(self) -> Path:
        return self.path / "negatives.jsonl"

    @property
    def mining(self) -> Path:
        """The mining summary; its fingerprint vouches for ``negatives``."""
        return self.path / "mining.json"

    @property
    def likely_positives(self) -> Path:
        return self.path / "likely_positives.jsonl"

    @property
    def model(self) -> Path:
        """The trained re-ranker, a folder ``CrossEncoder(folder)`` loads."""
        return self.path / "model"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def fold(self, number: int) -> Path:
        """Where cross-fitting trains this strategy's re-ranker without fold ``number``'s queries."""
        return self.path / "crossfit" / f"fold{number}"

    def round(self, number: int) -> StrategyFolder:
        """The folder of mining round ``number`` (round 1 is this folder)."""
        return self if number <= 1 else StrategyFolder(self.path / f"round{number}")


@dataclass(frozen=True)
class RunFolder:
    """Every path of a ``hardneg run`` output folder."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    def create(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def claim(self) -> RunFolder:
        """Make this run the folder's one owner: refuse a file, or a folder of someone else's files (hardneg
        never writes over what it did not write), and a folder another live run owns; take the lock, mark the
        folder as hardneg's, and remove what killed runs left half-written."""
        self.check_writable()
        self.create()
        lock.acquire(self.lock, "run")
        write_marker(self.path, "run")
        remove_stale_temps(self.path, recursive=True, owned=True)
        return self

    def check_writable(self) -> None:
        """A ValueError unless the folder is new, empty, or a run folder hardneg wrote."""
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{self.path} is a file, not a folder: give a run folder path (-o / output).")
        if not self.path.is_dir() or self.is_hardnegs():
            return
        found = [f for f in folder_files(self.path, limit=5) if f != LOCK_NAME]  # a lock alone: a killed start
        if found:
            raise ValueError(f"{self.path} holds files hardneg did not write (e.g. {', '.join(found[:3])}); it "
                             "will not write a run over them. Choose a new or empty folder for the run.")

    def is_hardnegs(self) -> bool:
        """Whether hardneg wrote this folder as a run: its marker, or (runs made before the marker) a
        config.json of run settings."""
        marker = read_marker(self.path)
        if marker is not None:
            return marker.get("kind") == "run"
        try:
            config = read_json(self.config) if self.config.is_file() else None
        except (OSError, ValueError):
            return False
        return isinstance(config, dict) and {"dataset", "strategies", "output"} <= set(config)

    @property
    def marker(self) -> Path:
        """The file that says hardneg wrote this folder (see :func:`hardneg.io.write_marker`)."""
        return self.path / MARKER_NAME

    @property
    def lock(self) -> Path:
        """The lock file of the run that owns the folder now (see :mod:`hardneg.lock`)."""
        return self.path / LOCK_NAME

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def data_report(self) -> Path:
        return self.path / "data_report.json"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def results_markdown(self) -> Path:
        return self.path / "results.md"

    @property
    def analysis(self) -> Path:
        return self.path / "analysis.json"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def report_markdown(self) -> Path:
        return self.path / "report.md"

    @property
    def figures(self) -> Path:
        """The report's PNG figures (linked from report.md by the relative name ``report/<file>``)."""
        return self.path / "report"

    def figure(self, file_name: str) -> Path:
        return self.figures / file_name

    def default_cache(self) -> Path:
        """Where embeddings are cached unless ``cache_dir`` is set: beside the run, shared by sibling runs."""
        return self.path.parent / ".cache" / "embeddings"

    @property
    def strategies_dir(self) -> Path:
        return self.path / "strategies"

    def pretrained(self, stamp: str) -> Path:
        """Where the re-ranker pretrained with fingerprint ``stamp`` trains (``train.pretrain_queries``)."""
        return self.path / "pretrain" / stamp

    def pretrained_models(self) -> list[Path]:
        """The finished pretrained re-rankers' model folders, by fingerprint."""
        return sorted((self.path / "pretrain").glob("*/model"))

    def strategy(self, name: str) -> StrategyFolder:
        return StrategyFolder(self.strategies_dir / slug(name))

    def strategies(self) -> list[StrategyFolder]:
        """The strategy folders present, by folder name."""
        if not self.strategies_dir.is_dir():
            return []
        return [StrategyFolder(p) for p in sorted(self.strategies_dir.iterdir()) if p.is_dir()]

    def trec(self, first_stage: str, split: str, reranker: str | None = None, interpolated: bool = False) -> Path:
        """The TREC run file of a first stage alone, re-ranked by ``reranker``, or interpolated with it."""
        if reranker is None or reranker == "none":
            return self.path / "runs" / f"{slug(first_stage)}.{split}.trec"
        tag = slug(reranker) + (INTERPOLATED if interpolated else "")
        return self.path / "runs" / f"{slug(first_stage)}.{tag}.{split}.trec"

    def system_trec(self, split: str) -> Path:
        """The TREC run file of the system the run hands over (whatever it was chosen to be)."""
        return self.path / "runs" / f"system.{split}.trec"

    def trec_for(self, row, split: str) -> Path:
        """The TREC run file of a results row (anything with ``first_stage``, ``reranker`` and ``mode``)."""
        if row.mode == "first stage":
            return self.trec(row.first_stage, split)
        return self.trec(row.first_stage, split, row.reranker, interpolated=row.mode == "interpolated")

    def scores(self, reranker: str, split: str) -> Path:
        """A re-ranker's stored (query, document) scores on ``split``."""
        return self.path / "scores" / f"{slug(reranker)}.{split}.json"


def finished_runs(roots: list[Path]) -> list[Path]:
    """Every run folder under ``roots`` that finished its evaluation (results.json and analysis.json), sorted."""
    found = {p.parent for root in roots for p in Path(root).rglob(RunFolder(".").results.name)
             if RunFolder(p.parent).analysis.exists()}
    return sorted(found)

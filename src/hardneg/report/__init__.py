"""What a run says about itself: results.md (written by the pipeline), the HTML + Markdown report
(``hardneg report``) and the migration of run folders made before analysis.json (``hardneg migrate``).

- :mod:`.results`: results.md.
- :mod:`.document`: the report's document model; :mod:`.markdown` and :mod:`.page` render it.
- :mod:`.build`: the report's content, read from a run folder; :mod:`.figures` draws its PNGs.
- :mod:`.migrate`: rebuilds analysis.json from a run's TREC files, score stores and qrels.
"""

from __future__ import annotations

from .build import ReportFiles, build_report, mined_examples, significance_marks, wins_losses
from .labels import METRIC_LABELS, PRIMARY, system_label
from .migrate import Migration, migrate
from .results import results_markdown, results_table

__all__ = [
    "METRIC_LABELS",
    "PRIMARY",
    "Migration",
    "ReportFiles",
    "build_report",
    "migrate",
    "mined_examples",
    "results_markdown",
    "results_table",
    "significance_marks",
    "system_label",
    "wins_losses",
]

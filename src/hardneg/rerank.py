"""Use a trained re-ranker: score a query against a list of texts and return them best first."""

from __future__ import annotations

import json
from pathlib import Path

from .crossencoder import load_cross_encoder


def rerank(model, query: str, texts: list[str], batch_size: int = 32, top_k: int | None = None,
           max_length: int | None = None) -> list[tuple[int, float]]:
    """(index into ``texts``, score) best first, ties by index. ``model``: a ``CrossEncoder`` or a folder / id.

    Scores are what ``CrossEncoder.predict`` returns (the sigmoid of the logit for a one-label model). ``top_k``
    (at least 1; None: all), ``batch_size`` (at least 1) and ``max_length`` (1 up to the model's positions) are
    checked before any scoring.
    """
    for name, value in (("top_k", top_k), ("batch_size", batch_size), ("max_length", max_length)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}.")
    if isinstance(model, (str, Path)):
        model = load_cross_encoder(str(model), max_length)
    limit = position_limit(model)
    if max_length is not None and limit is not None and max_length > limit:
        raise ValueError(f"max_length {max_length} is more than the model's {limit} token positions.")
    if not texts:
        return []
    scores = model.predict([(query, t) for t in texts], batch_size=batch_size, show_progress_bar=False,
                           convert_to_numpy=True).reshape(-1)
    order = sorted(range(len(texts)), key=lambda i: (-float(scores[i]), i))
    return [(i, float(scores[i])) for i in order[:top_k]]


def position_limit(model) -> int | None:
    """The most tokens a (query, document) pair may have in ``model``: its position embeddings (less the offset
    RoBERTa-like models reserve), or None when the model does not say."""
    config = getattr(getattr(model, "model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    offset = (getattr(config, "pad_token_id", 0) or 0) + 1 if getattr(config, "model_type", "") in {
        "roberta", "xlm-roberta", "camembert"} else 0
    return positions - offset


def read_docs(path: str | Path) -> list[str]:
    """Documents from a file: JSONL with ``text`` (and optional ``title``), or plain text, one per line.

    Blank lines are skipped; a JSONL line that is not an object with a text or title is an error naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    lines = path.read_text(encoding="utf-8").splitlines()
    is_jsonl = path.suffix == ".jsonl" or next((ln.lstrip().startswith("{") for ln in lines if ln.strip()), False)
    docs = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not is_jsonl:
            docs.append(line.strip())
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from None
        if not isinstance(record, dict) or not (str(record.get("text") or "").strip()
                                                 or str(record.get("title") or "").strip()):
            raise ValueError(f"{path}:{lineno}: expected an object with a 'text' (and optional 'title').")
        docs.append(f"{record.get('title') or ''} {record.get('text') or ''}".strip())
    if not docs:
        raise ValueError(f"{path}: no documents.")
    return docs

"""The request bodies each endpoint accepts (pydantic, strict types) and the response bodies it returns, in the
shapes the clients already speak: Cohere's ``/v1/rerank`` and ``/v2/rerank``, Hugging Face
text-embeddings-inference's ``/rerank``, and hardneg's own ``/search``.

Fields a shape defines but this server cannot honour are accepted (a client must not break on them) and reported:
in Cohere's ``meta.warnings``, and in the log.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .settings import option

_STRICT = ConfigDict(strict=True, extra="allow")


class _CohereRerank(BaseModel):
    """What Cohere's v1 and v2 re-rank requests share."""

    model_config = _STRICT
    query: str
    documents: list[str | dict[str, Any]]
    model: str | None = None
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False


class CohereV1Rerank(_CohereRerank):
    """Cohere v1: documents are strings or objects (their ``text``, or the ``rank_fields`` named)."""

    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = None


class CohereV2Rerank(_CohereRerank):
    """Cohere v2: documents are strings (objects with a ``text`` are taken too, as earlier v2 versions sent)."""

    max_tokens_per_doc: int | None = Field(None, ge=1)


class TEIRerank(BaseModel):
    """text-embeddings-inference: ``texts``; ``raw_scores`` and ``truncate`` are accepted (see docs/SERVING.md)."""

    model_config = _STRICT
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: str | None = None


class SearchRequest(BaseModel):
    model_config = _STRICT
    query: str
    top_k: int = Field(10, ge=1)


class LimitError(ValueError):
    """A request the server will not answer as asked: ``status`` and a message naming what to change."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def document_texts(documents: list, rank_fields: list[str] | None = None) -> list[str]:
    """The text of each Cohere document: a string as is; an object's ``rank_fields`` as "field: value" lines, or
    its ``text``."""
    texts = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            texts.append(doc)
        elif rank_fields:
            missing = [f for f in rank_fields if f not in doc]
            if missing:
                raise LimitError(f"documents[{i}] has no field {missing[0]!r}, which rank_fields names")
            texts.append("\n".join(f"{f}: {_field_text(doc[f], i, f)}" for f in rank_fields))
        elif "text" in doc:
            texts.append(_field_text(doc["text"], i, "text"))
        else:
            raise LimitError(f"documents[{i}] is an object without a 'text' field: give one, or name the fields to "
                             "rank on in rank_fields")
    return texts


def _field_text(value: Any, i: int, name: str) -> str:
    if not isinstance(value, str):
        raise LimitError(f"documents[{i}].{name} must be a string, got {type(value).__name__}")
    return value


def check_texts(query: str, texts: list[str], settings) -> None:
    """The limits every re-rank request must keep; a broken one raises :class:`LimitError` naming it."""
    check_query(query, settings)
    if not texts:
        raise LimitError("no documents: give at least one document to re-rank")
    if len(texts) > settings.max_documents:
        raise LimitError(f"{len(texts)} documents in one request; the limit is {settings.max_documents} "
                         f"(the server's --{option('max_documents')}): split the request")
    for i, text in enumerate(texts):
        if len(text) > settings.max_document_chars:
            raise LimitError(f"document {i} has {len(text)} characters; the limit is {settings.max_document_chars} "
                             f"(the server's --{option('max_document_chars')}): shorten or chunk it")
        if not text.strip():
            raise LimitError(f"document {i} is empty")


def check_query(query: str, settings) -> None:
    if not query.strip():
        raise LimitError("the query is empty")
    if len(query) > settings.max_document_chars:
        raise LimitError(f"the query has {len(query)} characters; the limit is {settings.max_document_chars} "
                         f"(the server's --{option('max_document_chars')})")


def truncate_words(texts: list[str], max_words: int | None) -> list[str]:
    """Cohere's ``max_tokens_per_doc``, approximated by whitespace-separated words (a word is at least one
    token, so no document keeps more tokens than a word-limit allows words); the model's own max_length
    truncates what remains."""
    if max_words is None:
        return texts
    return [" ".join(t.split()[:max_words]) if len(t.split()) > max_words else t for t in texts]


def ignored_fields(request: BaseModel, fields: tuple[str, ...] = ()) -> list[str]:
    """Fields the request set that this server does not act on: unknown ones, and ``fields`` when set."""
    extra = sorted(request.model_extra or {})
    named = [f for f in fields if getattr(request, f, None) is not None]
    return named + extra


def cohere_response(request_id: str, ranked: list[tuple[int, float]], documents: list, return_documents: bool,
                    version: str, warnings: list[str]) -> dict:
    """Cohere's rerank response: results best first, with the document when asked (v1 returns an object
    document as sent; strings come back as {"text": ...})."""
    results = []
    for index, score in ranked:
        item: dict = {"index": index, "relevance_score": score}
        if return_documents:
            doc = documents[index]
            item["document"] = doc if isinstance(doc, dict) else {"text": doc}
        results.append(item)
    meta: dict = {"api_version": {"version": version}}
    if warnings:
        meta["warnings"] = warnings
    return {"id": request_id, "results": results, "meta": meta}


def tei_response(ranked: list[tuple[int, float]], texts: list[str], return_text: bool) -> list[dict]:
    return [{"index": i, "score": s, **({"text": texts[i]} if return_text else {})} for i, s in ranked]


def search_response(request_id: str, hits: list) -> dict:
    return {"id": request_id, "results": [
        {"rank": h.rank, "doc_id": h.doc_id, "title": h.title, "text": h.text,
         "first_stage_score": h.first_stage_score, "reranker_score": h.reranker_score} for h in hits]}

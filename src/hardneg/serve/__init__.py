"""``hardneg serve``: the saved system over HTTP, in the shapes search and RAG stacks already call re-rankers with
(Cohere's ``/v1/rerank`` and ``/v2/rerank``, text-embeddings-inference's ``/rerank``), plus ``/search``.

FastAPI and uvicorn (``pip install 'hardneg[serve]'``) are imported only by :mod:`.app` and :mod:`.server`, so
importing this package, and the command line, stays light. See docs/SERVING.md.
"""

from __future__ import annotations

from .settings import TOKEN_ENV, ServeSettings

__all__ = ["ServeSettings", "TOKEN_ENV"]

"""Issue 19, the trained system over HTTP: Cohere's /v1 and /v2 rerank, TEI's /rerank, /search, /health, /info
and /metrics; a token, limits, timeouts and micro-batching; no stack trace in a response.

In-process tests run the app with FastAPI's TestClient against a deterministic fake system; the last ones start a
real `hardneg serve` process on a tiny saved system (hash + BM25 first stage, the tiny random BERT re-ranker
interpolated) and call it with the official Cohere SDK and plain httpx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError
from dataclasses import asdict
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'hardneg[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from hardneg.config import RunConfig  # noqa: E402
from hardneg.io import write_json  # noqa: E402
from hardneg.serve import ServeSettings  # noqa: E402
from hardneg.serve.app import create_app  # noqa: E402
from hardneg.serve.batching import MicroBatcher  # noqa: E402
from hardneg.system import SYSTEM_FILE, Hit, System, SystemSpec  # noqa: E402

from .conftest import write_beir  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOCS = ["Solar panels make electricity.", "Espresso is strong coffee.", "Batteries store solar electricity."]


# --- a deterministic fake system --------------------------------------------------------------------------------

class FakeModel:
    """Scores a pair by the words query and document share; records each batch's size."""

    def __init__(self):
        self.batches: list[int] = []

    def predict(self, pairs, **options):
        self.batches.append(len(pairs))
        return np.array([len(set(q.lower().split()) & set(d.lower().rstrip(".").split())) for q, d in pairs],
                        dtype=float)


class FakeSystem:
    """System's interface: the whole system adds 0.5 for each document's position from the end (a stand-in for
    its first stage) to the re-ranker's score, which it asks its model for, as System does."""

    def __init__(self, mode: str = "interpolated", with_model: bool = True, fail: Exception | None = None,
                 delay: float = 0.0):
        self.spec = SimpleNamespace(mode=mode, reranker="fake" if with_model else None, model="fake-model",
                                    first_stage="ensemble", members=["hash", "bm25"], weight=0.5, version="test",
                                    choice={"reason": "a fake system"})
        self.model = FakeModel() if with_model else None
        self.fail, self.delay, self.calls = fail, delay, []

    def rerank(self, query, docs, top_k=None, bare=False):
        self.calls.append(("rerank", query, len(docs), bare))
        time.sleep(self.delay)
        if self.fail:
            raise self.fail
        ce = self.model.predict([(query, d) for d in docs]) if self.model else np.zeros(len(docs))
        scores = [float(ce[i]) + 0.5 * (len(docs) - i) / len(docs) for i in range(len(docs))]
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        return [(i, scores[i]) for i in order[:top_k]]

    def search(self, query, k=10):
        self.calls.append(("search", query, k))
        return [Hit(f"d{r}", r, 1.0 / r, 0.5, f"Title {r}", f"Text {r}") for r in range(1, k + 1)]


def client_for(system, **settings) -> TestClient:
    return TestClient(create_app(system, ServeSettings(**{"token": TOKEN, **settings})))


@pytest.fixture
def fake():
    return FakeSystem()


@pytest.fixture
def client(fake):
    with client_for(fake) as c:
        yield c


# --- the endpoints ----------------------------------------------------------------------------------------------

def test_cohere_v2_ranks_with_the_whole_system(client, fake):
    r = client.post("/v2/rerank", json={"model": "any", "query": "solar electricity", "documents": DOCS, "top_n": 2,
                                        "return_documents": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["index"] for x in body["results"]] == [0, 2]  # both share 2 words; the first stage favours 0
    assert body["results"][0]["document"] == {"text": DOCS[0]}
    assert body["id"] == r.headers["x-request-id"] and body["meta"]["api_version"]["version"] == "2"
    assert "'any' is not served here" in body["meta"]["warnings"][0]
    assert fake.calls == [("rerank", "solar electricity", 3, False)]


def test_cohere_v1_takes_strings_objects_and_rank_fields(client):
    docs = [{"text": DOCS[0], "url": "a"}, DOCS[1], {"text": DOCS[2]}]
    r = client.post("/v1/rerank", json={"query": "solar electricity", "documents": docs, "return_documents": True,
                                        "max_chunks_per_doc": 3}, headers=AUTH)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [0, 2, 1] and results[0]["document"] == docs[0]
    assert r.json()["meta"]["warnings"] == ["'max_chunks_per_doc' is not supported by this server and was ignored"]
    fields = client.post("/v1/rerank", json={"query": "coffee", "rank_fields": ["title"],
                                             "documents": [{"title": "tea"}, {"title": "coffee"}]}, headers=AUTH)
    assert [x["index"] for x in fields.json()["results"]] == [1, 0]
    no_text = client.post("/v1/rerank", json={"query": "q", "documents": [{"body": "x"}]}, headers=AUTH)
    assert no_text.status_code == 422 and "without a 'text' field" in no_text.json()["message"]


def test_tei_rerank_is_a_bare_list(client):
    r = client.post("/rerank", json={"query": "strong coffee", "texts": DOCS, "return_text": True,
                                     "raw_scores": False, "truncate": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out, list) and out[0]["index"] == 1 and out[0]["text"] == DOCS[1]
    assert set(out[0]) == {"index", "score", "text"} and out[0]["score"] > out[1]["score"]


def test_the_reranker_alone_per_request_or_by_default_and_its_pairs_are_batched(fake):
    with client_for(fake) as c:
        r = c.post("/v2/rerank?bare=true", json={"query": "solar electricity", "documents": DOCS}, headers=AUTH)
        assert r.status_code == 200 and not fake.calls  # the system's rerank was not called: the batcher scored
        assert [x["relevance_score"] for x in r.json()["results"]] == [2.0, 2.0, 0.0]
        assert "hardneg_pairs_scored_total 3" in c.get("/metrics", headers=AUTH).text
    with client_for(fake, bare=True) as c:
        assert c.get("/info", headers=AUTH).json()["serving"] == "re-ranker alone"
        c.post("/rerank", json={"query": "solar", "texts": DOCS}, headers=AUTH)
        assert not fake.calls
        c.post("/rerank?bare=false", json={"query": "solar", "texts": DOCS}, headers=AUTH)
        assert fake.calls == [("rerank", "solar", 3, False)]


def test_a_system_without_a_reranker_refuses_bare_at_startup_and_per_request():
    first_stage_only = FakeSystem(mode="first stage", with_model=False)
    with pytest.raises(ValueError, match="no re-ranker.*without --bare"):
        create_app(first_stage_only, ServeSettings(bare=True))
    with client_for(first_stage_only) as c:
        ok = c.post("/v2/rerank", json={"query": "solar", "documents": DOCS}, headers=AUTH)
        assert ok.status_code == 200 and len(ok.json()["results"]) == 3
        bare = c.post("/v2/rerank?bare=true", json={"query": "solar", "documents": DOCS}, headers=AUTH)
        assert bare.status_code == 422 and "no re-ranker" in bare.json()["message"]


def test_search_returns_documents_with_ids_scores_and_text(client):
    r = client.post("/search", json={"query": "solar", "top_k": 2}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["results"][1] == {"rank": 2, "doc_id": "d2", "title": "Title 2", "text": "Text 2",
                                      "first_stage_score": 0.5, "reranker_score": 0.5}
    over = client.post("/search", json={"query": "solar", "top_k": 5000}, headers=AUTH)
    assert over.status_code == 422 and "--max-top-k" in over.json()["message"]


def test_health_info_and_metrics(client):
    assert client.get("/health").json() == {"status": "ok"}  # open: a liveness probe carries no token
    info = client.get("/info", headers=AUTH).json()
    assert info["mode"] == "interpolated" and info["first_stage"] == "ensemble" and info["serving"] == "whole system"
    assert info["versions"]["hardneg"] and info["limits"]["max_documents"] == 1000 and info["authentication"]
    client.post("/v2/rerank", json={"query": "solar", "documents": DOCS}, headers=AUTH)
    client.post("/v2/rerank", json={"query": "", "documents": DOCS}, headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    assert 'hardneg_requests_total{route="/v2/rerank",status="200"} 1' in text
    assert 'hardneg_requests_total{route="/v2/rerank",status="422"} 1' in text
    assert 'hardneg_request_duration_seconds_count{route="/v2/rerank"} 2' in text
    assert "hardneg_pairs_scored_total 3" in text and "hardneg_documents_ranked_total 3" in text


# --- bad requests -----------------------------------------------------------------------------------------------

BAD = [
    ("empty query", "/v2/rerank", {"query": "  ", "documents": DOCS}, 422, "the query is empty"),
    ("no documents", "/v2/rerank", {"query": "q", "documents": []}, 422, "no documents"),
    ("100,000 documents", "/v1/rerank", {"query": "q", "documents": ["d"] * 100_000}, 422,
     "100000 documents in one request; the limit is 1000 (the server's --max-documents)"),
    ("a long document", "/rerank", {"query": "q", "texts": ["x" * 10_001]}, 422, "--max-document-chars"),
    ("an empty document", "/rerank", {"query": "q", "texts": ["ok", ""]}, 422, "document 1 is empty"),
    ("query not a string", "/v2/rerank", {"query": 3, "documents": DOCS}, 422, "body.query: Input should be"),
    ("documents not a list", "/v2/rerank", {"query": "q", "documents": "a doc"}, 422, "body.documents"),
    ("top_n a string", "/v2/rerank", {"query": "q", "documents": DOCS, "top_n": "2"}, 422, "body.top_n"),
    ("top_n zero", "/v2/rerank", {"query": "q", "documents": DOCS, "top_n": 0}, 422, "body.top_n"),
    ("texts missing", "/rerank", {"query": "q"}, 422, "body.texts: Field required"),
    ("a body that is a list", "/search", ["q"], 422, "body"),
    ("bare not a boolean", "/v2/rerank?bare=maybe", {"query": "q", "documents": DOCS}, 422, "query.bare"),
]


@pytest.mark.parametrize("path, body, status, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_that_says_why_and_are_logged(client, fake, caplog, path, body, status, message):
    with caplog.at_level(logging.WARNING, logger="hardneg.serve"):
        r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == status and message in r.json()["message"], r.text
    assert not fake.calls and r.json()["request_id"] in caplog.text and message in caplog.text


def test_a_body_that_is_not_json_is_400(client):
    r = client.post("/v2/rerank", content=b"query=solar", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["message"] == "the request body is not valid JSON"
    form = client.post("/v2/rerank", content=b"query=solar", headers={**AUTH, "content-type": "text/plain"})
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["message"]
    assert client.get("/nowhere", headers=AUTH).status_code == 404
    assert client.get("/v2/rerank", headers=AUTH).status_code == 405


def test_the_token_is_required_and_compared(client):
    body = {"query": "solar", "documents": DOCS}
    missing = client.post("/v2/rerank", json=body)
    assert missing.status_code == 401 and "missing bearer token" in missing.json()["message"]
    assert missing.headers["www-authenticate"] == "Bearer"
    for wrong in ("Bearer nope", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
        assert client.post("/v2/rerank", json=body, headers={"Authorization": wrong}).status_code == 401
    assert client.get("/metrics").status_code == 401 and client.get("/info").status_code == 401
    assert client.post("/v2/rerank", json=body, headers=AUTH).status_code == 200


def test_an_oversize_body_is_413_with_or_without_a_length(fake):
    with client_for(fake, max_body_bytes=2000) as c:
        big = {"query": "q", "documents": ["word " * 100] * 5}
        r = c.post("/v2/rerank", json=big, headers=AUTH)
        assert r.status_code == 413 and "--max-body-bytes" in r.json()["message"]
        streamed = c.post("/v2/rerank", content=iter([json.dumps(big).encode()[:1500]] * 2),
                          headers={**AUTH, "content-type": "application/json"})
        assert streamed.status_code == 413 and not fake.calls


def test_an_internal_error_is_a_generic_500_and_the_traceback_is_logged(caplog):
    broken = FakeSystem(fail=RuntimeError("secret detail from deep inside"))
    with client_for(broken) as c, caplog.at_level(logging.ERROR, logger="hardneg.serve"):
        r = c.post("/v2/rerank", json={"query": "solar", "documents": DOCS}, headers=AUTH)
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text
    assert r.json()["request_id"] in r.json()["message"]
    assert "secret detail from deep inside" in caplog.text and "Traceback" in caplog.text


def test_a_slow_request_times_out_with_504():
    with client_for(FakeSystem(delay=0.5), timeout_s=0.1) as c:
        r = c.post("/v2/rerank", json={"query": "solar", "documents": DOCS}, headers=AUTH)
    assert r.status_code == 504 and "--timeout" in r.json()["message"]


def test_concurrent_requests_share_cross_encoder_batches():
    fake = FakeSystem()
    app = create_app(fake, ServeSettings(batch_wait_ms=100, batch_pairs=64))

    async def many():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*[http.post("/v2/rerank?bare=true", json={"query": f"solar {i}",
                                                                                  "documents": DOCS})
                                          for i in range(8)])

    try:
        answers = asyncio.run(many())
    finally:
        app.app.state.engine.close()
    assert all(a.status_code == 200 for a in answers)
    assert sum(fake.model.batches) == 24 and len(fake.model.batches) < 8


# --- the micro-batcher on its own -------------------------------------------------------------------------------

def test_the_batcher_gathers_queued_pairs_caps_batches_and_skips_cancelled_ones():
    """Jobs queued while a batch is scored share the next one, up to max_pairs without splitting a job."""
    release, sizes = threading.Event(), []

    def predict(pairs):
        sizes.append(len(pairs))
        release.wait(5)
        return np.array([float(len(d)) for _, d in pairs])

    batcher = MicroBatcher(predict, max_pairs=4, max_wait_s=0.0)
    first = batcher.submit([("q", "a")])
    time.sleep(0.05)  # the worker is now blocked scoring `first`; the next ones queue up
    jobs = [batcher.submit([("q", "b" * n), ("q", "c")]) for n in (1, 2, 3)]
    three = batcher.submit([("q", "x")] * 3)
    dropped = batcher.submit([("q", "dropped")])
    assert dropped.cancel()
    release.set()
    assert first.result(5).tolist() == [1.0]
    assert [j.result(5).tolist() for j in jobs] == [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]
    assert three.result(5).tolist() == [1.0] * 3
    # two queued jobs fill a batch of 4; the third would not fit beside the 3-pair job, which goes next; the
    # cancelled job is never scored
    assert sizes == [1, 4, 2, 3]
    with pytest.raises(CancelledError):
        dropped.result(0)
    batcher.close()


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    calls = []

    def predict(pairs):
        calls.append(len(pairs))
        if len(calls) == 1:
            raise RuntimeError("model broke")
        return np.ones(len(pairs))

    batcher = MicroBatcher(predict, max_pairs=8, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="model broke"):
        batcher.submit([("q", "d")]).result(5)
    assert batcher.submit([("q", "d"), ("q", "e")]).result(5).tolist() == [1.0, 1.0]
    batcher.close()


# --- a real server process, called by real clients --------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_system(tmp_path_factory, tiny_bert):
    """A tiny real saved system: the hash + BM25 first stage over the 12-document fixture, the tiny random BERT
    re-ranker interpolated with it (written as a run writes system.json, without training)."""
    root = tmp_path_factory.mktemp("served")
    beir = write_beir(root / "tiny")
    spec = SystemSpec(
        dataset=str(beir), first_stage="ensemble", members=["hash", "bm25"], weights=[1.0, 1.0], fusion="zscore",
        depth=10, settings={"embed_max_seq_length": None, "embed_dtype": "float16",
                            "search": RunConfig(dataset=str(beir)).search.model_dump(), "kept_variance": 0.95,
                            "seed": 7, "cache_dir": str(root / "cache")},
        reranker="tiny", model=tiny_bert, mode="interpolated", weight=0.5, rerank_depth=5, max_length=32,
        choice={"reason": "a test system"})
    write_json(root / SYSTEM_FILE, asdict(spec))
    return root


@pytest.fixture(scope="module")
def server(saved_system):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HARDNEG_SERVE_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "hardneg", "serve", str(saved_system), "--port", str(port),
                                "--batch-wait-ms", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`hardneg serve` exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("`hardneg serve` did not answer /health within 120 s")
    yield url
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def _local_only(seen: list[str]):
    return httpx.Client(event_hooks={"request": [lambda request: seen.append(str(request.url))]})


def test_the_cohere_sdk_v2_and_v1_parse_the_servers_answers(server, saved_system):
    cohere = pytest.importorskip("cohere")
    seen: list[str] = []
    expected = System.load(saved_system).rerank("solar electricity", DOCS)
    v2 = cohere.ClientV2(base_url=server, api_key=TOKEN, httpx_client=_local_only(seen))
    answer = v2.rerank(model="hardneg", query="solar electricity", documents=DOCS, top_n=2)
    assert [(r.index, r.relevance_score) for r in answer.results] == expected[:2]
    v1 = cohere.Client(base_url=server, api_key=TOKEN, httpx_client=_local_only(seen))
    old = v1.rerank(query="solar electricity", documents=[DOCS[0], {"text": DOCS[1]}, DOCS[2]],
                    return_documents=True)
    assert [r.index for r in old.results] == [i for i, _ in expected]
    assert old.results[0].document.text == DOCS[expected[0][0]]
    assert seen and all(u.startswith(f"{server}/v") for u in seen)  # no call anywhere but this server
    wrong = cohere.ClientV2(base_url=server, api_key="wrong", httpx_client=_local_only(seen))
    with pytest.raises(cohere.errors.UnauthorizedError):
        wrong.rerank(model="hardneg", query="solar", documents=DOCS)


def test_httpx_against_the_server_tei_bare_search_and_refusals(server, saved_system):
    system = System.load(saved_system)
    http = httpx.Client(base_url=server, headers=AUTH, timeout=30)
    tei = http.post("/rerank", json={"query": "coffee", "texts": DOCS, "return_text": True})
    assert [(x["index"], x["score"]) for x in tei.json()] == system.rerank("coffee", DOCS)
    bare = http.post("/v2/rerank?bare=true", json={"query": "coffee", "documents": DOCS}).json()["results"]
    alone = system.rerank("coffee", DOCS, bare=True)
    assert [x["index"] for x in bare] == [i for i, _ in alone]
    assert np.allclose([x["relevance_score"] for x in bare], [s for _, s in alone], atol=1e-5)
    found = http.post("/search", json={"query": "how do solar panels make electricity", "top_k": 3}).json()
    assert [h["doc_id"] for h in found["results"]] == [h.doc_id for h in system.search(
        "how do solar panels make electricity", 3)]
    assert found["results"][0]["title"] and found["results"][0]["reranker_score"] is not None
    assert http.post("/v2/rerank", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert http.post("/v2/rerank", json={"query": "q", "documents": []}).status_code == 422
    assert httpx.post(f"{server}/v2/rerank", json={"query": "q", "documents": DOCS}).status_code == 401
    info = http.get("/info").json()
    assert info["mode"] == "interpolated" and info["members"] == ["hash", "bm25"]
    metrics = http.get("/metrics").text
    assert 'route="/rerank",status="200"' in metrics and "hardneg_pairs_scored_total 0" not in metrics

"""URL fetching against a local HTTP server on 127.0.0.1: pages, a redirect, errors, a slow and a huge response."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from hardneg.ingest import FetchConfig, ingest
from hardneg.ingest.fetch import fetch_urls

PAGE = ("<html><head><title>{t}</title></head><body><nav><ul><li>Home</li></ul></nav><article><h1>{t}</h1>"
        "<p>{t} explains the feature in enough words for the extractor to keep this paragraph as main text.</p>"
        "</article></body></html>")


class Handler(BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", length: bool = True):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.path = self.path.rstrip("/") or "/"
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if self.path in ("/a", "/b"):
            self._send(200, PAGE.format(t=f"Page {self.path[1:]}").encode())
        elif self.path == "/old":
            self.send_response(301)
            self.send_header("Location", "/a")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/missing":
            self._send(404, b"not found")
        elif self.path == "/flaky":  # fails once, then works: retried
            if Handler.hits[self.path] == 1:
                self._send(503, b"busy")
            else:
                self._send(200, PAGE.format(t="Flaky page").encode())
        elif self.path == "/slow":
            time.sleep(1.0)
            self._send(200, PAGE.format(t="Slow").encode())
        elif self.path == "/huge":  # no Content-Length: the cap must stop the stream
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"x" * 4096)
        elif self.path == "/image":
            self._send(200, b"\x89PNG....", "image/png")
        elif self.path == "/notes.txt":
            self._send(200, b"Plain notes about the agent.", "text/plain")


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # the client hanging up on /slow and /huge is expected
        pass


@pytest.fixture(scope="module")
def server():
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


FAST = FetchConfig(timeout=0.3, retries=1, backoff=0.01, max_bytes=50_000, concurrency=3)


def test_fetch_pages_redirect_and_failures(server):
    urls = [f"{server}/{p}" for p in ("a", "b", "old", "missing", "flaky", "slow", "huge", "image", "notes.txt")]
    urls.append("ftp://127.0.0.1/file.txt")
    docs, skips = fetch_urls(urls, FAST, progress=False)
    by_id = {d.doc_id: d for d in docs}
    assert set(by_id) == {f"{server}/{p}" for p in ("a", "b", "old", "flaky", "notes.txt")}
    assert by_id[f"{server}/a"].title == "Page a"
    assert by_id[f"{server}/old"].metadata["final_url"] == f"{server}/a"
    assert by_id[f"{server}/notes.txt"].type == "text"
    reasons = {s.source.rsplit("/", 1)[-1]: s.reason for s in skips}
    assert reasons == {"missing": "http error", "slow": "timeout", "huge": "too large",
                       "image": "unsupported content type", "file.txt": "unsupported scheme"}
    assert Handler.hits["/missing"] == 1  # a 404 is not retried
    assert Handler.hits["/slow"] == 2     # a timeout is, retries + 1 times


def test_ingest_urls_with_pairs_by_url(server, tmp_path):
    (tmp_path / "urls.txt").write_text(f"# docs\n{server}/a\n{server}/b/\n{server}/old\n{server}/missing\n")
    (tmp_path / "pairs.csv").write_text(f"query,positive\npage a,{server}/a#top\npage b,{server}/b\n"
                                        f"moved,{server}/old\n")
    result = ingest([], tmp_path / "out", urls=tmp_path / "urls.txt", pairs=[tmp_path / "pairs.csv"], fetch=FAST,
                    dedup="exact", progress=False)
    report = result.report
    assert report.urls_fetched == 4 and report.documents_kept == 2  # /old is an exact copy of /a
    assert {s.reason for s in report.skipped} == {"http error", "duplicate"}
    assert report.pairs_kept == 3 and report.pairs_to_duplicate == 1

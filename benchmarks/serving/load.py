"""Load test of `hardneg serve`: start the server on a run folder, send it concurrent re-rank requests drawn from the
run's own collection, and record throughput, latency percentiles, non-2xx answers and lost requests.

Usage:
    python benchmarks/serving/load.py RUN_DIR --name demo [--clients 50] [--requests 20] [--documents 20]
        [--endpoint /v2/rerank] [--bare] [--serve-args "--batch-pairs 64"]

Writes benchmarks/serving/load_<name>.json: the command, machine, date, the served system (mode, re-ranker, first
stage), the server's settings, and the figures. The server runs with its defaults unless --serve-args says
otherwise; its log goes to <output>.log beside the JSON when a request fails.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from hardneg.data import load_beir
from hardneg.io import write_json

HERE = Path(__file__).resolve().parent
TOKEN = "load-test-token"
MAX_CHARS = 2000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: str, port: int, bare: bool, extra: list[str], log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "hardneg", "serve", run_dir, "--port", str(port), *(["--bare"] if bare else []),
               *extra]
    env = {**os.environ, "HARDNEG_SERVE_TOKEN": TOKEN}
    log = log_path.open("w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, limit_s: float = 900) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}; its log:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    sys.exit(f"the server did not answer /health within {limit_s:.0f} s; log: {log_path}")


def payloads(dataset_path: str, count: int, documents: int, endpoint: str, seed: int = 0) -> list[dict]:
    """``count`` requests, each a collection query with ``documents`` documents of the collection (each cut to
    its first ``MAX_CHARS`` characters: a re-ranker reads a few hundred tokens at most)."""
    dataset = load_beir(dataset_path)
    corpus, queries = dataset.corpus, list(dataset.queries.texts)
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        picked = rng.sample(range(len(corpus)), documents) if len(corpus) >= documents \
            else rng.choices(range(len(corpus)), k=documents)  # a tiny collection repeats documents
        docs = [corpus.full_text(i)[:MAX_CHARS] for i in picked]
        query = rng.choice(queries)
        out.append({"query": query, "texts": docs} if endpoint == "/rerank"
                   else {"model": "hardneg", "query": query, "documents": docs})
    return out


async def client(http: httpx.AsyncClient, path: str, bodies: list[dict], record: list) -> None:
    for body in bodies:
        started = time.perf_counter()
        try:
            response = await http.post(path, json=body)
            record.append((response.status_code, time.perf_counter() - started, None))
        except httpx.HTTPError as exc:  # no answer at all: a lost request
            record.append((None, time.perf_counter() - started, type(exc).__name__))


async def load(url: str, path: str, bodies: list[dict], clients: int) -> tuple[list, float]:
    per_client = len(bodies) // clients
    record: list = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300,
                                 limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*[client(http, path, bodies[c * per_client:(c + 1) * per_client], record)
                               for c in range(clients)])
        return record, time.perf_counter() - started


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--name", required=True, help="Names the output: benchmarks/serving/load_<name>.json")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="Requests per client.")
    parser.add_argument("--documents", type=int, default=20, help="Documents per request.")
    parser.add_argument("--endpoint", default="/v2/rerank", choices=["/v1/rerank", "/v2/rerank", "/rerank"])
    parser.add_argument("--bare", action="store_true", help="Serve with --bare (the re-ranker alone).")
    parser.add_argument("--serve-args", default="", help="More `hardneg serve` options, quoted.")
    parser.add_argument("--note", default="", help="A note on the system or the machine, kept in the output.")
    parser.add_argument("--output-dir", default=str(HERE))
    args = parser.parse_args()

    output = Path(args.output_dir) / f"load_{args.name}.json"
    system = json.loads((Path(args.run_dir) / "system.json").read_text()) if Path(args.run_dir).is_dir() \
        else json.loads(Path(args.run_dir).read_text())
    bodies = payloads(system["dataset"], args.clients * args.requests, args.documents, args.endpoint)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.gettempdir()) / f"hardneg-serve-load-{args.name}.log"
    process = start_server(args.run_dir, port, args.bare, shlex.split(args.serve_args), log_path)
    try:
        startup = wait_healthy(url, process, log_path)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        info = httpx.get(f"{url}/info", headers=headers).json()
        warm = asyncio.run(load(url, args.endpoint, bodies[:4], 1))  # first requests pay one-off costs
        record, seconds = asyncio.run(load(url, args.endpoint, bodies, args.clients))
        metrics = httpx.get(f"{url}/metrics", headers=headers).text
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()

    ok = [t for status, t, _ in record if status is not None and 200 <= status < 300]
    statuses: dict[str, int] = {}
    for status, _, error in record:
        key = str(status) if status is not None else f"lost: {error}"
        statuses[key] = statuses.get(key, 0) + 1
    latency = np.asarray(ok) * 1000
    pairs, batches = metric(metrics, "hardneg_pairs_scored_total"), metric(metrics, "hardneg_batches_total")
    serve_args = f" {args.serve_args}" if args.serve_args else ""
    result = {
        "command": f"python benchmarks/serving/load.py {args.run_dir} --name {args.name} --clients {args.clients} "
                   f"--requests {args.requests} --documents {args.documents} --endpoint {args.endpoint}"
                   + (" --bare" if args.bare else "") + (f" --serve-args {shlex.quote(args.serve_args)}"
                                                          if args.serve_args else ""),
        "server_command": f"hardneg serve {args.run_dir}" + (" --bare" if args.bare else "") + serve_args,
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, load average at the end "
                   f"{os.getloadavg()[0]:.1f}",
        "note": args.note,
        "system": {"run": str(args.run_dir), "mode": info["mode"], "serving": info["serving"],
                   "reranker": info["reranker"], "reranker_model": info["reranker_model"],
                   "first_stage": info["first_stage"], "members": info["members"], "choice": info["choice"]},
        "settings": info["limits"],
        "load": {"clients": args.clients, "requests_per_client": args.requests, "documents_per_request":
                 args.documents, "document_chars_at_most": MAX_CHARS, "endpoint": args.endpoint},
        "startup_seconds": round(startup, 1),
        "warm_up_ms": [round(t * 1000, 1) for _, t, _ in warm[0]],
        "results": {
            "requests": len(record), "ok": len(ok), "non_2xx": sum(n for k, n in statuses.items()
                                                                  if k.isdigit() and not k.startswith("2")),
            "lost": sum(n for k, n in statuses.items() if k.startswith("lost")), "statuses": statuses,
            "seconds": round(seconds, 2), "throughput_rps": round(len(ok) / seconds, 2),
            "documents_per_second": round(len(ok) * args.documents / seconds, 1),
            "latency_ms": {name: round(float(np.percentile(latency, q)), 1) if len(latency) else None
                           for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
            "latency_mean_ms": round(float(latency.mean()), 1) if len(latency) else None,
            "pairs_scored": pairs, "batches": batches,
            "mean_pairs_per_batch": round(pairs / batches, 1) if pairs and batches else None},
    }
    write_json(output, result)
    print(json.dumps(result["results"], indent=2))
    print(f"Wrote {output}")
    if result["results"]["non_2xx"] or result["results"]["lost"]:
        print(f"Some requests failed; the server's log: {log_path}")


if __name__ == "__main__":
    main()

"""Same-process A/B of hardneg's embedding path against sentence-transformers' encode_document (issue 6).

Both sides embed the same SciFact documents with all-MiniLM-L6-v2 at max_seq_length 128, alternating, so load on
the machine hits both alike. Usage: python benchmarks/embed_ab.py [--docs 480] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from sentence_transformers import SentenceTransformer

from hardneg.data import resolve_dataset
from hardneg.embed import get_embedder, resolve_st_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    corpus = resolve_dataset("scifact") / "corpus.jsonl"
    with open(corpus, encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(args.docs), handle)]
    texts = [(r.get("title", "") + " " + r["text"]).strip() for r in rows]
    st = SentenceTransformer(resolve_st_model("minilm"), device="cpu")
    st.max_seq_length = 128
    hardneg = get_embedder("minilm", max_seq_length=128)
    st.encode_document(texts[:32])  # warm both up
    hardneg.embed(texts[:32], "document", progress=False)
    seconds: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for side in ("st encode_document", "hardneg embed, no cache", "hardneg embed, fresh cache"):
            start = time.perf_counter()
            if side.startswith("st"):
                st.encode_document(texts, batch_size=32, convert_to_numpy=True)
            elif side.endswith("no cache"):
                hardneg.embed(texts, "document", progress=False)
            else:
                with tempfile.TemporaryDirectory() as folder:
                    hardneg.embed(texts, "document", cache_dir=folder, progress=False)
            seconds.setdefault(side, []).append(round(time.perf_counter() - start, 2))
    print(json.dumps({"docs": len(texts), "seconds": seconds}))


if __name__ == "__main__":
    main()

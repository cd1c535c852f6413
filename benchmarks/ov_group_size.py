"""OpenVINO's MiniLM at the CPU's own precision, and with int8 weights and run-time activation quantisation per
group size: seconds and cosine to the fp32 vectors, on the first N SciFact documents (sorted by length, batches of
32, 128 tokens, 2 threads).

    python benchmarks/ov_group_size.py 1500 --output benchmarks/speed/ov_group_size.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("docs", type=int)
    parser.add_argument("--groups", default="0,32,64,128,192,384", help="0: weights decompressed, no quantisation")
    parser.add_argument("--precision-hint", default=None, help="INFERENCE_PRECISION_HINT (f32, bf16); default: the "
                        "CPU's own, as hardneg's OpenVINO engine uses")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    import nncf
    import openvino as ov
    from transformers import AutoTokenizer

    from hardneg.data import load_beir, resolve_dataset
    from hardneg.embed.onnx import export_onnx, openvino_precision
    from hardneg.embed.registry import resolve_st_model
    from hardneg.io import write_json

    args.precision_hint = args.precision_hint or openvino_precision()
    model_dir = resolve_st_model("minilm")
    texts = sorted(load_beir(resolve_dataset("scifact")).corpus.full_texts()[: args.docs], key=len)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    onnx_path = export_onnx(model_dir, quantize=False)
    core = ov.Core()
    names = [port.get_any_name() for port in core.read_model(str(onnx_path)).inputs]

    def embed(model, settings: dict) -> tuple[float, np.ndarray]:
        hint = {"INFERENCE_PRECISION_HINT": args.precision_hint}
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2,
                                                     **hint, **settings})
        out, started = [], time.perf_counter()
        for i in range(0, len(texts), 32):
            enc = tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=128, return_tensors="np")
            hidden = compiled({k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            vectors = (hidden * mask).sum(1) / mask.sum(1)
            out.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        return time.perf_counter() - started, np.vstack(out)

    # the reference: the fp32 graph at f32 (torch's vectors to ~1e-5)
    fp32_seconds, reference = embed(str(onnx_path), {"INFERENCE_PRECISION_HINT": "f32"})

    def against_reference(model, settings: dict) -> dict:
        seconds, vectors = embed(model, settings)
        cosine = (vectors * reference).sum(1)
        return {"seconds": round(seconds, 2), "cosine_mean": round(float(cosine.mean()), 5),
                "cosine_min": round(float(cosine.min()), 5)}

    result = {"command": "python benchmarks/ov_group_size.py " + " ".join(sys.argv[1:]),
              "precision_hint": args.precision_hint,
              "machine": f"{platform.platform()}, {os.cpu_count()} cores", "documents": len(texts),
              "fp32_graph_at_f32_seconds": round(fp32_seconds, 2), "int8_sym_weights": {}}
    if args.precision_hint != "f32":
        result[f"fp32_graph_at_{args.precision_hint}"] = against_reference(str(onnx_path), {})
    compressed = nncf.compress_weights(core.read_model(str(onnx_path)), mode=nncf.CompressWeightsMode.INT8_SYM)
    for group in args.groups.split(","):
        result["int8_sym_weights"][f"group_{group}"] = against_reference(
            compressed, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": group})
    write_json(args.output, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

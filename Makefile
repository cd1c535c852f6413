# Two entry points a newcomer needs: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
HARDNEG_DATA ?= ../shared/data
export HARDNEG_DATA

.PHONY: venv demo paper test test-slow docs bench bench-gpu bench-serve bench-ensemble bench-chunking bench-speed example-ingest clean

venv: $(STAMP)

# torch is pinned and installed before anything else: an unpinned resolve pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[models,plots,ingest,onnx,openvino,serve,ray,dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/hardneg run configs/demo.yaml

# The paper's recipe (top 4 of the ensemble, triplet loss) at the demo's size.
paper: venv
	$(BIN)/hardneg run configs/paper.yaml

test: venv
	$(BIN)/python -m pytest -q --durations=10

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

# docs/CONFIG.md is generated from the config's field descriptions; tests/test_config_docs.py fails when it is stale.
docs: venv
	$(BIN)/python -m hardneg.configdoc > docs/CONFIG.md.tmp && mv docs/CONFIG.md.tmp docs/CONFIG.md

# Slow, real-data benchmarks: never part of `make test`.
bench: venv
	$(BIN)/hardneg run configs/scifact.yaml
	$(BIN)/python benchmarks/record.py runs/scifact benchmarks/scifact_full/scifact_full.json --command "HARDNEG_DATA=$(HARDNEG_DATA) hardneg run configs/scifact.yaml"

bench-ensemble: venv
	$(BIN)/python benchmarks/first_stage.py --dataset scifact --output benchmarks/first_stage/first_stage_scifact.json

# On a GPU machine (CPU works too): embed, mine, train a re-ranker and an embedder, evaluate; records times and
# memory under benchmarks/gpu/ (docs/SCALE.md). `python -P benchmarks/bench_gpu.py --dry-run` is the 2-minute check.
bench-gpu: venv
	$(BIN)/python -P benchmarks/bench_gpu.py

# `hardneg serve` under load (50 clients x 20 requests of 20 documents) on the system `make demo` saved.
bench-serve: venv
	nice -n 10 $(BIN)/python -P benchmarks/serving/load.py runs/demo --name demo

# Chunking strategies x aggregations for a trained SciFact re-ranker (needs `make bench` first for the model and run).
bench-chunking: venv
	nice -n 10 $(BIN)/python benchmarks/chunking.py --dataset scifact --model runs/scifact/strategies/ensemble/model \
		--first-stage runs/scifact/runs/ensemble.test.trec --max-queries 60 --add-short --output benchmarks/chunking/chunking_scifact.json

# The examples/helpdesk walk-through: HTML help pages + a queries CSV -> dataset -> hardneg run.
example-ingest: venv
	$(BIN)/hardneg ingest examples/helpdesk/docs --pairs examples/helpdesk/queries.csv --test-fraction 0.3 \
		--output runs/helpdesk-data
	$(BIN)/hardneg run examples/helpdesk/config.yaml

# Speed and memory against sentence-transformers' mine_hard_negatives, scaling to 1M documents (~45 min).
bench-speed: venv
	nice -n 10 $(BIN)/python benchmarks/speed.py --parts a,b,c,d,e --output benchmarks/speed/speed.json

clean:
	rm -rf runs .pytest_cache

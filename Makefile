# Two commands do all set-up on a fresh machine (Python 3.10-3.12 with venv):
#   make demo   - compress the bundled example model and print the before/after summary
#   make test   - run the whole test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_MODEL ?= fixtures/models/resnet_basic.dynamo_keepbn.onnx

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,images,report,distributed,dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/onnxprune analyze $(DEMO_MODEL)
	$(VENV)/bin/onnxprune compress $(DEMO_MODEL) --target 0.5 --round-to 8 \
		-o out/demo.pruned.onnx

test: $(STAMP)
	$(VENV)/bin/ruff check onnxprune tests benchmarks fixtures
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_analyze_compress.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis

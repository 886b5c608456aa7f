# Two commands do all set-up on a fresh machine (Python 3.10-3.12 with venv):
#   make demo   - compress the bundled example model and print the before/after summary
#   make test   - run the whole test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,images,plot,dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/onnxprune analyze fixtures/models/resnet_basic.dynamo.onnx
	$(VENV)/bin/onnxprune compress fixtures/models/resnet_basic.dynamo.onnx --target 0.5 \
		--round-to 8 -o out/resnet_basic.pruned.onnx --json > out/resnet_basic.report.json
	$(VENV)/bin/onnxprune compress fixtures/models/resnet_basic.dynamo.onnx --target 0.5 \
		--round-to 8 -o out/resnet_basic.pruned.onnx

test: $(STAMP)
	$(VENV)/bin/ruff check onnxprune tests benchmarks fixtures
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_analyze_compress.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis

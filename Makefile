# `make run` and `make test` set up .venv on first use, then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

run: $(VENV)/.installed
	$(BIN)/python -m bot

# The tests whose answers depend on the CPU, run again with torch, oneDNN and the bot's own
# CPU detection capped to AVX2, the commonest class (ONNX Runtime cannot be capped).
CPU_TESTS := tests/test_accel.py tests/test_precision.py tests/test_pipeline.py \
	tests/test_captioner.py tests/test_sentiment.py tests/test_linear_layers.py \
	tests/test_vision_attention.py tests/test_embeddings.py
AVX2 := MOOD_CPU_CLASS=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest
	$(AVX2) $(BIN)/python -m pytest $(CPU_TESTS)

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.bench_records
	$(BIN)/python -m bench.bench_store
	$(BIN)/python -m bench.bench_models
	$(BIN)/python -m bench.bench_startup

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

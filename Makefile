# The two commands of the README: `make demo` (train on MovieLens 100k, show results) and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Offline: a folder holding ml-100k (default ../shared/data when present); otherwise the data is downloaded.
DATA ?= $(or $(COLLABKIT_DATA),$(wildcard ../shared/data))
DATA_OPT := $(if $(DATA),--data-dir $(DATA),)

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/collabkit train --dataset ml-100k $(DATA_OPT) --split u1 --model dot-bias \
		--epochs 5 --lr 5e-3 --wd 0.1 --out model/
	$(BIN)/collabkit biases model/ $(DATA_OPT) --top 5
	$(BIN)/collabkit similar model/ "Silence of the Lambs, The (1991)" -k 5 $(DATA_OPT)
	$(BIN)/collabkit recommend model/ 42 -n 5 $(DATA_OPT)

test: install
	$(BIN)/ruff check src tests bench
	COLLABKIT_TEST_DATA=$(DATA) $(BIN)/python -m pytest -q -m "slow or not slow" --durations=10

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) model/ .pytest_cache

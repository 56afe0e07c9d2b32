# The commands of the README: `make demo` (train on MovieLens 100k, show results), `make serve`
# (the service and its pages on http://127.0.0.1:8000) and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Offline: a folder holding ml-100k (default ../shared/data when present); otherwise the data is downloaded.
DATA ?= $(or $(COLLABKIT_DATA),$(wildcard ../shared/data))
DATA_OPT := $(if $(DATA),--data-dir $(DATA),)

# `make serve`: a model trained on all of ML-100k, a SQLite store holding its ratings, a writer
# and an admin key (created once, in out/serve/), then the server; it ends with the address to open.
SERVE := out/serve
SERVE_DB := sqlite:///$(SERVE)/collabkit.db
PORT ?= 8000

.PHONY: install demo serve test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	@# compile the one-thread training kernel (`make demo`'s) and fold-in's into numba's cache now,
	@# not in the first fit or the first new user
	$(BIN)/python -c "from collabkit.core import kernels; kernels.load_dot_step(1); kernels.load_fold_in()"
	touch $@

demo: install
	$(BIN)/collabkit train --dataset ml-100k $(DATA_OPT) --split u1 --model dot-bias \
		--epochs 5 --lr 5e-3 --wd 0.1 --out model/
	$(BIN)/collabkit biases model/ --top 5
	$(BIN)/collabkit similar model/ "Silence of the Lambs, The (1991)" -k 5
	$(BIN)/collabkit recommend model/ 42 -n 5

serve: install
	mkdir -p $(SERVE)
	test -f $(SERVE)/model/config.json || $(BIN)/collabkit train --dataset ml-100k $(DATA_OPT) \
		--split none --model dot-bias --epochs 5 --lr 5e-3 --wd 0.1 --out $(SERVE)/model/
	$(BIN)/collabkit db upgrade --db $(SERVE_DB)
	test -f $(SERVE)/imported || { $(BIN)/collabkit db import --model $(SERVE)/model/ --db $(SERVE_DB) \
		&& touch $(SERVE)/imported; }
	test -f $(SERVE)/writer.key || $(BIN)/collabkit keys create --role writer --db $(SERVE_DB) > $(SERVE)/writer.key
	test -f $(SERVE)/admin.key || $(BIN)/collabkit keys create --role admin --db $(SERVE_DB) > $(SERVE)/admin.key
	chmod 600 $(SERVE)/*.key
	@echo "Admin key (Admin and Monitor pages): $$(cat $(SERVE)/admin.key)"
	@echo "Stop with Ctrl-C. Open this address (it carries the writer key for this browser):"
	@echo "  http://127.0.0.1:$(PORT)/#key=$$(cat $(SERVE)/writer.key)"
	@$(BIN)/collabkit serve --model $(SERVE)/model/ --db $(SERVE_DB) --port $(PORT) --log-level warning

# Chromium and PostgreSQL are installed first when missing and root (.ci/prereqs); the run ends
# with each tier it skipped and what would run it.
test: install
	$(BIN)/ruff check src tests bench
	.ci/prereqs
	COLLABKIT_TEST_DATA=$(DATA) $(BIN)/python -m pytest -q -m "slow or not slow" --durations=10

lint: install
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) model/ .model.engine/ .pytest_cache

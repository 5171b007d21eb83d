# hopbench — set-up and common tasks. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# CPU build of torch from the local wheel cache; users' own machines may install any torch in range.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint report bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,sweeps]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/hopbench compare=true

test: $(STAMP)
	WANDB_MODE=disabled $(BIN)/pytest tests

lint: $(STAMP)
	$(BIN)/ruff check hopbench tests bench

clean:
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache

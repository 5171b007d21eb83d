# hopbench — set-up and common tasks. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# CPU build of torch from the local wheel cache; users' own machines may install any torch in range.
TORCH  ?= torch==2.13.0

REPROS := fig1 prop1 prop3 prop4 example7 dead-neurons critical-load hopfield-capacity training
FULL   ?= false
SWEEPS := activations capacity training

.PHONY: install demo test lint report bench clean repro-all $(addprefix repro-,$(REPROS)) $(addprefix sweep-,$(SWEEPS))

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

bench: $(STAMP)
	$(BIN)/python bench/run.py

$(addprefix sweep-,$(SWEEPS)): sweep-%: $(STAMP)
	$(BIN)/hopbench -m experiment=sweep_$*

# make repro-<name> [FULL=true]: writes reproductions/<name>/ (data, figure, verdict.json)
$(addprefix repro-,$(REPROS)): repro-%: $(STAMP)
	$(BIN)/hopbench experiment=repro_$(subst -,_,$*) full=$(FULL)

repro-all: $(addprefix repro-,$(REPROS))
	$(BIN)/python -m hopbench.repro reproductions

report: $(STAMP)
	$(BIN)/hopbench-report $(or $(DIRS),outputs multirun)

clean:
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache

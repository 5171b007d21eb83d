# hopbench — set-up and common tasks. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# CPU build of torch from the local wheel cache; users' own machines may install any torch in range.
TORCH  ?= torch==2.13.0

REPROS := fig1 prop1 prop3 prop4 example7 strategies dead-neurons critical-load hopfield-capacity training
FULL   ?= false
SWEEPS := activations capacity training

.PHONY: install demo test lint smoke wheel wheel-check report bench clean repro-all $(addprefix repro-,$(REPROS)) $(addprefix sweep-,$(SWEEPS))

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,sweeps]"
	@# an editable install's import hook cannot list namespace packages, so Hydra's plugin scan would miss
	@# hydra_plugins/hopbench_resumable_sweeper: put the source root on the path as well
	echo "$(CURDIR)" > $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/hopbench-source-root.pth
	touch $(STAMP)

install: $(STAMP)

# conf/experiment/demo.yaml: original vs modified where dead neurons make eq. 4 inconclusive
demo: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/hopbench experiment=demo

test: $(STAMP)
	WANDB_MODE=disabled $(BIN)/pytest tests --cov=hopbench --cov-report=term:skip-covered

lint: $(STAMP)
	$(BIN)/ruff check hopbench hydra_plugins tests bench

# the command line in fresh processes, outside the repository: a two-job sweep that must finish with both jobs ok
smoke: $(STAMP)
	cd $$(mktemp -d) && WANDB_MODE=disabled $(CURDIR)/$(BIN)/hopbench -m seed=0,1 n_neurons=40 logger=none \
	    spurious.n_states=20 lyapunov.n_states=15 && test $$(grep -l '"status": "ok"' multirun/*/*/*/results.json | wc -l) = 2

# the wheel holds the package and its configs: install it into a fresh environment outside the repository (its
# dependencies shared from $(VENV)) and run a tiny job there
wheel: $(STAMP)
	rm -rf dist && $(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .

wheel-check: wheel
	rm -rf /tmp/hopbench-wheel-env && $(PYTHON) -m venv /tmp/hopbench-wheel-env
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
	    > $$(/tmp/hopbench-wheel-env/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/deps.pth
	/tmp/hopbench-wheel-env/bin/pip install -q --no-deps dist/hopbench-*.whl
	cd $$(mktemp -d) && WANDB_MODE=disabled /tmp/hopbench-wheel-env/bin/hopbench task=evaluate n_neurons=16 \
	    logger=none && /tmp/hopbench-wheel-env/bin/python -c "import hopbench, pathlib; \
	    assert 'site-packages' in hopbench.__file__, hopbench.__file__; print('wheel ok:', hopbench.__version__)"

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
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache dist build

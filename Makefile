# Two entry points on a fresh machine: `make test` and `make run`. Each sets itself up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export MPLBACKEND := Agg
export MUJOCO_GL ?= egl
export PYTHONHASHSEED := 0
# keep Jupyter/IPython state out of $HOME (papermill, nbval and the browser test start kernels)
JHOME := $(CURDIR)/.jupyter-home
export JUPYTER_CONFIG_DIR := $(JHOME)/config
export JUPYTER_DATA_DIR := $(JHOME)/data
export JUPYTER_RUNTIME_DIR := $(JHOME)/runtime
export IPYTHONDIR := $(JHOME)/ipython

.PHONY: setup test test-fast test-gpu run reacher ant ant-ablations lab bench clean refs

$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	mkdir -p $(JUPYTER_CONFIG_DIR) $(JUPYTER_DATA_DIR) $(JUPYTER_RUNTIME_DIR) $(IPYTHONDIR)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(BIN)/.installed

test: setup
	mkdir -p $(JHOME)
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not browser and not ray and not slow"

# every device-dependent test on CUDA (tests/devices.py); CPU-only tests say why they skip
test-gpu: setup
	mkdir -p $(JHOME)
	MOMAWB_TEST_DEVICE=cuda $(BIN)/python -m pytest -m "not browser" -rs

# the Coordination Game notebook (Table 3) under papermill: its cells' output streams to the
# console (estimate, progress bars, tables) and a summary ends the run (momawb/execute.py)
run: setup
	mkdir -p outputs $(JHOME)
	$(BIN)/python -m momawb.execute coordination_game outputs/coordination_game.ipynb

# Table 4a and the convention analysis at the cpu preset (about 2 h 15 min on 2 cores from scratch; finished runs are cached)
reacher: setup
	mkdir -p outputs $(JHOME)
	$(BIN)/python -m momawb.execute reacher outputs/reacher-cpu.ipynb -p preset cpu

# Table 4b and Table 5 on the medium Ant dataset at the cpu preset (README: wall time; finished runs are cached)
ant: setup
	mkdir -p outputs $(JHOME)
	$(BIN)/python -m momawb.execute ant outputs/ant-cpu.ipynb -p preset cpu -p dataset medium

# MOMA-PPO's ablations (PAPER.md section 7) on the full-replay Ant dataset at the cpu preset (README: wall time)
ant-ablations: setup
	mkdir -p outputs $(JHOME)
	$(BIN)/python -m momawb.execute ant_ablations outputs/ant_ablations-cpu.ipynb -p preset cpu

# JupyterLab on the notebooks and the executed copies under outputs/ (trusted, so any widgets
# saved in them show as widgets)
lab: setup
	mkdir -p outputs $(JHOME)
	for nb in outputs/*.ipynb; do [ -e "$$nb" ] && $(BIN)/jupyter trust "$$nb"; done; true
	$(BIN)/jupyter lab --notebook-dir=$(CURDIR)

bench: setup
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(JHOME) .pytest_cache

# re-execute the notebooks' nbval references (ci preset), keeping outputs and counts
refs: setup
	mkdir -p tests/ref $(JHOME)
	for nb in notebooks/*.ipynb; do \
	  $(BIN)/papermill $$nb tests/ref/$$(basename $$nb) -k python3 --no-progress-bar -p preset ci && \
	  $(BIN)/nbstripout --keep-output --keep-count --extra-keys "metadata.papermill cell.metadata.papermill metadata.jupytext metadata.widgets" tests/ref/$$(basename $$nb) || exit 1; \
	done

# Two commands on a fresh machine:  make demo  (T-Maze: data, training, evaluation, table)  and  make test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch stays pinned for every install step (an unpinned resolve pulls gigabytes of CUDA wheels).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: demo test lint clean-runs

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e ".[dev,wandb,minigrid,vizdoom,memory-maze,atari,mujoco,popgym,minari]"
	touch $@

demo: $(VENV)/.installed
	$(PY) TMaze_new/TMaze_new_src/demo_tmaze.py

# every core runs tests (pytest-xdist); a test file stays on one worker, so its module fixtures are built once;
# the slowest files go first (tests/conftest.py: SLOW_FIRST)
test: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean-runs:
	rm -rf runs/demo

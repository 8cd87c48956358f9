# One command each: `make train` and `make test` create .venv on first use; `make help` lists all.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 6006
MLFLOW_PORT ?= 5000
EXTRAS ?= dev,sweep,slurm,mlflow,wandb
# Where torch comes from. Empty: PyPI (or a wheel pip finds locally). PyPI's torch for Linux
# brings its CUDA libraries, GBs of them; on a machine without a GPU, take PyTorch's CPU build:
#   make train TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: help install train check-config test test-slow test-all sweep tensorboard bench lint \
	format hooks rename clean mlflow

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-13s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install litforge into it (editable, pinned versions)

# Re-installs when the dependencies change; torch comes from constraints.txt (2.13.0).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --disable-pip-version-check \
		--index-url $(TORCH_INDEX) -c constraints.txt torch)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

train: $(STAMP) ## train the default run (overrides: ARGS="experiment=wine ...")
	$(PY) -m litforge.train $(ARGS)

check-config: $(STAMP) ## check a config, every job of a sweep, without training (ARGS="...")
	$(PY) -m litforge.checks $(ARGS)

test: $(STAMP) ## the test suite without the slow end-to-end tests (ARGS: pytest's)
	$(PY) -m pytest -n auto -m "not slow" $(ARGS)

test-slow: $(STAMP) ## the slow end-to-end tests of the real command line (.ci/run runs both)
	$(PY) -m pytest -n auto -m slow $(ARGS)

test-all: test test-slow ## both

sweep: $(STAMP) ## the README's eight-job sweep, in parallel processes; summary.md at its end
	$(PY) -m litforge.train -m hydra/launcher=joblib optimizer=sgd,adam accumulate_grad_batches=1,4 precision=32,64 device=cpu $(ARGS)

tensorboard: $(STAMP) ## serve outputs/ on 127.0.0.1:6006 (HOST=..., PORT=... to change)
	$(VENV)/bin/tensorboard --logdir outputs --host $(HOST) --port $(PORT)

mlflow: $(STAMP) ## serve logger=mlflow's store on 127.0.0.1:5000 (MLFLOW_PORT=... to change)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db --host $(HOST) \
		--port $(MLFLOW_PORT)

bench: $(STAMP) ## throughput, start-up and sweep cost against the limit (minutes)
	$(PY) scripts/benchmark.py $(ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: $(STAMP) ## ruff format and ruff check --fix
	$(VENV)/bin/ruff format src tests scripts
	$(VENV)/bin/ruff check --fix src tests scripts

hooks: $(STAMP) ## lint and format every git commit (pre-commit, local hooks)
	$(VENV)/bin/pre-commit install

rename: ## make the template your own project: make rename NAME=my_project
	@test -n "$(NAME)" || (echo "usage: make rename NAME=my_project" && exit 2)
	$(PYTHON) scripts/rename.py $(NAME)

clean: ## remove .venv and the tool caches
	rm -rf $(VENV) .pytest_cache .ruff_cache

# One command each: `make train` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 6006

.PHONY: install train check-config test test-fast sweep tensorboard bench lint format rename clean

install: $(STAMP)

# Re-installs when the dependencies change; torch comes from constraints.txt (2.13.0, CPU here).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,sweep,slurm]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m litforge.train $(ARGS)

# Validate a configuration (every job of a sweep) without training: make check-config ARGS="..."
check-config: $(STAMP)
	$(PY) -m litforge.checks $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n auto $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n auto -m "not slow" $(ARGS)

# The README's eight-job sweep, in parallel processes (one per CPU core); summary.md when it ends.
sweep: $(STAMP)
	$(PY) -m litforge.train -m hydra/launcher=joblib optimizer=sgd,adam accumulate_grad_batches=1,4 precision=32,64 device=cpu $(ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs --host $(HOST) --port $(PORT)

# Throughput, start-up and sweep cost against the limit; writes benchmark.md (takes minutes)
bench: $(STAMP)
	$(PY) scripts/benchmark.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: $(STAMP)
	$(VENV)/bin/ruff format src tests scripts
	$(VENV)/bin/ruff check --fix src tests scripts

# Make the template your own project: make rename NAME=my_project
rename:
	@test -n "$(NAME)" || (echo "usage: make rename NAME=my_project" && exit 2)
	$(PYTHON) scripts/rename.py $(NAME)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

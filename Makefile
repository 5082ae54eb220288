# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NATIVE := $(VENV)/.compiled-stamp

.PHONY: install compile run cluster test lint format system-deps bench jepsen soak clean

# The editable install itself builds no extensions; `compile` does, in place.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	NOMADKV_INTERPRETED=1 $(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The request path compiled with mypyc beside its sources (nomadkv/native.py says
# which modules; docs/decisions.md why). Rebuilt when any module changes, since
# compiled code is checked against the types of what it imports.
$(NATIVE): $(STAMP) $(shell find nomadkv -name '*.py')
	scripts/system-deps.sh build
	$(PY) setup.py -q build_ext --inplace
	@# build_ext leaves an extension whose generated C did not change as it was; it
	@# still matches its source, so it is marked as new (nomadkv.native.stale).
	find nomadkv -name '*.so' -exec touch {} +
	touch $(NATIVE)

compile: $(NATIVE)

install: $(STAMP) $(NATIVE)

run: install
	$(VENV)/bin/nomadkv server

# A local 3-node development cluster on 127.0.0.1:7001-7003 (Ctrl-C stops it).
cluster: install
	$(VENV)/bin/nomadkv cluster up --nodes 3 --base-port 7001

system-deps:
	scripts/system-deps.sh

lint: install
	$(VENV)/bin/ruff format --check nomadkv tests bench
	$(VENV)/bin/ruff check nomadkv tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format nomadkv tests bench
	$(VENV)/bin/ruff check --fix nomadkv tests bench

test: install system-deps lint
	$(PY) -m pytest

bench: install system-deps
	$(PY) -m bench.all

# The long Raft simulation soak (20,000 seeds, about 10 minutes on 2 cores).
soak: install
	$(PY) -m bench.raft_soak --seeds 20000

# The long Jepsen-style run (minutes; partitions need root for iptables).
jepsen: install system-deps
	$(PY) -m bench.jepsen_long

clean:
	rm -rf $(VENV) build *.egg-info
	find nomadkv -name '*.so' -delete

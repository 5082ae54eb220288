# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run cluster test lint format system-deps bench jepsen soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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

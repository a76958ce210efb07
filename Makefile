VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# Machine components the suite must have: their tests fail rather than skip without them
# (tests/conftest.py), and `make deps` installs them.
VMPLANE_REQUIRE ?= qemu,kubectl,etcd,browser
export VMPLANE_REQUIRE

.PHONY: install deps demo test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Debian packages (python3-venv among them), the test guest and kubectl for VMPLANE_REQUIRE, or one
# line saying what is missing and what to run. Before the venv: guest/build.py needs only python3.
deps:
	bash scripts/test-deps.sh

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

# -rs prints the reason of every skip; a skip of a test needing a VMPLANE_REQUIRE component fails.
# Two workers: tests/conftest.py keeps the guest-booting tests on one of them, one at a time.
test: deps lint
	$(VENV)/bin/pytest -q -rs -n 2 --dist loadgroup

# Every benchmark under bench/; each exits non-zero when it misses its goal, and so does this target.
# fleet.py is the support module of control.py and control_memory.py, not a benchmark.
BENCHES := $(sort $(filter-out bench/fleet.py,$(wildcard bench/*.py)))
bench: install
	@failed=""; for b in $(BENCHES); do \
		echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "bench: missed its goal or could not run:$$failed"; exit 1; fi

# QEMU and the test guest, then the control plane with the demo VM (Ctrl-C stops it; guests keep running).
demo: install
	bash scripts/ci-install-qemu.sh
	$(VENV)/bin/vmplane serve --demo

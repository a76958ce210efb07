VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install demo test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

test: install lint
	$(VENV)/bin/pytest -q

bench: install
	$(PY) bench/planner.py

# QEMU and the test guest, then the control plane with the demo VM (Ctrl-C stops it; guests keep running).
demo: install
	bash scripts/ci-install-qemu.sh
	$(VENV)/bin/vmplane serve --demo

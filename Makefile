# Every target works from a fresh clone on a machine with only python3 (>= 3.11) and make:
# uv is bootstrapped into .uv-bootstrap/ unless one is already on PATH.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV ?= $(or $(shell command -v uv 2>/dev/null),.uv-bootstrap/bin/uv)
RUN := $(UV) run --locked

.PHONY: install demo test lint pytest bench clean

.uv-bootstrap/bin/uv:
	$(PYTHON) -m venv .uv-bootstrap
	.uv-bootstrap/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

install: $(if $(filter .uv-bootstrap/bin/uv,$(UV)),.uv-bootstrap/bin/uv)
	$(UV) sync --locked --all-extras

demo: install
	$(RUN) levalign demo

lint: install
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) mypy

pytest: install
	$(RUN) pytest

test: lint pytest

bench: install
	$(RUN) python -m bench

clean:
	rm -rf .venv .uv-bootstrap .pytest_cache .mypy_cache .ruff_cache .hypothesis

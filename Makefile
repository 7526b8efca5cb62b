.PHONY: fmt check test ci

fmt:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

check:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

test:
	.venv/bin/pytest

ci:
	.ci/run

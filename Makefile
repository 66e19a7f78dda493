# The two commands of the README. Both set everything up first (idempotent).
.PHONY: setup demo test lint

setup:
	@./scripts/setup.sh

demo: setup
	@./scripts/demo.sh

test: setup
	@.venv/bin/python -m pytest -q

lint: setup
	@.venv/bin/ruff check damo_cli tests

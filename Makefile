# Thin aliases for tools/dev.sh (which needs nothing but bash and Python 3.11).
.PHONY: setup demo test lint
setup:
	bash tools/dev.sh setup
demo:
	bash tools/dev.sh demo
test:
	bash tools/dev.sh test
lint:
	.venv/bin/ruff check slam tests tools datasets

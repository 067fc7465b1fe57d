.PHONY: demo test lint bench

# The main job: install everything needed, then run the demo agent on the embedded model.
demo:
	scripts/bootstrap.sh
	.venv/bin/shopfloor demo

# The whole test suite, slow tests included (they use the embedded model and real servers).
test:
	scripts/bootstrap.sh
	.venv/bin/python -m pytest -q -p no:cacheprovider

lint:
	.venv/bin/ruff check src tests
	.venv/bin/ruff format --check src tests
	.venv/bin/mypy --strict src

bench:
	.venv/bin/python -m benchmarks

.PHONY: demo test check lint fast bench

# The main job: install Shopfloor with its runtime extras only (no development tools), then run the
# demo agent on the embedded model.
demo:
	scripts/bootstrap.sh --extras local
	.venv/bin/shopfloor demo

# What CI runs: install with the development extras, then the linters and the whole suite (slow tests included).
test:
	scripts/bootstrap.sh --extras dev,local
	$(MAKE) lint
	.venv/bin/python -m pytest -q -p no:cacheprovider

# The inner loop: linters plus the fast tests (no bootstrap, no embedded model, no servers to start).
check: lint fast

lint:
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy --strict src

fast:
	.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow and not postgres" -x

bench:
	.venv/bin/python -m benchmarks

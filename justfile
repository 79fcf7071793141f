# testpool's everyday commands. `just` installs from PyPI as rust-just (a dev extra).

venv := ".venv/bin"

# Run the example suite with 4 workers
test:
    {{venv}}/testpool --workers 4

# Run only the tests whose id contains PATTERN, e.g. `just test-file TestApiScrape`
test-file PATTERN:
    {{venv}}/testpool --workers 4 --file {{PATTERN}}

# Run the example suite, then rerun what each file change affects until Ctrl-C
watch:
    {{venv}}/testpool --workers 4 --watch

# Run every test, ignoring the cache
test-full:
    {{venv}}/testpool --workers 4 --full

# Stop and remove whatever earlier runs left behind
test-clean:
    {{venv}}/testpool clean

# Lint, type-check and run testpool's own tests
check:
    {{venv}}/ruff check .
    {{venv}}/ruff format --check .
    {{venv}}/mypy
    {{venv}}/pytest -n 2

# The benchmark (prints a table of ratios; see README "Performance")
bench:
    {{venv}}/python tests/benchmarks/bench.py

# Interrupt 100 runs at random moments (SIGINT, SIGTERM, SIGKILL, late-reaped SIGKILL) and
# check nothing is left behind after any (see README "Nothing left behind")
stress:
    {{venv}}/python tests/stress/interrupts.py --runs 100

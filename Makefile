# Two commands from a fresh clone: `make demo` and `make test`. Everything else is set-up they call.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench clean docs

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

# The full suite (what CI runs) on two pytest-xdist workers, listing skip reasons and the 15 slowest tests.
# `--dist worksteal`: a worker that runs out of tests takes half of the other's queue. With xdist's default
# chunks one worker ran the multi-process training tests alone for the last 220 s of a 1075 s run; with
# worksteal both ended within 30 s (935 s; 603 tests, 2-core Xeon VM, 2026-12-02, the host loaded as in the
# 1075 s run; the same tree took 830 s on a quieter host). CI took 870-1017 s before the change.
# (`--dist loadgroup` would keep the users of a module fixture together, but pytest 9.2 ignores the test ids
# pytest-xdist 3.8 writes for its groups.)
# Its ONNX export tests convert HQMD in a child process that peaks at 14.7 GB: keep other big jobs off the
# 24 GB machine meanwhile.
test: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 --dist worksteal --durations=15 tests

# Everyday tier: everything not marked `slow` (tests/conftest.py lists them), about 3 minutes on 2 cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 --dist worksteal -m "not slow" tests

demo: $(STAMP)
	$(PY) experiments/demo.py

# The documentation site (MkDocs Material + mkdocstrings), offline and strict, into site/ (git-ignored).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# Every model against this machine's matmul rate -> benchmarks/results.json + RESULTS.md (~20-25 min on 2 cores).
# `make bench BENCH_ARGS=--quick` for a 3-minute smoke run (written to a temporary folder).
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build site *.egg-info

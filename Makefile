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

# The full suite (what CI runs) on two pytest-xdist workers, listing skip reasons and the 15 slowest tests
# (the suite should stay under about 12 minutes on CI's 2 cores; on a quiet host it now does). 2-core Xeon VM, 2026-11-30:
# 10 min 52 s for 487 tests at 06:30 UTC, 13 min 21 s at 10:30, 20 min 50 s for 494 at 13:12 with the host
# slower; CI took 22 min 48 s and then 18 min 48 s. With one TensorFlow thread pool per core shared out among
# the workers (tests/conftest.py): 18 min 12 s for 495 (real data included) at 15:31, against 22 min 00 s at
# 13:44 the same afternoon without it. With the metrics and loss-term metrics tracing only their own formulas,
# the JAX check building its models uninitialised and the imports frozen out of the garbage collector:
# 15 min 41 s for 500 at 18:03 (20 min 47 s at 17:32 without the last, the host slower: a test that takes 34-45 s
# alone took 123 s); 11 min 38 s for 502 at 18:25 with resizes of known sizes as constants, on a quieter host
# (the MRPAN training fixture: 98 s in the suite at 16:27, 45 s alone at 18:40 without that change, 40 s with
# it). Its ONNX export tests convert HQMD in a child process that peaks at 14.7 GB: keep other
# big jobs off the 24 GB machine meanwhile.
test: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 --durations=15 tests

# Everyday tier: everything not marked `slow` (tests/conftest.py lists them), about 3 minutes on 2 cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 -m "not slow" tests

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

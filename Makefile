# One-command set-up: every target creates .venv and installs the package if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-slow demo reproduce bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Test files run in parallel, one file per worker (session fixtures are built once per file's
# worker): measured 2026-12-02 on 2 cores, 41 min serial vs 20 min with 2 workers (same load);
# after trimming the heaviest fixtures, 15 min with 2 workers, peak RSS 3.4 GB (same day).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(PY) -m rolekd_tf.demo

# CPU-scale reproduction of the paper's Table 2/3 rows on reduced CIFAR-10 (needs
# ROLEKD_CIFAR10_TAR or the shared archive; ~3 h on 2 cores; re-run to resume, see README)
REPRO_OUT ?= runs/repro
reproduce: $(STAMP)
	$(PY) -m rolekd_tf.pipeline --config configs/repro_cifar10_cpu.yaml --out $(REPRO_OUT)
	$(PY) -m rolekd_tf.pipeline --config configs/repro_cifar10_cpu.yaml --out $(REPRO_OUT) --report

# every benchmark once, then BENCHMARKS.md regenerated from benchmarks/results/
bench: $(STAMP)
	$(PY) benchmarks/augment.py
	$(PY) benchmarks/distill_step.py
	$(PY) benchmarks/search_overhead.py
	$(PY) benchmarks/export.py
	$(PY) benchmarks/jit_compile.py
	$(PY) benchmarks/collect.py

clean:
	rm -rf runs searches build *.egg-info

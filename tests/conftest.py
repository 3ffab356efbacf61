"""Shared fixtures: paths to the shared data, a trained tiny tokenizer, offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton must see TRITON_INTERPRET before its first import (any module importing jz3.kernels, e.g.
# tests/test_imports.py, would otherwise fix triton.language's helpers in compiled mode). On a
# machine without a GPU the kernel tests run under the interpreter; with one, they compile.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

from jz3.paths import PROJECT_ROOT, shared_data_dir  # noqa: E402

SHARED = shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.fail(f"shared data not found at {SHARED} (set JZ3_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory, shared_data) -> Path:
    """A 2048-piece sentencepiece tokenizer trained on the JiuZhang3.0 samples (HF folder)."""
    from jz3.data.tokenizers import train_sentencepiece

    s = shared_data / "jiuzhang3_samples"
    files = [str(s / f) for f in ("cot_pretrain_sampled.jsonl", "tool_pretrain_sampled.jsonl",
                                  "finetune_sampled.jsonl")]
    return train_sentencepiece(files, tmp_path_factory.mktemp("tok"), vocab_size=2048)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir), local_files_only=True)

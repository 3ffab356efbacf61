"""A randomly initialised tiny synthesizer folder (HF format) for tests, benches and CPU demos."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from transformers import AutoTokenizer

from jz3.config.model import ModelConfig


def make_tiny_synthesizer(out_dir: Union[str, Path], tokenizer_dir: Union[str, Path],
                          model_cfg: Optional[ModelConfig] = None, seed: int = 0) -> Path:
    """Save a tiny Llama-shaped model + its tokenizer to `out_dir`; returns the folder."""
    from jz3.models.build import build_model

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    mcfg = model_cfg or ModelConfig()
    mcfg.vocab_size = max(mcfg.vocab_size, len(tok))
    torch.manual_seed(seed)
    model = build_model(mcfg)
    model.config.use_cache = True
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out

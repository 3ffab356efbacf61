"""The one tiny-model builder: a randomly initialised Llama-shaped model + tokenizer saved as an
HF folder, for tests, benches and CPU demos (synthesizer and evaluated model alike)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

from jz3.config.data import TokenizerConfig
from jz3.config.model import ModelConfig

log = logging.getLogger(__name__)


def _tokenizer(tokenizer: Union[TokenizerConfig, str, Path]):
    if isinstance(tokenizer, TokenizerConfig):
        from jz3.data.tokenizers import load_tokenizer

        return load_tokenizer(tokenizer)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)


def build_tiny_model(out_dir: Union[str, Path], tokenizer: Union[TokenizerConfig, str, Path],
                     model: Optional[ModelConfig] = None, seed: int = 0) -> Path:
    """Write `out_dir` (config.json, weights, tokenizer files) unless it already holds a model.

    `tokenizer`: a `TokenizerConfig` (trained first when missing) or an HF tokenizer folder.
    The vocabulary grows to the tokenizer's size when the model config's is smaller.
    """
    import dataclasses

    import torch

    from jz3.models.build import build_model

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    tok = _tokenizer(tokenizer)
    mcfg = dataclasses.replace(model or ModelConfig())
    mcfg.vocab_size = max(mcfg.vocab_size, len(tok))
    torch.manual_seed(seed)
    net = build_model(mcfg)
    net.config.use_cache = True
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tok, key, None) is not None:
            setattr(net.config, key, getattr(tok, key))
    tmp = out.with_name(out.name + ".tmp")
    net.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    tmp.rename(out)
    log.info("built a tiny random model (vocab %d) in %s", mcfg.vocab_size, out)
    return out

"""A tiny random Llama saved as an HF folder (model + sentencepiece tokenizer) for CPU runs of
the harness; `eval.model_path` normally points at the trainer's export instead."""

from __future__ import annotations

import logging
from pathlib import Path

from jz3.config.data import TokenizerConfig
from jz3.config.model import ModelConfig

log = logging.getLogger(__name__)


def build_tiny_model(out_dir: str | Path, model: ModelConfig, tokenizer: TokenizerConfig,
                     seed: int = 0) -> Path:
    """Write `out_dir` (config.json, weights, tokenizer files) unless it already holds a model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from jz3.data.tokenizers import load_tokenizer

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    tok = load_tokenizer(tokenizer)
    torch.manual_seed(seed)
    conf = LlamaConfig(
        vocab_size=len(tok), hidden_size=model.hidden_size,
        intermediate_size=model.intermediate_size, num_hidden_layers=model.num_hidden_layers,
        num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_key_value_heads,
        max_position_embeddings=model.max_position_embeddings, rope_theta=model.rope_theta,
        rms_norm_eps=model.rms_norm_eps, tie_word_embeddings=model.tie_word_embeddings,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    tmp = out.with_name(out.name + ".tmp")
    LlamaForCausalLM(conf).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    log.info("built a tiny random Llama (%d layers, vocab %d) in %s", conf.num_hidden_layers,
             conf.vocab_size, out)
    return out

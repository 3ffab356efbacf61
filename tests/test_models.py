"""Model builders and document-masked attention (no DeepSpeed, in-process, a few seconds)."""

from __future__ import annotations

import pytest
import torch

from jz3.config.enums import Arch, AttnImpl
from jz3.config.model import ModelConfig
from jz3.models import build_model, flops_per_token, hf_config_from, resolve_attn_impl
from jz3.models.attention import (
    block_causal_mask,
    cu_seqlens_from_position_ids,
    document_forward_kwargs,
)
from jz3.train.loss import causal_lm_loss_sum


def tiny(arch: Arch, attn: AttnImpl = AttnImpl.sdpa) -> ModelConfig:
    return ModelConfig(arch=arch, attn_impl=attn, num_local_experts=4 if arch == Arch.mixtral else 0,
                       sliding_window=None if arch == Arch.llama else 1024)


@pytest.mark.parametrize("arch", list(Arch))
def test_build_from_config_has_the_configured_shape(arch):
    m = build_model(tiny(arch))
    assert type(m).__name__.lower().startswith(arch.value)
    assert m.config.vocab_size == 2048 and m.config.num_hidden_layers == 2
    assert m.config.num_key_value_heads == 2 and m.config._attn_implementation == "sdpa"
    assert m.get_input_embeddings().weight.shape == (2048, 64)
    if arch == Arch.mixtral:
        assert m.config.num_local_experts == 4


def test_unknown_mixtral_without_experts_is_an_error():
    with pytest.raises(ValueError, match="num_local_experts"):
        hf_config_from(ModelConfig(arch=Arch.mixtral, num_local_experts=0))


def test_auto_attention_is_sdpa_without_flash_attn_and_flash_is_refused():
    assert resolve_attn_impl(AttnImpl.auto) == "sdpa"
    with pytest.raises(RuntimeError, match="flash"):
        resolve_attn_impl(AttnImpl.flash)


def _packed(doc_lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    docs = [torch.randint(4, 2048, (n,), generator=g) for n in doc_lens]
    ids = torch.cat(docs)[None]
    pos = torch.cat([torch.arange(n) for n in doc_lens])[None]
    return docs, ids, pos


@pytest.mark.parametrize("arch", list(Arch))
@pytest.mark.parametrize("attn", [AttnImpl.sdpa, AttnImpl.eager])
def test_packed_loss_equals_token_weighted_per_document_losses(arch, attn):
    torch.manual_seed(0)
    model = build_model(tiny(arch, attn)).eval()
    doc_lens = [7, 12, 3, 10]
    docs, ids, pos = _packed(doc_lens)
    labels = ids.clone()
    starts = torch.cumsum(torch.tensor([0] + doc_lens[:-1]), 0)
    labels[0, starts] = -100  # never predict a document's first token from the previous document
    with torch.no_grad():
        packed_logits = model(input_ids=ids, **document_forward_kwargs(pos, model.config._attn_implementation)).logits
        packed_sum = causal_lm_loss_sum(packed_logits, labels)
        n_packed = int((labels[:, 1:] != -100).sum())
        per_doc_sums, per_doc_n = [], []
        for d in docs:
            lg = model(input_ids=d[None], use_cache=False).logits
            per_doc_sums.append(causal_lm_loss_sum(lg, d[None]))
            per_doc_n.append(len(d) - 1)
        # Without document masking the loss differs (sanity check that the test can fail).
        leaky = causal_lm_loss_sum(model(input_ids=ids, use_cache=False).logits, labels)
    weighted = sum(per_doc_sums) / sum(per_doc_n)
    assert n_packed == sum(per_doc_n)
    torch.testing.assert_close(packed_sum / n_packed, weighted, rtol=1e-5, atol=1e-5)
    assert abs(float(leaky / n_packed - weighted)) > 1e-3


def test_block_causal_mask_and_cu_seqlens():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [5, 6, 0, 1, 2, 3]])
    m = block_causal_mask(pos)
    assert m.shape == (2, 1, 6, 6)
    assert m[0, 0, 4, 3] and not m[0, 0, 3, 2] and not m[0, 0, 1, 2]
    assert m[1, 0, 1, 0] and not m[1, 0, 2, 1]
    assert cu_seqlens_from_position_ids(pos).tolist() == [0, 3, 5, 6, 8, 12]


def test_flops_per_token_counts_active_experts_only():
    dense = flops_per_token(ModelConfig(arch=Arch.mistral, num_local_experts=0), 256)
    moe = flops_per_token(ModelConfig(arch=Arch.mixtral, num_local_experts=8, num_experts_per_tok=2), 256)
    assert dense > 6 * 64 * 2048 and moe > dense
    # Mistral-7B: ~7.2e9 params -> ~4.3e10 training FLOPs per token plus attention.
    m7 = ModelConfig(arch=Arch.mistral, vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)
    assert 4.0e10 < flops_per_token(m7, 2048) < 5.0e10

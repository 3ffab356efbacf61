"""Attention choice and document masking for packed sequences.

Packed rows hold several documents; position ids restart at 0 per document. transformers v5
derives the document boundaries from `position_ids` when no 2D attention mask and no KV cache
are passed (`masking_utils.find_packed_sequence_indices`): with SDPA/eager it builds a
block-diagonal causal mask, with flash-attn 2 it runs the varlen kernel with `cu_seqlens`.
`document_forward_kwargs` makes that explicit (no mask, `use_cache=False`) and, for flash-attn,
passes the per-document `cu_seq_lens_*` directly. `tests/test_models.py` proves that a packed
batch's loss equals the token-weighted sum of per-document losses.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Dict

import torch

from jz3.config.enums import AttnImpl


def flash_attn_available() -> bool:
    """flash-attn 2 is importable and a CUDA device exists (never true on this CPU machine)."""
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_attn_impl(impl: AttnImpl) -> str:
    """Map the config choice onto a transformers `attn_implementation` name."""
    if impl == AttnImpl.auto:
        return "flash_attention_2" if flash_attn_available() else "sdpa"
    if impl == AttnImpl.flash:
        if not flash_attn_available():
            raise RuntimeError("model.attn_impl=flash but flash-attn/CUDA is not available")
        return "flash_attention_2"
    return impl.value


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """int32 cumulative document lengths over the flattened batch (a new doc starts at pos 0)."""
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten()
    # Every row starts a segment even if it continues a document split across rows.
    row_starts = torch.arange(0, flat.numel(), position_ids.shape[-1], device=flat.device)
    starts = torch.unique(torch.cat([starts, row_starts]))
    end = torch.tensor([flat.numel()], device=flat.device)
    return torch.cat([starts, end]).to(torch.int32)


def document_forward_kwargs(position_ids: torch.Tensor, attn_impl: str) -> Dict[str, Any]:
    """Keyword arguments for `model(input_ids, **kw)` so that no token attends across documents."""
    kw: Dict[str, Any] = {"position_ids": position_ids, "attention_mask": None, "use_cache": False}
    if attn_impl == "flash_attention_2":
        cu = cu_seqlens_from_position_ids(position_ids)
        max_len = int((cu[1:] - cu[:-1]).max())
        kw.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max_len, max_length_k=max_len)
    return kw


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Per-row document index (0, 0, 1, 1, 1, 2, ...) from restarting position ids."""
    first = position_ids[:, :1] - 1
    return (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)


def block_causal_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """Explicit boolean [b, 1, s, s] block-diagonal causal mask (True = may attend); reference."""
    doc = document_ids(position_ids)
    s = position_ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=position_ids.device).tril()
    same = doc[:, :, None] == doc[:, None, :]
    return (same & causal)[:, None]

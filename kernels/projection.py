"""Random projection `x @ R` with R generated on the fly from a counter-based RNG.

The matrix is never stored. Entry `R[row, col]` is a pure function of
`(seed, key, row, col)`: Philox-4x32 (the rounds of `triton.language.philox`) with counters
`(row & 0xffffffff, col, key, row >> 32)` and key `(seed & 0xffffffff, seed >> 32)`.

- Rademacher: `+1` if the top bit of the first output word is 0, else `-1`.
- Gaussian: Box-Muller on the first two output words, `u = ((w >> 8) + 0.5) * 2**-24`.

`row` is the global row index (`row_offset + k`): projecting a long vector in blocks, on any
batch split, any shard and any device gives the same result. The Triton kernel
(`project_triton`) and the torch reference (`project_torch`) build the same matrix; the torch
reference also runs on CPU and is what the CPU code path uses. No scaling is applied here:
callers multiply by `1/sqrt(dim)` for an inner-product preserving projection.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Optional

import torch

from jz3.config.enums import ProjKind

M32 = 0xFFFFFFFF
PHILOX_KEY_A = 0x9E3779B9
PHILOX_KEY_B = 0xBB67AE85
PHILOX_ROUND_A = 0xD2511F53
PHILOX_ROUND_B = 0xCD9E8D57
N_ROUNDS = 10
TWO_PI = 6.283185307179586


# ----------------------------------------------------------------------------------------------
# torch reference (CPU or any device, int64 arithmetic on uint32 values)
# ----------------------------------------------------------------------------------------------


def philox_torch(seed: int, c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor,
                 c3: torch.Tensor, n_rounds: int = N_ROUNDS):
    """Philox-4x32 on int64 tensors holding uint32 values; returns the four output words.

    int64 products of two uint32 values wrap modulo 2**64, so bits 0..63 stay exact and the
    high word (umulhi) is `(a * b >> 32) & M32`.
    """
    k0 = seed & M32
    k1 = (seed >> 32) & M32
    for _ in range(n_rounds):
        _c0, _c2 = c0, c2
        p_b = PHILOX_ROUND_B * _c2
        p_a = PHILOX_ROUND_A * _c0
        c0 = ((p_b >> 32) & M32) ^ c1 ^ k0
        c2 = ((p_a >> 32) & M32) ^ c3 ^ k1
        c1 = p_b & M32
        c3 = p_a & M32
        k0 = (k0 + PHILOX_KEY_A) & M32
        k1 = (k1 + PHILOX_KEY_B) & M32
    return c0, c1, c2, c3


def _words_to_values(w0: torch.Tensor, w1: torch.Tensor, kind: ProjKind) -> torch.Tensor:
    if kind == ProjKind.rademacher:
        return 1.0 - 2.0 * ((w0 >> 31) & 1).to(torch.float32)
    u1 = ((w0 >> 8).to(torch.float32) + 0.5) * (2.0 ** -24)
    u2 = ((w1 >> 8).to(torch.float32) + 0.5) * (2.0 ** -24)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(TWO_PI * u2)


def random_matrix_torch(rows: int, cols: int, seed: int, key: int = 0, row_offset: int = 0,
                        kind: ProjKind = ProjKind.rademacher,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """The float32 matrix `R[row_offset:row_offset+rows, :cols]` for (seed, key)."""
    r = torch.arange(row_offset, row_offset + rows, dtype=torch.int64, device=device)[:, None]
    c = torch.arange(cols, dtype=torch.int64, device=device)[None, :]
    c0 = (r & M32).expand(rows, cols)
    c3 = ((r >> 32) & M32).expand(rows, cols)
    c1 = c.expand(rows, cols)
    c2 = torch.full_like(c0, key & M32)
    w0, w1, _, _ = philox_torch(int(seed), c0, c1, c2, c3)
    return _words_to_values(w0, w1, ProjKind(kind))


class _MatrixCache:
    """CPU reference only: generated blocks kept up to a byte budget (LRU), so a projection
    applied batch after batch does not rerun Philox on the CPU each time."""

    def __init__(self, budget_bytes: int):
        self.budget, self.used = budget_bytes, 0
        self.items: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, rows: int, cols: int, seed: int, key: int, row_offset: int,
            kind: ProjKind) -> torch.Tensor:
        k = (rows, cols, seed, key, row_offset, kind)
        hit = self.items.get(k)
        if hit is not None:
            self.items.move_to_end(k)
            return hit
        r = random_matrix_torch(rows, cols, seed, key, row_offset, kind)
        size = r.numel() * r.element_size()
        if size <= self.budget:
            while self.used + size > self.budget and self.items:
                _, old = self.items.popitem(last=False)
                self.used -= old.numel() * old.element_size()
            self.items[k] = r
            self.used += size
        return r


_CACHE = _MatrixCache(int(os.environ.get("JZ3_PROJ_CACHE_MB", "1024")) << 20)


def project_torch(x: torch.Tensor, dim: int, seed: int, key: int = 0, row_offset: int = 0,
                  kind: ProjKind = ProjKind.rademacher, block_rows: int = 4096) -> torch.Tensor:
    """Reference `x[N, K] @ R[K, dim]` in float32, building R in row blocks (cached on CPU)."""
    x = x.float()
    n, k = x.shape
    out = torch.zeros(n, dim, dtype=torch.float32, device=x.device)
    for k0 in range(0, k, block_rows):
        k1 = min(k, k0 + block_rows)
        if x.device.type == "cpu":
            r = _CACHE.get(k1 - k0, dim, int(seed), int(key), row_offset + k0, ProjKind(kind))
        else:
            r = random_matrix_torch(k1 - k0, dim, seed, key, row_offset + k0, kind, x.device)
        r = r.to(x.device)
        out += x[:, k0:k1] @ r
    return out


# ----------------------------------------------------------------------------------------------
# Triton kernel
# ----------------------------------------------------------------------------------------------

try:  # Triton is optional at import time (CPU-only installs still get the torch path).
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - triton is a declared dependency
    HAVE_TRITON = False

# `triton.jit` decides at definition time whether to interpret (TRITON_INTERPRET=1): tests set
# the variable before importing this module.
if HAVE_TRITON:

    @triton.jit
    def _rand_block(seed, key, rows, cols, GAUSSIAN: tl.constexpr):
        """R[rows, cols] for int64 `rows` [BK] and int32 `cols` [BD] (float32 [BK, BD])."""
        r2 = rows[:, None] + tl.zeros_like(cols)[None, :].to(tl.int64)
        c2 = cols[None, :].to(tl.int64) + tl.zeros_like(rows)[:, None]
        c0 = (r2 & 0xFFFFFFFF).to(tl.uint32)
        c3 = ((r2 >> 32) & 0xFFFFFFFF).to(tl.uint32)
        c1 = c2.to(tl.uint32)
        ck = (tl.zeros_like(c2) + key).to(tl.uint32)
        w0, w1, _, _ = tl.philox(seed, c0, c1, ck, c3)
        if GAUSSIAN:
            u1 = ((w0 >> 8).to(tl.float32) + 0.5) * 5.960464477539063e-08
            u2 = ((w1 >> 8).to(tl.float32) + 0.5) * 5.960464477539063e-08
            vals = tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)
        else:
            vals = 1.0 - 2.0 * ((w0 >> 31) & 1).to(tl.float32)
        return vals

    @triton.jit
    def _project_kernel(x_ptr, out_ptr, N, K, D, stride_xn, stride_xk, stride_on, stride_od,
                        seed, key, row_offset,
                        GAUSSIAN: tl.constexpr, ALLOW_TF32: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
        pid_n = tl.program_id(0)
        pid_d = tl.program_id(1)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        acc = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_x = (offs_n[:, None] < N) & (offs_k[None, :] < K)
            x = tl.load(x_ptr + offs_n[:, None] * stride_xn + offs_k[None, :] * stride_xk,
                        mask=mask_x, other=0.0).to(tl.float32)
            r = _rand_block(seed, key, row_offset + offs_k.to(tl.int64), offs_d, GAUSSIAN)
            if ALLOW_TF32:
                acc += tl.dot(x, r, input_precision="tf32")
            else:
                acc += tl.dot(x, r, input_precision="ieee")
        mask_o = (offs_n[:, None] < N) & (offs_d[None, :] < D)
        tl.store(out_ptr + offs_n[:, None] * stride_on + offs_d[None, :] * stride_od, acc,
                 mask=mask_o)

    @triton.jit
    def _matrix_kernel(out_ptr, K, D, seed, key, row_offset, GAUSSIAN: tl.constexpr,
                       BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
        offs_k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
        offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        r = _rand_block(seed, key, row_offset + offs_k.to(tl.int64), offs_d, GAUSSIAN)
        mask = (offs_k[:, None] < K) & (offs_d[None, :] < D)
        tl.store(out_ptr + offs_k[:, None] * D + offs_d[None, :], r, mask=mask)


def triton_usable(x: torch.Tensor) -> bool:
    """The Triton path runs on CUDA tensors, or anywhere under `TRITON_INTERPRET=1`."""
    return HAVE_TRITON and (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


def project_triton(x: torch.Tensor, dim: int, seed: int, key: int = 0, row_offset: int = 0,
                   kind: ProjKind = ProjKind.rademacher, allow_tf32: bool = False,
                   block_n: int = 32, block_k: int = 32, block_d: int = 64) -> torch.Tensor:
    """`x[N, K] @ R[K, dim]` (float32 out) with R generated inside the kernel."""
    if not HAVE_TRITON:
        raise RuntimeError("triton is not installed")
    assert x.dim() == 2, x.shape
    n, k = x.shape
    out = torch.empty(n, dim, dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(n, block_n), triton.cdiv(dim, block_d))
    _project_kernel[grid](x, out, n, k, dim, x.stride(0), x.stride(1), out.stride(0),
                          out.stride(1), int(seed), int(key) & M32, int(row_offset),
                          GAUSSIAN=ProjKind(kind) == ProjKind.gaussian, ALLOW_TF32=allow_tf32,
                          BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_D=block_d)
    return out


def random_matrix_triton(rows: int, cols: int, seed: int, key: int = 0, row_offset: int = 0,
                         kind: ProjKind = ProjKind.rademacher, device: str = "cpu",
                         block: int = 32) -> torch.Tensor:
    """Materialise the kernel's matrix (tests compare it with `random_matrix_torch`)."""
    out = torch.empty(rows, cols, dtype=torch.float32, device=device)
    grid = (triton.cdiv(rows, block), triton.cdiv(cols, block))
    _matrix_kernel[grid](out, rows, cols, int(seed), int(key) & M32, int(row_offset),
                         GAUSSIAN=ProjKind(kind) == ProjKind.gaussian, BLOCK_K=block,
                         BLOCK_D=block)
    return out


def project(x: torch.Tensor, dim: int, seed: int, key: int = 0, row_offset: int = 0,
            kind: ProjKind = ProjKind.rademacher) -> torch.Tensor:
    """Dispatch: the Triton kernel on CUDA, the torch reference on CPU."""
    if x.is_cuda and HAVE_TRITON:
        return project_triton(x, dim, seed, key, row_offset, kind)
    return project_torch(x, dim, seed, key, row_offset, kind)


def jl_scale(dim: int) -> float:
    """`1/sqrt(dim)`: makes `E[<xR, yR>] * scale**2 = <x, y>` for unit-variance entries."""
    return 1.0 / math.sqrt(dim)

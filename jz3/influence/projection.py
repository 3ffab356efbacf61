"""Per-layer random projection of LoRA gradients to D dims (block or Kronecker structure).

Layer m with gradient `G [out, in]` gets `D_m` of the D output dims (proportional to its size,
or to its estimated gradient energy; layers smaller than their share are kept exact and the
rest is re-shared).

`block` (default): the feature is `vec(G) R_m / sqrt(D_m)`, R_m `[out*in, D_m]` generated per
layer: a block-diagonal JL projection, as accurate as LESS's dense one (measured) at a cost of
`sum_m |G_m| D_m` instead of `P D` per example.

`kronecker`: the feature is `R_out^T G R_in` scaled to preserve inner products, each side
either the identity (kept exact) or a generated matrix (cheaper still, and the only structure
where plain gradients can be projected without forming G, but noisier at equal D):
- both exact when `out*in <= D_m`;
- the small side exact and the large one projected to `D_m // small` dims when
  `small**2 <= 4 D_m` (lower variance than two random sides: `small/D_m < 2/sqrt(D_m)`);
- otherwise both projected, `k_out ~ k_in ~ sqrt(D_m)`, keeping the first `D_m` entries.
Unused dims of a layer are zero. `E[<f(G), f(G')>] = <G, G'>`: the concatenated feature preserves
inner products of the whole flattened gradient in expectation (Johnson-Lindenstrauss).

Two ways to compute the same numbers:
- `factored` (LoGra-style, plain gradients only): project the layer's inputs and output grads
  per token, `(dy R_out)^T (x R_in)` summed over tokens; the [out, in] gradient is never formed.
- `two_sided`: from a materialised gradient (needed when the elementwise Adam preconditioner
  applies): `R_out^T (F R_in)`.
The matrices come from `jz3.kernels.projection` keyed by (seed, crc32(layer name + side)): the same
on every device, batch and shard.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from jz3.config.enums import ProjKind, ProjStructure

try:  # installed as jz3.kernels (setup.py package_dir); a bare PYTHONPATH checkout: kernels
    from jz3.kernels.projection import project
except ImportError:  # pragma: no cover - depends on how jz3 is on the path
    from kernels.projection import project


@dataclass(frozen=True)
class LayerProj:
    name: str
    out_dim: int
    in_dim: int
    dim: int  # D_m: dims of the feature this layer owns (used + zero padding)
    offset: int  # first feature column of this layer
    k_out: int
    k_in: int
    exact_out: bool  # identity on the output side (k_out == out_dim)
    exact_in: bool
    key_out: int
    key_in: int

    @property
    def used(self) -> int:
        """Feature entries that carry projection values (the rest of `dim` is zero)."""
        if self.exact_out or self.exact_in:
            return self.k_out * self.k_in
        return self.dim

    @property
    def scale(self) -> float:
        random = (1 if self.exact_out else self.k_out) * (1 if self.exact_in else self.k_in)
        if not (self.exact_out or self.exact_in):
            random = self.dim
        return 1.0 / math.sqrt(random)


def layer_key(name: str, side: str) -> int:
    """A stable uint32 RNG key for one side of one layer (independent of the model's wrapping)."""
    short = name.split("base_model.model.", 1)[-1]
    return zlib.crc32(f"{short}#{side}".encode()) & 0xFFFFFFFF


def allocate_dims(sizes: Sequence[int], dim: int,
                  weights: Optional[Sequence[float]] = None) -> List[int]:
    """Split `dim` over layers in proportion to `weights` (default: sizes; largest remainder,
    each >= 1); a layer whose size is below its share gets exactly its size (kept exact) and
    the rest is re-shared."""
    n = len(sizes)
    w = [float(x) for x in (weights if weights is not None else sizes)]
    if len(w) != n or min(w) < 0:
        raise ValueError(f"allocate_dims: {len(w)} weights for {n} layers, all must be >= 0")
    if sum(w) <= 0:
        w = [float(x) for x in sizes]
    if dim < n:
        raise ValueError(f"influence.proj_dim={dim} is smaller than the {n} LoRA layers")
    out = [0] * n
    open_ = list(range(n))
    left = dim
    while open_:
        total = sum(w[j] for j in open_)
        if total <= 0:
            break
        raw = {j: left * w[j] / total for j in open_}
        capped = [j for j in open_ if sizes[j] <= raw[j]]
        if not capped:
            break
        for j in capped:
            out[j] = sizes[j]
            left -= sizes[j]
        open_ = [j for j in open_ if j not in capped]
    if open_:
        spare = left - len(open_)
        total = sum(w[j] for j in open_) or 1.0
        raw = {j: spare * w[j] / total for j in open_}
        base = {j: int(math.floor(raw[j])) for j in open_}
        order = sorted(open_, key=lambda j: (-(raw[j] - base[j]), j))
        for j in order[: spare - sum(base.values())]:
            base[j] += 1
        for j in open_:
            out[j] = base[j] + 1
    elif left > 0:  # every layer is exact: the spare dims stay zero (in the last layer's block)
        out[-1] += left
    return out


def layer_shape(o: int, i: int, d: int) -> Tuple[int, int, bool, bool]:
    """(k_out, k_in, exact_out, exact_in) for a [o, i] layer owning d dims."""
    if o * i <= d:
        return o, i, True, True
    small = min(o, i)
    if small * small <= 4 * d and d // small >= 1:
        k = d // small
        return (o, k, True, False) if o <= i else (k, i, False, True)
    k_out = max(1, round(math.sqrt(d)))
    return k_out, math.ceil(d / k_out), False, False


class ProjectionPlan:
    """The projection of all LoRA layers to `dim` features."""

    def __init__(self, shapes: Sequence[Tuple[str, int, int]], dim: int, seed: int = 0,
                 kind: ProjKind = ProjKind.rademacher,
                 structure: ProjStructure = ProjStructure.kronecker,
                 weights: Optional[Sequence[float]] = None):
        self.dim, self.seed, self.kind = dim, seed, ProjKind(kind)
        self.structure = ProjStructure(structure)
        dims = allocate_dims([o * i for _, o, i in shapes], dim, weights)
        self.layers: List[LayerProj] = []
        off = 0
        for (name, o, i), d in zip(shapes, dims, strict=True):
            if self.structure == ProjStructure.block:  # one side = the whole flattened layer
                exact = o * i <= d
                k_out, k_in, ex_o, ex_i = 1, (o * i if exact else d), True, exact
                if exact:
                    k_out, k_in = o, i
            else:
                k_out, k_in, ex_o, ex_i = layer_shape(o, i, d)
            self.layers.append(LayerProj(name, o, i, d, off, k_out, k_in, ex_o, ex_i,
                                         layer_key(name, "out"), layer_key(name, "in")))
            off += d

    def _proj(self, x: torch.Tensor, k: int, key: int) -> torch.Tensor:
        return project(x, k, self.seed, key, 0, self.kind)

    def _finish(self, lp: LayerProj, y: torch.Tensor) -> torch.Tensor:
        """[N, k_out, k_in] -> [N, D_m]: the used entries, scaled, then zero padding."""
        y = y.reshape(y.shape[0], -1)[:, : lp.used] * lp.scale
        if lp.used < lp.dim:
            y = torch.nn.functional.pad(y, (0, lp.dim - lp.used))
        return y

    def _side(self, x: torch.Tensor, exact: bool, k: int, key: int) -> torch.Tensor:
        return x if exact else self._proj(x, k, key)

    def factored(self, acts: Dict[str, torch.Tensor], out_grads: Dict[str, torch.Tensor]
                 ) -> torch.Tensor:
        """Features of plain per-example gradients from activations [N,T,in], grads [N,T,out]
        (Kronecker structure only: the [out, in] gradient is never formed)."""
        if self.structure != ProjStructure.kronecker:
            raise ValueError("the factored path needs proj_structure=kronecker")
        parts = []
        for lp in self.layers:
            a, g = acts[lp.name].float(), out_grads[lp.name].float()
            n, t = a.shape[:2]
            pa = self._side(a.reshape(n * t, lp.in_dim), lp.exact_in, lp.k_in, lp.key_in)
            pg = self._side(g.reshape(n * t, lp.out_dim), lp.exact_out, lp.k_out, lp.key_out)
            pa, pg = pa.view(n, t, lp.k_in), pg.view(n, t, lp.k_out)
            parts.append(self._finish(lp, torch.einsum("nto,nti->noi", pg, pa)))
        return torch.cat(parts, dim=1)

    def two_sided(self, grads: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Features of materialised per-example (maybe preconditioned) gradients [N,out,in]."""
        parts = []
        for lp in self.layers:
            f = grads[lp.name].float()
            n = f.shape[0]
            if self.structure == ProjStructure.block:
                flat = f.reshape(n, -1)
                y = flat if lp.exact_in else self._proj(flat, lp.k_in, lp.key_in)
                parts.append(self._finish(lp, y))
                continue
            y = self._side(f.reshape(n * lp.out_dim, lp.in_dim), lp.exact_in, lp.k_in, lp.key_in)
            y = y.view(n, lp.out_dim, lp.k_in).transpose(1, 2).reshape(n * lp.k_in, lp.out_dim)
            y = self._side(y, lp.exact_out, lp.k_out, lp.key_out)
            y = y.view(n, lp.k_in, lp.k_out).transpose(1, 2)
            parts.append(self._finish(lp, y))
        return torch.cat(parts, dim=1)

    def describe(self) -> Dict[str, object]:
        return {"dim": self.dim, "seed": self.seed, "kind": self.kind.value,
                "structure": self.structure.value,
                "layers": [(lp.name, lp.out_dim, lp.in_dim, lp.dim, lp.k_out, lp.k_in,
                            lp.exact_out, lp.exact_in)
                           for lp in self.layers]}

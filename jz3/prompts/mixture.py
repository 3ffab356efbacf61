"""Seeded assignment of prompt types to snippets by a configurable mixture.

The choice for a snippet depends only on (seed, snippet id, mixture), never on the order in
which snippets are seen, so shards and reruns agree.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Dict, List, Mapping, Optional, Tuple, Union

from jz3.config.enums import PromptType
from jz3.prompts.renderer import PROMPT_TYPES, PromptError, as_prompt_type

# Equal weight on each of the nine types unless the config says otherwise.
DEFAULT_MIXTURE: Dict[PromptType, float] = {t: 1.0 for t in PROMPT_TYPES}

Mixture = Mapping[Union[str, PromptType], float]


def normalize_mixture(mixture: Optional[Mixture]) -> Dict[PromptType, float]:
    """Validate a {type: weight} mapping and scale it to sum 1 (empty/None = DEFAULT_MIXTURE)."""
    raw = dict(mixture) if mixture else dict(DEFAULT_MIXTURE)
    out: Dict[PromptType, float] = {}
    for key, weight in raw.items():
        pt = as_prompt_type(key)
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise PromptError(f"mixture weight for {pt.value!r} is not a number: {weight!r}") from None
        if w < 0 or w != w:
            raise PromptError(f"mixture weight for {pt.value!r} must be >= 0, got {weight!r}")
        if w > 0:
            out[pt] = w
    total = sum(out.values())
    if total <= 0:
        raise PromptError(f"mixture has no positive weight: {raw!r}")
    # Fixed order (enum order) so that the cumulative table does not depend on dict order.
    return {pt: out[pt] / total for pt in PROMPT_TYPES if pt in out}


def _cumulative(mixture: Dict[PromptType, float]) -> Tuple[List[PromptType], List[float]]:
    types, cum, acc = [], [], 0.0
    for pt, w in mixture.items():
        acc += w
        types.append(pt)
        cum.append(acc)
    cum[-1] = 1.0
    return types, cum


def unit_hash(*parts: object) -> float:
    """A deterministic uniform number in [0, 1) from its parts."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def assign_prompt_type(snippet_id: str, mixture: Optional[Mixture], seed: int = 0) -> PromptType:
    """The prompt type of one snippet, drawn from `mixture` with a per-id seeded hash."""
    types, cum = _cumulative(normalize_mixture(mixture))
    u = unit_hash("prompt_type", seed, snippet_id)
    return types[min(bisect.bisect_right(cum, u), len(types) - 1)]

"""LESS scoring and selection.

    score(z) = max_j mean_{z' in target subtask j} sum_c w_c cos(f_c(z), g_c(z'))
with `f_c` the Adam feature of candidate z at warmup checkpoint c, `g_c` the plain gradient
feature of target z', and `w_c` the mean learning rate of the warmup epoch ending at c,
renormalised to sum to 1 (LESS `less/data_selection/matching.py`: checkpoint-weighted sum of
inner products of unit features, `.reshape(n, n_subtasks, -1).mean(-1).max(-1)`). jz3's
subtasks are the target files (GSM8K train, MATH train), so a candidate scores by the target
it helps most. Scores therefore lie in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from jz3.influence.store import FeatureSet


def subtask_index(subtasks: Sequence[str]) -> Dict[str, np.ndarray]:
    out: Dict[str, List[int]] = {}
    for j, s in enumerate(subtasks):
        out.setdefault(s, []).append(j)
    return {k: np.asarray(v) for k, v in out.items()}


def normalised(weights: Dict[str, float]) -> Dict[str, float]:
    """Checkpoint weights scaled to sum to 1 (LESS renormalises them the same way)."""
    total = float(sum(weights.values()))
    if not weights or total <= 0:
        raise ValueError(f"checkpoint weights {weights} must be positive (mean lr per epoch)")
    return {c: float(w) / total for c, w in weights.items()}


def less_scores_dense(cand: Dict[str, np.ndarray], targ: Dict[str, np.ndarray],
                      subtasks: Sequence[str], weights: Dict[str, float]) -> np.ndarray:
    """Scores from in-memory features `{ckpt: [n, D]}` (rows normalised here)."""
    n = next(iter(cand.values())).shape[0]
    sim = np.zeros((n, len(subtasks)), dtype=np.float64)
    for c, w in normalised(weights).items():
        a = np.asarray(cand[c], dtype=np.float32)
        b = np.asarray(targ[c], dtype=np.float32)
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
        sim += w * (a @ b.T)
    groups = subtask_index(subtasks)
    return np.max(np.stack([sim[:, idx].mean(axis=1) for idx in groups.values()], 1), axis=1)


def less_scores(cand: FeatureSet, targ: FeatureSet, weights: Dict[str, float],
                block: int = 4096) -> np.ndarray:
    """Scores of all candidates, streaming candidate shards block by block."""
    missing = [c for c in weights if c not in cand.ckpts or c not in targ.ckpts]
    if missing:
        raise KeyError(f"checkpoints {missing} have no candidate or target features")
    tmat = {c: targ.matrix(c) for c in weights}
    out = []
    for s in cand.shards:
        for start in range(0, len(s.ids), block):
            feats = {c: s.features(c)[start:start + block] for c in weights}
            out.append(less_scores_dense(feats, tmat, targ.subtasks, weights))
    return np.concatenate(out) if out else np.zeros(0)


def select(ids: Sequence[str], scores: np.ndarray, top_k: Optional[int] = None,
           top_p: Optional[float] = None) -> List[int]:
    """Indices of the top-k (or top ceil(p * n)) scores, best first; ties keep input order."""
    n = len(ids)
    if top_k is not None:
        k = top_k
    elif top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"influence.top_p={top_p} must be in (0, 1]")
        k = math.ceil(top_p * n)
    else:
        raise ValueError("set influence.top_k or influence.top_p")
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    return order[: min(k, n)]

"""Per-stage configs: the root config plus `pipeline.overrides[stage]`, and cache keys."""

from __future__ import annotations

import copy
from typing import Any, Sequence

from omegaconf import OmegaConf

from jz3.config.root import JZ3Config
from jz3.pipeline.manifest import config_hash


def stage_config(cfg: JZ3Config, stage: str) -> JZ3Config:
    """A deep copy of `cfg` with the stage's overrides merged in (typed, validated)."""
    over = cfg.pipeline.overrides.get(stage)
    if not over:
        return copy.deepcopy(cfg)
    if not isinstance(over, dict):
        raise ValueError(f"pipeline.overrides.{stage}: expected a mapping, got {type(over).__name__}")
    base = OmegaConf.structured(cfg)
    try:
        merged = OmegaConf.merge(base, OmegaConf.create(over))
    except Exception as e:  # omegaconf names the bad key; say which stage it came from
        raise ValueError(f"pipeline.overrides.{stage}: {e}") from e
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, JZ3Config)
    return obj


def get_dotted(obj: Any, dotted: str) -> Any:
    """`get_dotted(cfg, "data.tokenizer")` -> cfg.data.tokenizer (dicts and dataclasses)."""
    cur = obj
    for part in dotted.split("."):
        cur = cur[part] if isinstance(cur, dict) else getattr(cur, part)
    return cur


def stage_key(cfg: JZ3Config, reads: Sequence[str], version: str = "1") -> str:
    """Hash of the config sections a stage reads (after its overrides) and its code version."""
    return config_hash(version, {r: get_dotted(cfg, r) for r in reads})

"""Pipeline config: which stages run and stage-specific knobs not owned by a group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List


@dataclass
class PipelineConfig:
    stages: List[str] = field(default_factory=list)  # empty = all stages in order
    force: List[str] = field(default_factory=list)  # stages to re-run even if cached

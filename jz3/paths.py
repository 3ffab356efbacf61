"""Where the project, its configs and the shared data live."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "hydra_configs"


def shared_data_dir() -> Path:
    """`$JZ3_SHARED_DATA`, else `../shared/data` beside the project root."""
    env = os.environ.get("JZ3_SHARED_DATA")
    return Path(env) if env else (PROJECT_ROOT.parent / "shared" / "data")

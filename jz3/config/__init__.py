"""Typed Hydra configs for every jz3 stage.

`register()` puts the schemas into Hydra's ConfigStore; the YAML files in `hydra_configs/`
are validated against them, so a misspelt key or a wrong type is an error naming the key.
"""

from __future__ import annotations

from jz3.config.compose import compose, hydra_entry, register, to_object
from jz3.config.root import JZ3Config

__all__ = ["JZ3Config", "compose", "hydra_entry", "register", "to_object"]

"""ConfigStore registration, resolvers, and the entry-point decorator used by `launch/`."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from jz3.config.data import DataConfig
from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.eval import EvalConfig
from jz3.config.influence import InfluenceConfig
from jz3.config.launcher import LauncherConfig
from jz3.config.model import ModelConfig
from jz3.config.root import JZ3Config
from jz3.config.synth import FilterConfig, SynthConfig
from jz3.config.teacher import TeacherConfig
from jz3.config.trainer import TrainerConfig
from jz3.paths import CONFIG_DIR, PROJECT_ROOT, shared_data_dir

GROUP_SCHEMAS = {
    "model": ModelConfig,
    "data": DataConfig,
    "trainer": TrainerConfig,
    "deepspeed": DeepSpeedConfig,
    "teacher": TeacherConfig,
    "synth": SynthConfig,
    "filter": FilterConfig,
    "influence": InfluenceConfig,
    "eval": EvalConfig,
    "launcher": LauncherConfig,
}

_registered = False


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("shared"):
        OmegaConf.register_new_resolver("shared", lambda sub="": str(shared_data_dir() / sub))
    if not OmegaConf.has_resolver("root"):
        OmegaConf.register_new_resolver("root", lambda sub="": str(PROJECT_ROOT / sub))


def register() -> None:
    """Register the root schema and each group's schema (idempotent)."""
    global _registered
    _register_resolvers()
    if _registered:
        return
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=JZ3Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name="base_" + group, node=schema)
    _registered = True


def to_object(cfg: DictConfig) -> JZ3Config:
    """Resolve interpolations and turn a composed DictConfig into the typed dataclass tree."""
    # Hydra's `+key=value` opens the struct flag; re-merging into the schema rejects unknown keys.
    schema = OmegaConf.structured(JZ3Config)
    plain = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(plain, dict):
        plain.pop("hydra", None)
    merged = OmegaConf.merge(schema, plain)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, JZ3Config), type(obj)
    return obj


def compose(overrides: Optional[List[str]] = None, config_name: str = "config") -> JZ3Config:
    """Compose the config outside a Hydra app (tests, notebooks, the pipeline)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    return to_object(cfg)


def _strip_launcher_args() -> None:
    """`deepspeed` and `torch.distributed.launch` append `--local_rank=N`; Hydra would reject it."""
    keep = []
    args = iter(sys.argv[1:])
    for a in args:
        if a.startswith("--local_rank") or a.startswith("--local-rank"):
            value = a.split("=", 1)[1] if "=" in a else next(args, "0")
            os.environ.setdefault("LOCAL_RANK", value)
            continue
        keep.append(a)
    sys.argv[1:] = keep


def hydra_entry(fn: Callable[[JZ3Config], Any]) -> Callable[[], Any]:
    """Decorate `main(cfg: JZ3Config)`; gives a no-argument function that runs it under Hydra."""
    import hydra

    register()

    @functools.wraps(fn)
    def main() -> Any:
        _strip_launcher_args()

        @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
        def _inner(cfg: DictConfig) -> Any:
            return fn(to_object(cfg))

        return _inner()

    return main

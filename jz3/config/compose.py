"""ConfigStore registration, resolvers, and the entry-point decorator used by `launch/`."""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
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
from jz3.config.validate import check
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


@dataclass
class _Composed(JZ3Config):
    """What Hydra composes: the root schema plus the chosen scale (`scale=<name>`,
    hydra_configs/scale/), an overlay that `to_object` applies after the experiment."""

    scale: Any = None


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("shared"):
        OmegaConf.register_new_resolver("shared", lambda sub="": str(shared_data_dir() / sub))
    if not OmegaConf.has_resolver("root"):
        OmegaConf.register_new_resolver("root", lambda sub="": str(PROJECT_ROOT / sub))
    # arithmetic for the scale overlays: `${idiv:${stages.pretrain.model.hidden_size},64}`
    if not OmegaConf.has_resolver("idiv"):
        OmegaConf.register_new_resolver("idiv", lambda a, b: max(1, int(a) // int(b)))
    if not OmegaConf.has_resolver("mul"):
        OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b))


def register() -> None:
    """Register the root schema and each group's schema (idempotent)."""
    global _registered
    _register_resolvers()
    if _registered:
        return
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=_Composed)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name="base_" + group, node=schema)
    _registered = True


def _is_group(key: str) -> bool:
    return (CONFIG_DIR / key.lstrip("/")).is_dir()


def apply_scale(cfg: DictConfig, overrides: Optional[List[str]] = None) -> Optional[DictConfig]:
    """The scale overlay (`cfg.scale`, from `scale=<name>`) resolved against the experiment's
    composed values (so `${mul:${stages.distill.trainer.lr},500}` reads the experiment's lr),
    with the command line's value overrides put back on top: an explicit `key=value` beats the
    scale. None when no scale is chosen."""
    node = cfg.get("scale") if isinstance(cfg, DictConfig) else None
    if node is None:
        return None
    over = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    assert isinstance(over, DictConfig)
    if overrides:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        for o in OverridesParser.create().parse_overrides(list(overrides)):
            key = o.key_or_group
            if o.is_delete() or o.package is not None or _is_group(key) or key == "scale" \
                    or key.split(".")[0] == "hydra":
                continue  # group choices shaped the composition already; hydra's own keys
            OmegaConf.update(over, key, o.value(), merge=False, force_add=True)
    return over


def to_object(cfg: DictConfig, overrides: Optional[List[str]] = None) -> JZ3Config:
    """Resolve interpolations and turn a composed DictConfig into the typed dataclass tree.

    `overrides`: the command line's overrides; with a scale chosen (`scale=tiny`) they are
    applied again after the scale overlay, which itself comes after the experiment."""
    # Hydra's `+key=value` opens the struct flag; re-merging into the schema rejects unknown keys.
    schema = OmegaConf.structured(JZ3Config)
    scale = apply_scale(cfg, overrides)
    plain = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(plain, dict):
        plain.pop("hydra", None)
        plain.pop("scale", None)
    merged = OmegaConf.merge(schema, plain)
    if scale is not None:
        merged = OmegaConf.merge(merged, scale)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, JZ3Config), type(obj)
    check(obj)  # range checks: the error names the full key (jz3.config.validate)
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
    return to_object(cfg, list(overrides or []))


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
            from hydra.core.hydra_config import HydraConfig
            from omegaconf.errors import ValidationError

            from jz3.config.validate import ConfigValueError

            try:
                return fn(to_object(cfg, list(HydraConfig.get().overrides.task)))
            except (ConfigValueError, ValidationError) as e:  # one line, no traceback
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"config error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
                sys.exit(2)

        return _inner()

    return main

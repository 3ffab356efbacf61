"""The SmolLM2-135M real-data ablation: `python launch/ablation.py +exp=smol_ablation`.

Synthetic (JiuZhang3.0's released data) vs raw-snippet continued pretraining at the same token
budget, two seeds each, scored against the base model (jz3/ablation/smol.py). Settings live
under `smol_ablation:` (hydra_configs/exp/smol_ablation.yaml; the `SmolAblationConfig`
dataclass is the schema), e.g. `smol_ablation.steps=20 smol_ablation.seeds=[0]`. Resumable:
re-running skips every finished phase. Prints the results JSON last.
"""

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from jz3.ablation.smol import SmolAblationConfig, run_ablation  # noqa: E402
from jz3.config.compose import register  # noqa: E402
from jz3.paths import CONFIG_DIR  # noqa: E402

KEY = "smol_ablation"


def ablation_config(cfg: DictConfig) -> SmolAblationConfig:
    """The typed `smol_ablation` section (unknown keys and bad values raise, naming the key)."""
    if KEY not in cfg:
        raise SystemExit(f"no `{KEY}:` section in the composed config: run with +exp={KEY}")
    merged = OmegaConf.merge(OmegaConf.structured(SmolAblationConfig), cfg[KEY])
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, SmolAblationConfig)
    return obj


@hydra.main(config_path=str(CONFIG_DIR), config_name=None, version_base="1.3")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    res = run_ablation(ablation_config(cfg))
    print(json.dumps({k: res[k] for k in ("tokens_per_run", "summary", "verdict", "timings_s")}))


if __name__ == "__main__":
    register()  # the ${shared:} / ${root:} resolvers
    main()

"""Continued pretraining: `deepspeed launch/pretrain.py +exp=jz3_7b` (the `pretrain` stage).

Runs the stage through the pipeline runner (cache, manifest; the same code path as in
`launch/pipeline.py`) with `stages.pretrain` (model, trainer, deepspeed, data). Data: the
section's `data.sources` when set (e.g. `+exp=tiny_pretrain`), else the finished filter + pack
stages in `run_dir`. Writes `${run_dir}/pretrain/` (out/train/{checkpoints,hf}, manifest.json).
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = run_single(cfg, "pretrain")
    if out is not None:  # None: pipeline.plan=true printed the plan
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

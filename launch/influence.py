"""Influence (LESS) stage: `python launch/influence.py +exp=tiny_influence`.

SLURM: `influence.step=warmup` once, then an array of `influence.step=extract` (shard from
SLURM_ARRAY_TASK_ID/COUNT), then `influence.step=score influence.num_shards=N`.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.influence.run import run_influence

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not cfg.influence.candidates:
        raise ValueError("influence.candidates: give the candidate records (kd/synth/snippets)")
    stats = run_influence(cfg, cfg.influence.candidates, cfg.influence.out_dir)
    print(json.dumps(stats, default=str))


if __name__ == "__main__":
    main()

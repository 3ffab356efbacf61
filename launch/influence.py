"""Influence (LESS) stage: `python launch/influence.py +exp=tiny_influence`.

With `stages.influence.influence.candidates` set, those records are ranked; otherwise the
finished snippets, kd_seed and distill stages in `run_dir` give the pool and the synthesizer.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = run_single(cfg, "influence")
    if out is not None:  # None: pipeline.plan=true printed the plan
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

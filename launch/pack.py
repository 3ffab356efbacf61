"""Tokenize and pack the pretraining data (`stages.pretrain.data`: its sources, else the finished
filter stage) into memory-mapped token shards: `python launch/pack.py +exp=tiny_pretrain`
(see docs/DATA.md). Up-to-date sources are skipped, so re-running is cheap.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = run_single(cfg, "pack")
    if out is not None:  # None: pipeline.plan=true printed the plan
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

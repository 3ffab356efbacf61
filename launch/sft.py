"""Instruction tuning: `deepspeed launch/sft.py +exp=tiny_sft` (the `sft` stage); loss on the
`output` of {input, output} records from `stages.sft.data.sources`. Starts from
`stages.sft.trainer.init_from` when set, else from the finished pretrain stage's export.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = run_single(cfg, "sft")
    if out is not None:  # None: pipeline.plan=true printed the plan
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

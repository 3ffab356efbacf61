"""Synthesizer distillation on the KD set: `deepspeed launch/distill.py +exp=synth_distill`
(release sh/synthesis/train.sh: DeepSeekMath-7B-RL, lr 1e-5, 5 epochs, global batch 32, cosine,
2048 tokens; loss on the completion). The `distill` stage with `stages.distill`; data = its
`data.sources` when set, else the finished kd_seed stage in `run_dir`.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = run_single(cfg, "distill")
    if out is not None:  # None: pipeline.plan=true printed the plan
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

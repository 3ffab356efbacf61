"""Synthesis with the distilled synthesizer (the `synthesize` stage), one shard per call or all:

  python launch/synthesize.py +exp=... stages.synthesize.shards=64 pipeline.shard=3   (one shard)
  sbatch --array=0-63 launch/slurm/synthesize.sbatch stages.synthesize.shards=64 ...  (SLURM array)
  python launch/synthesize.py stages.synthesize.shards=64 pipeline.merge_only=true    (merge)
  python launch/synthesize.py stages.synthesize.shards=4                      (every shard, merge)

Inputs: `stages.synthesize.synth.{model_path,input}` when set, else the finished distill_boost and
snippets stages in `run_dir`. Inside a SLURM array the shard is SLURM_ARRAY_TASK_ID.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = run_single(cfg, "synthesize")
    if out is not None:  # None: pipeline.plan=true printed the plan
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

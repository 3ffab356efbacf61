"""Synthesis with the distilled synthesizer, one shard per call (or all, then merge).

  python launch/synthesize.py synth.model_path=... synth.shard=3 synth.num_shards=64
  sbatch --array=0-63 launch/slurm/synthesize.sbatch synth.num_shards=64 ...   (SLURM array)
  python launch/synthesize.py -m hydra/launcher=jz3_slurm synth.num_shards=4 \
      synth.shard=0,1,2,3                                          (Hydra submitit multirun)
  python launch/synthesize.py synth.step=merge synth.num_shards=64  (verify + merge)
  python launch/synthesize.py synth.step=all synth.num_shards=4     (every shard here, merge)

Without synth.shard / synth.num_shards, SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT are used.
"""

import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.synth.run import run_synthesis

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(run_synthesis(cfg))


if __name__ == "__main__":
    main()

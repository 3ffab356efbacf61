"""Synthesis with the distilled synthesizer (the `synthesize` stage), one shard per call or all:

  python launch/synthesize.py +exp=... stages.synthesize.shards=64 pipeline.shard=3   (one shard)
  sbatch --array=0-63 launch/slurm/synthesize.sbatch stages.synthesize.shards=64 ...  (SLURM array)
  python launch/synthesize.py stages.synthesize.shards=64 pipeline.merge_only=true    (merge)
  python launch/synthesize.py stages.synthesize.shards=4                      (every shard, merge)

Inputs: `stages.synthesize.synth.{model_path,input}` when set, else the finished distill_boost and
snippets stages in `run_dir`. Inside a SLURM array the shard is SLURM_ARRAY_TASK_ID.
"""

from jz3.pipeline.pipeline import command

main = command("synthesize")

if __name__ == "__main__":
    main()

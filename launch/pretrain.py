"""Continued pretraining: `deepspeed launch/pretrain.py +exp=jz3_7b` (the `pretrain` stage).

Runs the stage through the pipeline runner (cache, manifest; the same code path as in
`launch/pipeline.py`) with `stages.pretrain` (model, trainer, deepspeed, data). Data: the
section's `data.sources` when set (e.g. `+exp=tiny_pretrain`), else the finished filter + pack
stages in `run_dir`. Writes `${run_dir}/pretrain/` (out/train/{checkpoints,hf}, manifest.json).
"""

from jz3.pipeline.pipeline import command

main = command("pretrain")

if __name__ == "__main__":
    main()

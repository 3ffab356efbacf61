"""Synthesizer distillation on the KD set: `deepspeed launch/distill.py +exp=synth_distill`
(release sh/synthesis/train.sh: DeepSeekMath-7B-RL, lr 1e-5, 5 epochs, global batch 32, cosine,
2048 tokens; loss on the completion). The `distill` stage with `stages.distill`; data = its
`data.sources` when set, else the finished kd_seed stage in `run_dir`.
"""

from jz3.pipeline.pipeline import command

main = command("distill")

if __name__ == "__main__":
    main()

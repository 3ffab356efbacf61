"""Synthesizer distillation on the KD set: `deepspeed launch/distill.py +exp=synth_distill`
(paper: DeepSeekMath-7B, lr 1e-5, 5 epochs, global batch 32, 2048 tokens, cosine); loss on the
completion only. Same trainer as pretraining (`jz3.train.entry.run_training`)."""

from jz3.config import JZ3Config, hydra_entry
from jz3.config.enums import TrainMode


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.train.entry import run_training

    if cfg.trainer.mode != TrainMode.distill:
        raise ValueError(f"launch/distill.py needs trainer.mode=distill, got {cfg.trainer.mode.value}")
    run_training(cfg)


if __name__ == "__main__":
    main()

"""Instruction tuning after continued pretraining: `deepspeed launch/sft.py +exp=tiny_sft
trainer.init_from=runs/tiny_pretrain/train/hf`; loss on the `output` of {input, output}
records. Same trainer as pretraining (`jz3.train.entry.run_training`)."""

from jz3.config import JZ3Config, hydra_entry
from jz3.config.enums import TrainMode


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.train.entry import run_training

    if cfg.trainer.mode != TrainMode.sft:
        raise ValueError(f"launch/sft.py needs trainer.mode=sft, got {cfg.trainer.mode.value}")
    run_training(cfg)


if __name__ == "__main__":
    main()

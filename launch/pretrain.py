"""Continued pretraining (and any trainer run): `deepspeed launch/pretrain.py +exp=jz3_7b`."""

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.train.entry import run_training

    run_training(cfg)


if __name__ == "__main__":
    main()

"""The whole recipe in one command: `python launch/pipeline.py +exp=demo`.

Locally (launcher=local) the stages run one after another in this process, cached stages are
skipped, and `runs/<exp>/report.md` is written at the end. With `launcher=slurm` every stage is
submitted as a submitit job (`launcher.dry_run=true` prints them instead).
"""

import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run(cfg)


if __name__ == "__main__":
    main()

"""Filter stage: `python launch/filter.py synth.filter.input=runs/x/synth synth.filter.out_dir=...`

Writes cot/ and tool/ training examples, rejected.jsonl and manifest.json (see jz3.synth.filter).
"""

import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.synth.filter import run_filter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(run_filter(cfg))


if __name__ == "__main__":
    main()

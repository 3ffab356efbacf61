"""Filter stage: `python launch/filter.py +exp=... stages.filter.filter.input=runs/x/synth.jsonl`
(or, without `input`, the finished synthesize stage in `run_dir`). Writes cot/ and tool/
training examples and rejected.jsonl under `${run_dir}/filter/out/` (see jz3.synth.filter).
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = run_single(cfg, "filter")
    if out is not None:  # None: pipeline.plan=true printed the plan
        print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

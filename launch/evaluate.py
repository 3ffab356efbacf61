"""Evaluate a model on the math benchmarks (the `evaluate` stage): `python launch/evaluate.py
+exp=tiny_eval` or `stages.evaluate.eval.model_path=/path/to/hf_export
stages.evaluate.eval.backend=vllm`; without `model_path`, the export of the stage evaluation follows (sft, or pretrain when `stages.sft.enabled=false`).
Prints the markdown table, then a JSON summary."""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from pathlib import Path

    from jz3.pipeline.pipeline import run_single

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    e = cfg.stages.evaluate.eval
    if e.build_tiny_model and e.model_path and not cfg.pipeline.plan:
        # tests/demo: a random tiny model with the sft stage's architecture and tokenizer
        from jz3.generation.tiny_model import build_tiny_model

        sft = cfg.stages.sft
        build_tiny_model(e.model_path, sft.data.tokenizer, sft.model, cfg.seed)
    out = run_single(cfg, "evaluate")
    if out is None:
        return
    print(Path(out["result"]["table_path"]).read_text())
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

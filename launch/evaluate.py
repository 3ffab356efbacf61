"""Evaluate a model on the math benchmarks: `python launch/evaluate.py +exp=tiny_eval`
(or `eval.model_path=/path/to/hf_export eval.backend=vllm`); prints the markdown table."""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from pathlib import Path

    from jz3.eval.runner import evaluate
    from jz3.eval.tiny_model import build_tiny_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if cfg.eval.build_tiny_model and cfg.eval.model_path:
        build_tiny_model(cfg.eval.model_path, cfg.model, cfg.data.tokenizer, cfg.seed)
    metrics = evaluate(cfg)
    print((Path(cfg.eval.out_dir) / "results.md").read_text())
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()

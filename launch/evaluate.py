"""Evaluate a model on the math benchmarks (the `evaluate` stage): `python launch/evaluate.py
+exp=tiny_eval` or `stages.evaluate.eval.model_path=/path/to/hf_export
stages.evaluate.eval.backend=vllm`; without `model_path`, the export of the stage evaluation
follows (sft, or pretrain when `stages.sft.enabled=false`).
Prints the markdown table, then a JSON summary."""

from pathlib import Path
from typing import Any, Dict

from jz3.config import JZ3Config
from jz3.pipeline.pipeline import command


def tiny_model(cfg: JZ3Config) -> None:
    """Tests/demo: a random tiny model with the sft stage's architecture and tokenizer."""
    e = cfg.stages.evaluate.eval
    if e.build_tiny_model and e.model_path:
        from jz3.generation.tiny_model import build_tiny_model

        sft = cfg.stages.sft
        build_tiny_model(e.model_path, sft.data.tokenizer, sft.model, cfg.seed)


def table(out: Dict[str, Any]) -> Dict[str, Any]:
    print(Path(out["result"]["table_path"]).read_text())
    return out


main = command("evaluate", prepare=tiny_model, show=table)

if __name__ == "__main__":
    main()

"""Evaluation: prompting, grading, sandbox, tool loop, run (the stage body), report, loss.

- benchmarks, their files, answer kinds and protocol: `jz3.benchmarks` (the registry)
- `jz3.eval.prompting`: JiuZhang3.0 prompts, exemplars (`fewshot/*.json`), shots per protocol
- `jz3.eval.grading`: `extract_answer`, `is_correct`, `majority_vote` (public API)
- `jz3.eval.sandbox`: `run_python`, `SandboxPool` for model-written code
- `jz3.eval.tool_loop`: code -> sandbox -> ```output``` rounds
- `jz3.eval.run`: `run_evaluation(cfg, model_path, out_dir) -> EvalResult`
- `jz3.eval.report`: metrics JSON, markdown table, W&B; `jz3.eval.loss`: reference-solution loss
- generation backends: `jz3.generation`
"""

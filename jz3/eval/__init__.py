"""Evaluation harness (issue 4): loaders, prompting, grading, sandbox, backends, runner.

- `jz3.eval.loaders`: benchmark files -> `EvalItem(idx, question, gold, choices?)`
- `jz3.eval.prompting`: JiuZhang3.0 zero-shot / few-shot prompts (`fewshot/*.json`)
- `jz3.eval.grading`: `extract_answer`, `is_correct`, `majority_vote` (public API)
- `jz3.eval.sandbox`: `run_python`, `SandboxPool` for model-written code
- `jz3.eval.backends`: HF transformers, vLLM, OpenAI-compatible generation
- `jz3.eval.tool_loop`: code -> sandbox -> ```output``` rounds
- `jz3.eval.runner`: `evaluate(cfg)` -> metrics; `jz3.eval.report`: table, metrics, W&B
"""

"""Cheap per-record format and length checks of the filter stage (first failing reason wins)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from jz3.config.enums import PromptType
from jz3.config.synth import FilterConfig

_HEADERS = ("## Question", "## Solution", "## Code Solution")
_PROMPT_TYPES = {t.value for t in PromptType}


def check_record(rec: Dict[str, Any], cfg: FilterConfig) -> Optional[str]:
    """None when the record may go on, else `"<reason>: <detail>"`."""
    pt = rec["prompt_type"]
    if pt not in _PROMPT_TYPES:
        return f"format: unknown prompt_type {pt!r}"
    problem, solution = rec["problem"].strip(), rec["solution"].strip()
    n = len(problem)
    if not cfg.min_problem_chars <= n <= cfg.max_problem_chars:
        return (f"problem_length: {n} chars outside [{cfg.min_problem_chars}, "
                f"{cfg.max_problem_chars}]")
    n = len(solution)
    if not cfg.min_solution_chars <= n <= cfg.max_solution_chars:
        return (f"solution_length: {n} chars outside [{cfg.min_solution_chars}, "
                f"{cfg.max_solution_chars}]")
    for field_name, text in (("problem", problem), ("solution", solution)):
        for h in _HEADERS:
            if h in text:
                return f"format: {field_name} contains the header {h!r}"
    answer = rec.get("answer")
    if cfg.require_answer and not (answer and str(answer).strip()):
        return "no_answer: the solution states no final answer"
    if pt == PromptType.tool.value and not rec.get("code") and "```python" not in solution:
        return "format: tool solution without a ```python block"
    return None

"""Prompts in JiuZhang3.0's format: zero-shot `## Question\\n{q}\\n\\n## Solution\\n` (chain of
thought) or `## Code Solution\\n` (tool), and few-shot with exemplars shipped in
`jz3/eval/fewshot/*.json` (from training splits or written by us, never from test sets):
GSM8K 8-shot (gsm8k train), MATH 4-shot Minerva-style, 5-shot for multiple-choice sets."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Dict, List

from jz3.config.enums import EvalSetting

FEWSHOT_DIR = Path(__file__).parent / "fewshot"
HEADERS = {EvalSetting.cot: "## Solution", EvalSetting.tool: "## Code Solution"}
FEWSHOT_SET = {
    "gsm8k": "gsm8k", "svamp": "gsm8k", "asdiv": "gsm8k", "mawps": "gsm8k", "tabmwp": "gsm8k",
    "math-oai": "math", "math": "math", "carp_en": "carp_en",
    "aqua": "multiple_choice", "sat_math": "multiple_choice", "mmlu_stem": "multiple_choice",
}
# Stop strings: the model starting the next question; in the tool setting also the point where
# the harness must run the code and paste its output.
COT_STOPS = ["\n## Question", "\n\n\n\n"]
TOOL_STOPS = ["```output", "\n## Question"]


def format_example(question: str, setting: EvalSetting, solution: str = "") -> str:
    return f"## Question\n{question.strip()}\n\n{HEADERS[EvalSetting(setting)]}\n{solution}"


@cache
def load_fewshot(name: str) -> List[Dict[str, str]]:
    path = FEWSHOT_DIR / f"{name}.json"
    rows = json.loads(path.read_text())
    for i, r in enumerate(rows):
        if not r.get("question") or not r.get("solution"):
            raise ValueError(f"{path}: exemplar {i} lacks question/solution")
    return rows


def exemplars(benchmark: str, setting: EvalSetting) -> List[Dict[str, str]]:
    if EvalSetting(setting) == EvalSetting.tool:
        return load_fewshot("tool")
    return load_fewshot(FEWSHOT_SET.get(benchmark, "gsm8k"))


def build_prompt(question: str, benchmark: str, setting: EvalSetting,
                 few_shot: bool = False) -> str:
    """The full prompt the model continues."""
    setting = EvalSetting(setting)
    parts = []
    if few_shot:
        for ex in exemplars(benchmark, setting):
            parts.append(format_example(ex["question"], setting, ex["solution"].strip()) + "\n\n\n")
    parts.append(format_example(question, setting))
    return "".join(parts)


def stop_strings(setting: EvalSetting) -> List[str]:
    return list(TOOL_STOPS if EvalSetting(setting) == EvalSetting.tool else COT_STOPS)
